"""Settings: precedence of flags, variables, file and defaults; checks; the README's table."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from noderun.nodetool import startup
from noderun.nodetool.startup import workspace_dir
from noderun.persistence.options import ENV_VARIABLES, StoreOptions
from noderun.server.cli import build_parser, settings_from
from noderun.server.lifecycle import pool_options
from noderun.server.serve import config_for
from noderun.server.settings import (
    STORE_VARIABLE_HELP,
    SettingError,
    Settings,
    load_settings,
    settings_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def parse(*argv: str, env: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(["serve", *argv]), env or {})


def test_defaults_without_flags_variables_or_file() -> None:
    assert parse() == Settings()


def test_flags_beat_variables_beat_the_file_beat_defaults(tmp_path: Path) -> None:
    config = tmp_path / "noderun.toml"
    config.write_text('port = 1111\nrunners = 7\nstore = "none"\ntokens = ["a", "b"]\n')
    env = {"NODERUN_PORT": "2222", "NODERUN_RUNNERS": "8", "NODERUN_CONFIG": str(config)}
    settings = parse("--port", "3333", env=env)
    assert settings.port == 3333  # flag
    assert settings.runners == 8  # variable over file
    assert settings.store == "none"  # file over default
    assert settings.tokens == ("a", "b")
    assert settings.retention == Settings().retention  # default


def test_repeatable_flags_and_comma_separated_variables() -> None:
    assert parse("--token", "a", "--token", "b").tokens == ("a", "b")
    assert parse(env={"NODERUN_TOKENS": "a, b,"}).tokens == ("a", "b")
    assert parse("--nodes", "m1", "--nodes", "m2").nodes == ("m1", "m2")
    assert parse(env={"NODERUN_NODES": "m1,m2"}).nodes == ("m1", "m2")


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False)]
)
def test_switch_variables(raw: str, expected: bool) -> None:
    assert parse(env={"NODERUN_DEBUG_NODES": raw}).debug_nodes is expected


@pytest.mark.parametrize(
    ("argv", "env", "source"),
    [
        (["--port", "65536"], {}, "--port"),
        (["--port", "-1"], {}, "--port"),
        (["--runners", "0"], {}, "--runners"),
        (["--max-active-runs", "-3"], {}, "--max-active-runs"),
        (["--retention", "-5"], {}, "--retention"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--store", "mysql://x"], {}, "--store"),
        ([], {"NODERUN_PORT": "12x"}, "NODERUN_PORT"),
        ([], {"NODERUN_PING_INTERVAL": "fast"}, "NODERUN_PING_INTERVAL"),
        ([], {"NODERUN_PROXY_HEADERS": "perhaps"}, "NODERUN_PROXY_HEADERS"),
        ([], {"NODERUN_STORE_HEARTBEAT": "often"}, "NODERUN_STORE_HEARTBEAT"),
    ],
)
def test_bad_values_name_their_source_and_the_fix(
    argv: list[str], env: dict[str, str], source: str
) -> None:
    with pytest.raises(SettingError) as raised:
        parse(*argv, env=env)
    assert raised.value.source == source
    assert raised.value.fix


def test_a_file_value_of_the_wrong_type_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('port = "high"\n')
    with pytest.raises(SettingError, match=r"port in .*bad\.toml"):
        load_settings({}, {}, str(config))


def test_an_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(SettingError, match="prot"):
        load_settings({}, {}, str(config))


def test_malformed_toml_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("port = = 1\n")
    with pytest.raises(SettingError, match="not valid TOML"):
        load_settings({}, {}, str(config))


def test_unknown_noderun_variables_are_reported_not_known_ones() -> None:
    env = {
        "NODERUN_PROT": "1",
        "NODERUN_PORT": "1",
        "NODERUN_PG_POOL_MAX": "3",
        "NODERUN_CONFIG": "",
        "NODERUN_TEST_TIME_SCALE": "2",
        "OTHER": "x",
    }
    assert load_settings({}, env).unknown_variables == ("NODERUN_PROT",)


def test_store_tuning_variables_are_parsed_with_the_settings() -> None:
    settings = load_settings({}, {"NODERUN_PG_POOL_MAX": "3"})
    assert settings.store_options == StoreOptions(pg_pool_max=3)


def test_one_tls_file_without_the_other_is_refused() -> None:
    with pytest.raises(SettingError, match="--ssl-keyfile"):
        Settings(ssl_certfile="cert.pem")


def test_the_readme_table_is_the_generated_one() -> None:
    """`python -m noderun.server.settings` prints the table; paste it into the README."""
    text = README.read_text()
    begin = text.index("<!-- settings-table")
    begin = text.index("\n", begin) + 1
    end = text.index("<!-- /settings-table -->")
    assert text[begin:end] == settings_table()


def test_every_setting_and_store_variable_is_in_the_table() -> None:
    table = settings_table()
    for field in dataclasses.fields(Settings):
        if "noderun" in field.metadata:
            assert f"`NODERUN_{field.name.upper()}`" in table
    assert set(STORE_VARIABLE_HELP) == set(ENV_VARIABLES)
    for variable in ENV_VARIABLES:
        assert f"`{variable}`" in table


def test_every_flag_is_accepted_by_the_parser() -> None:
    for field in dataclasses.fields(Settings):
        if "noderun" not in field.metadata:
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.metadata["noderun"].metavar is None:
            args = build_parser().parse_args(["serve", flag])
            assert getattr(args, field.name) is True
        elif field.name not in ("ssl_certfile", "ssl_keyfile"):
            args = build_parser().parse_args(["serve", flag, "1"])
            assert getattr(args, field.name) in ("1", ["1"])


def test_tls_and_proxy_settings_reach_uvicorn() -> None:
    settings = parse(
        "--ssl-certfile",
        __file__,
        "--ssl-keyfile",
        __file__,
        "--proxy-headers",
        "--forwarded-allow-ips",
        "10.0.0.1,10.0.0.2",
    )
    config = config_for(settings, object())
    assert (config.ssl_certfile, config.ssl_keyfile) == (__file__, __file__)
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == "10.0.0.1,10.0.0.2"
    # Off unless asked for (uvicorn's own default trusts localhost).
    assert config_for(parse(), object()).proxy_headers is False


def test_the_nodetool_tmpdir_is_the_workers_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each NodeTool execute makes its workspace under the workers' ``TMPDIR``."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    # The environment's TMPDIR is the operator's choice: inherited, not replaced.
    assert pool_options(parse("--nodetool-workers", "1")).env == {}
    monkeypatch.delenv("TMPDIR")
    expected = workspace_dir("", {})
    assert pool_options(parse("--nodetool-workers", "1")).env == (
        {} if expected is None else {"TMPDIR": expected}
    )
    settings = parse(env={"NODERUN_NODETOOL_TMPDIR": str(tmp_path)})
    assert pool_options(settings).env == {"TMPDIR": str(tmp_path)}
    with pytest.raises(SettingError, match="does not exist"):
        parse("--nodetool-tmpdir", str(tmp_path / "missing"))


def test_the_workers_workspace_defaults_to_a_roomy_writable_shared_memory_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    assert workspace_dir("/elsewhere", {"TMPDIR": "/t"}, str(shm)) == "/elsewhere"
    assert workspace_dir("", {"TMPDIR": "/t"}, str(shm)) is None
    assert workspace_dir("", {}, str(shm)) == str(shm)
    assert workspace_dir("", {}, str(tmp_path / "missing")) is None
    # Less room than the bound (a container's 64 MiB /dev/shm): not taken unasked.
    free = os.statvfs(shm).f_bavail * os.statvfs(shm).f_frsize
    monkeypatch.setattr(startup, "SHM_MIN_FREE", free + (1 << 30))
    assert workspace_dir("", {}, str(shm)) is None
