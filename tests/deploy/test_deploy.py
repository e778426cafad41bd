"""The Dockerfile and docker-compose.yml run commands these tests run for real.

No Docker engine runs here, so the files are parsed and their exact command and
environment are started as a real server process (with the compose file's
PostgreSQL host swapped for the local test server); ``docker-compose config``
validates the compose file when that tool is installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import yaml

from noderun.server.cli import build_parser as cli_parser
from noderun.server.cli import settings_from
from tests.support.ports import free_port
from tests.support.timing import LONG_TIMEOUT
from tests.support.waiting import eventually_blocking

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_DSN = os.environ.get("NODERUN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def dockerfile() -> tuple[list[str], dict[str, str]]:
    """The final stage's CMD (exec form) and ENV."""
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    final = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    cmd: list[str] = []
    env: dict[str, str] = {}
    for line in lines[final:]:
        if line.startswith("CMD "):
            cmd = json.loads(line[4:])
        elif line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return cmd, env


def compose() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def compose_service(name: str = "noderun") -> dict[str, object]:
    services = compose()["services"]
    assert isinstance(services, dict)
    service = services[name]
    assert isinstance(service, dict)
    return service


def env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


_VARIABLE = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (the forms the file uses)."""

    def replace(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if kind == "-":
            return rest
        raise AssertionError(f"{name} is required: {rest}")

    return _VARIABLE.sub(replace, value)


def serve(command: list[str], env: Mapping[str, str], cwd: Path) -> Iterator[str]:
    """Start ``command`` (a ``noderun`` console-script call) and yield its base URL."""
    port = free_port()
    full_env = {**os.environ, **env, "NODERUN_HOST": "127.0.0.1", "NODERUN_PORT": str(port)}
    executable = str(BIN / command[0])
    log = cwd / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([executable, *command[1:]], env=full_env, cwd=cwd, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        eventually_blocking(healthy, LONG_TIMEOUT, explain=log.read_text)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(LONG_TIMEOUT) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def test_dockerfile_cmd_is_a_valid_noderun_command() -> None:
    cmd, env = dockerfile()
    assert cmd[:2] == ["noderun", "serve"]
    args = cli_parser().parse_args(cmd[1:])
    settings = settings_from(args)
    assert settings.log_level == "info"
    assert env["NODERUN_STORE"].startswith("sqlite:////data/")


def healthcheck() -> list[str]:
    """The final stage's HEALTHCHECK command (exec form)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK "))
    command = json.loads(line.split(" CMD ", 1)[1])
    assert isinstance(command, list)
    return [str(part) for part in command]


def test_dockerfile_cmd_and_env_serve(tmp_path: Path) -> None:
    cmd, env = dockerfile()
    env = {**env, "NODERUN_STORE": f"sqlite:///{tmp_path / 'noderun.db'}"}
    for url in serve(cmd, env, tmp_path):
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            assert json.loads(response.read())["status"] == "ok"
        # The image's own healthcheck, pointed at this server's port, passes.
        check = healthcheck()
        assert check[0] == "python"
        port = url.rsplit(":", 1)[1]
        probe = [sys.executable, *[part.replace(":7777/", f":{port}/") for part in check[1:]]]
        assert "/readyz" in probe[-1]
        assert subprocess.run(probe, timeout=LONG_TIMEOUT).returncode == 0
    assert (tmp_path / "noderun.db").exists()


def test_compose_environment_names_only_known_settings() -> None:
    service = compose_service()
    environment = service["environment"]
    assert isinstance(environment, dict)
    from noderun.persistence import StoreOptions
    from noderun.server.settings import Settings

    known = {f"NODERUN_{name.upper()}" for name in Settings.__dataclass_fields__}
    store_options = StoreOptions.from_env({key: str(value) for key, value in environment.items()})
    assert store_options.pg_pool_min == 2 and store_options.pg_pool_max == 10
    for key in environment:
        assert key in known or key.startswith("NODERUN_PG_"), key


def test_compose_config_is_valid_for_docker_compose() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    compose_file = str(ROOT / "docker-compose.yml")
    example = str(ROOT / ".env.example")
    subprocess.run([tool, "-f", compose_file, "--env-file", example, "config", "-q"], check=True)
    subprocess.run(
        [tool, "-f", compose_file, "--env-file", example, "--profile", "metrics", "config", "-q"],
        check=True,
    )
    # Without the secrets it refuses to start, naming what is missing.
    empty = ROOT / "tests" / "deploy" / "empty.env"
    refused = subprocess.run(
        [tool, "-f", compose_file, "--env-file", str(empty), "config", "-q"],
        capture_output=True,
        text=True,
        env={key: value for key, value in os.environ.items() if key not in _SECRETS},
    )
    assert refused.returncode != 0
    assert "NODERUN_TOKENS" in refused.stderr or "POSTGRES_PASSWORD" in refused.stderr


_SECRETS = ("NODERUN_TOKENS", "POSTGRES_PASSWORD", "NODERUN_PUBLISH")


def test_compose_requires_secrets_and_hardcodes_none() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    noderun = compose_service()
    postgres = compose_service("postgres")
    environment = noderun["environment"]
    assert isinstance(environment, dict)
    assert str(environment["NODERUN_TOKENS"]).startswith("${NODERUN_TOKENS:?")
    pg_env = postgres["environment"]
    assert isinstance(pg_env, dict)
    assert str(pg_env["POSTGRES_PASSWORD"]).startswith("${POSTGRES_PASSWORD:?")
    assert "noderun:noderun@" not in text
    # Published on loopback unless the operator says otherwise; PostgreSQL not at all.
    ports = noderun["ports"]
    assert isinstance(ports, list)
    assert [interpolate(str(port), {}) for port in ports] == ["127.0.0.1:7777:7777"]
    assert "ports" not in postgres
    for key in _SECRETS[:2]:
        assert key in env_file(ROOT / ".env.example")


def test_compose_stop_grace_outlasts_the_drain() -> None:
    grace = str(compose_service()["stop_grace_period"])
    assert grace.endswith("s")
    from noderun.server.settings import Settings

    drain = float(getattr(Settings(), "drain_timeout", 30.0))
    assert float(grace[:-1]) > drain


def test_compose_metrics_profile_scrapes_noderun() -> None:
    prometheus = compose_service("prometheus")
    assert prometheus["profiles"] == ["metrics"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["noderun:7777"]


def test_make_env_generates_fresh_secrets(tmp_path: Path) -> None:
    outputs = [
        subprocess.run(
            [str(ROOT / "scripts" / "make-env")],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHON": sys.executable},
        ).stdout
        for _ in range(2)
    ]
    files = []
    for index, output in enumerate(outputs):
        path = tmp_path / f"{index}.env"
        path.write_text(output)
        files.append(env_file(path))
    for values in files:
        assert len(values["NODERUN_TOKENS"]) >= 32 and len(values["POSTGRES_PASSWORD"]) >= 24
    assert files[0]["NODERUN_TOKENS"] != files[1]["NODERUN_TOKENS"]


def test_image_build_context_is_only_the_source() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    assert {"!pyproject.toml", "!README.md", "!constraints.txt", "!noderun/"} <= set(ignore)


def test_dockerfile_runs_unprivileged_with_a_data_volume() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("FROM ") :]
    assert "USER noderun" in final and "VOLUME /data" in final
    assert "/readyz" in final.split("HEALTHCHECK", 1)[1]
    # Dependencies from the lock in their own layer, before the source is copied.
    build = text[: text.rindex("FROM ")]
    assert build.index("-r constraints.txt") < build.index("COPY noderun")


def test_constraints_pin_every_runtime_dependency() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    for requirement in wanted:
        if "win32'" in requirement and "!=" not in requirement:
            continue
        name = re.split(r"[<>=!~\[;]", requirement, maxsplit=1)[0].strip().lower()
        assert name.replace("_", "-") in pinned, f"{name} is not pinned in constraints.txt"


async def _create_database(name: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=3)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=3)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def test_compose_command_and_environment_serve_on_postgresql(tmp_path: Path) -> None:
    name = f"noderun_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_create_database(name))
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable at {PG_DSN} ({exc}); set NODERUN_TEST_PG_DSN"
        if os.environ.get("NODERUN_REQUIRE_PG") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        service = compose_service()
        command = service["command"]
        environment = service["environment"]
        assert isinstance(command, list) and isinstance(environment, dict)
        secrets = env_file(ROOT / ".env.example")
        env = {key: interpolate(str(value), secrets) for key, value in environment.items()}
        # The compose file's database host is the "postgres" service: point it here.
        env["NODERUN_STORE"] = urlunsplit(urlsplit(PG_DSN)._replace(path="/" + name))
        for url in serve([str(part) for part in command], env, tmp_path):
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                assert response.status == 200
            ws_url = url.replace("http://", "ws://") + "/ws"
            assert asyncio.run(_websocket_close_code(ws_url, None)) == 1008
            assert asyncio.run(_websocket_close_code(ws_url, secrets["NODERUN_TOKENS"])) is None
    finally:
        asyncio.run(_drop_database(name))


async def _websocket_close_code(url: str, token: str | None) -> int | None:
    """The close code the server answers a connection with (None: it stays open)."""
    import websockets

    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with websockets.connect(url, additional_headers=headers) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 0.5)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
        except TimeoutError:
            return None
    return None
