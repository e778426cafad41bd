"""Server settings: one dataclass, each field a flag, a ``NODERUN_*`` variable and a TOML key.

Precedence: command-line flags, then ``NODERUN_*`` environment variables, then the
optional ``--config FILE.toml`` (``NODERUN_CONFIG``), then the defaults. Every field
carries its own documentation (:func:`setting`), from which the CLI builds its flags
and :func:`settings_table` the table in the README, so neither can drift from the
code. Values are checked once, here: a bad one raises :class:`SettingError` naming
the setting, where it came from, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from noderun.persistence.errors import StoreConfigError
from noderun.persistence.options import ENV_VARIABLES as STORE_VARIABLES
from noderun.persistence.options import StoreOptions

__all__ = [
    "CONFIG_VARIABLE",
    "ENV_PREFIX",
    "STORE_VARIABLE_HELP",
    "SettingError",
    "SettingSource",
    "Settings",
    "load_settings",
    "settings_table",
    "unknown_variables",
]

ENV_PREFIX = "NODERUN_"
#: The variable naming the TOML file (the ``--config`` flag's variable).
CONFIG_VARIABLE = "NODERUN_CONFIG"
#: Variables the test suite reads; never reported as unknown.
_TEST_VARIABLES = ("NODERUN_TEST_", "NODERUN_REQUIRE_PG")
LOG_LEVELS = ("debug", "info", "warning", "error")

T = TypeVar("T")
#: A check returns ``None`` for a good value, else the fix to print.
Check = Callable[[Any], "str | None"]


class SettingError(ValueError):
    """A setting's value is unusable: ``source`` (``--port``, ``NODERUN_PORT``, a file's
    key) gave ``value``; ``fix`` says what to do instead."""

    def __init__(self, source: str, value: object, fix: str) -> None:
        self.source = source
        self.value = value
        self.fix = fix
        super().__init__(f"invalid {source} {value!r}: {fix}")


@dataclass(frozen=True, slots=True)
class SettingSource:
    """What a field's metadata says about it: its flag, variable and documentation."""

    help: str
    check: Check | None = None
    #: ``--flag METAVAR`` in the table (``None``: a switch without a value).
    metavar: str | None = "VALUE"
    #: Repeatable flag whose variable is comma-separated.
    repeatable: bool = False
    #: How the default is shown in the table, when ``repr`` would not do.
    shown_default: str | None = None
    #: The flag, when it is not the field's name (``--token`` for ``tokens``).
    flag: str | None = None


def setting(
    default: T,
    help: str,
    *,
    check: Check | None = None,
    metavar: str | None = "VALUE",
    repeatable: bool = False,
    shown_default: str | None = None,
    flag: str | None = None,
) -> T:
    """A settings field with its documentation (the type checker sees the default)."""
    source = SettingSource(help, check, metavar, repeatable, shown_default, flag)
    result: T = field(default=default, metadata={"noderun": source})
    return result


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be between 0 and 65535 (0 picks a free port)"


def _log_level(value: str) -> str | None:
    return None if value in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}"


def _store(value: str) -> str | None:
    lowered = value.lower()
    if lowered == "none" or lowered.startswith(("postgresql://", "postgres://")):
        return None
    if not lowered.startswith("sqlite:///"):
        return "must be sqlite:///PATH, postgresql://USER@HOST/DB or none"
    path = value[len("sqlite:///") :]
    if not path or "?" in path:
        return "must be sqlite:///PATH (a file path, no query)"
    if path == ":memory:":
        return None
    return _writable(Path(path))


def _writable(path: Path) -> str | None:
    """Why the sqlite file at ``path`` cannot be written, or None."""
    if path.is_dir():
        return f"{path} is a directory: name a file in it"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{path} is not writable: fix its permissions"
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        return f"{parent} is not a directory: choose another path"
    if not parent.is_dir():
        return f"directory {parent} does not exist: create it or choose another path"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable: fix its permissions or choose another path"
    return None


def _directory(value: str) -> str | None:
    if not value or Path(value).is_dir():
        return None
    if Path(value).exists():
        return f"{value!r} is not a directory"
    return f"directory {value!r} does not exist: create it or name another"


def _assets_dir(value: str) -> str | None:
    """Why the assets directory cannot be used (it is created, parents included), or None."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        return f"{path} is not a directory"
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory: choose another path"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable: fix its permissions or choose another path"
    return None


def _file(value: str | None) -> str | None:
    if value is None or Path(value).is_file():
        return None
    return f"{value} is not a readable file"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of a server. Build with :func:`load_settings` (flags, environment,
    file), or directly in code and tests (then unchecked)."""

    host: str = setting("127.0.0.1", "address to bind", metavar="ADDR")
    port: int = setting(7777, "TCP port (0: any free port)", check=_port, metavar="PORT")
    workers: int = setting(
        1,
        "server processes sharing the port, each with its own runs (see Scaling)",
        check=_positive,
        metavar="N",
    )
    tokens: tuple[str, ...] = setting(
        (),
        'accepted bearer token (none: no auth, everyone is user `"1"`)',
        metavar="TOKEN",
        repeatable=True,
        shown_default="none",
        flag="--token",
    )
    log_level: str = setting(
        "info",
        "`debug`, `info`, `warning` or `error`; JSON lines when stderr is not a TTY",
        check=_log_level,
        metavar="LEVEL",
    )
    store: str = setting(
        "sqlite:///noderun.db",
        "durable runs' store: `sqlite:///PATH`, `postgresql://…`, or `none` to refuse them",
        check=_store,
        metavar="URL",
    )
    runners: int = setting(
        4, "threads for blocking (plain `def`) nodes", check=_positive, metavar="N"
    )
    nodes: tuple[str, ...] = setting(
        (),
        "module whose `@node` functions to register (found from the working directory too)",
        metavar="MODULE",
        repeatable=True,
        shown_default="none",
    )
    debug_nodes: bool = setting(
        False, "register the `noderun.debug.*` test nodes (sleep, block, fail)", metavar=None
    )
    retention: float = setting(
        7 * 24 * 3600.0,
        "seconds finished durable runs are kept; `0` keeps them forever",
        check=_not_negative,
        metavar="S",
        shown_default="604800 (7 days)",
    )
    detach_grace: float = setting(
        600.0, "seconds a run with no client attached goes on", check=_positive, metavar="S"
    )
    finished_ttl: float = setting(
        600.0,
        "seconds a finished ephemeral run stays reconnectable",
        check=_positive,
        metavar="S",
    )
    replay_limit: int = setting(
        2000, "messages of a run kept for replay on reconnect", check=_positive, metavar="N"
    )
    max_active_runs: int = setting(
        10_000, "runs at once; more are refused", check=_positive, metavar="N"
    )
    max_connections: int = setting(
        10_000,
        "open WebSockets; one more is closed at once with 1013 `server full`",
        check=_positive,
        metavar="N",
    )
    max_runs_per_connection: int = setting(
        1000,
        "runs in flight per connection; more are queued (`job_update queued`), durable refused",
        check=_positive,
        metavar="N",
    )
    max_runs_per_user: int = setting(
        1000, "runs in flight per user; more are queued", check=_positive, metavar="N"
    )
    max_queued_runs_per_user: int = setting(
        1000,
        "queued runs per user; more are refused (terminal `failed`, `too many runs`)",
        check=_positive,
        metavar="N",
    )
    max_frame_bytes: int = setting(
        16 * 1024 * 1024,
        "largest inbound WebSocket message in bytes; a larger one closes with 1009",
        check=_positive,
        metavar="N",
        shown_default="16777216 (16 MiB)",
    )
    outbound_limit: int = setting(
        4096,
        "frames queued to one client above which the runs it follows wait for it",
        check=_positive,
        metavar="N",
    )
    outbound_bytes: int = setting(
        4 * 1024 * 1024,
        "bytes of encoded frames queued to one client above which the runs it follows wait for it",
        check=_positive,
        metavar="BYTES",
    )
    slow_client_timeout: float = setting(
        30.0,
        "seconds a client may read nothing while frames wait for it before it is closed "
        "with 1013; `0` never",
        check=_not_negative,
        metavar="S",
    )
    ping_interval: float = setting(
        25.0,
        "seconds between server `ping` frames; `0` turns them off",
        check=_not_negative,
        metavar="S",
    )
    server_id: str = setting(
        "",
        "owner id of this server's durable runs: unique among live servers, the same across "
        "restarts",
        metavar="ID",
        shown_default="from host, directory and port",
    )
    drain_timeout: float = setting(
        30.0,
        "on SIGTERM/SIGINT, seconds runs in flight may take to finish before they are cancelled",
        check=_not_negative,
        metavar="S",
    )
    ssl_certfile: str | None = setting(
        None,
        "TLS certificate (PEM); serves `wss://`",
        check=_file,
        metavar="FILE",
        shown_default="none",
    )
    ssl_keyfile: str | None = setting(
        None, "TLS private key (PEM)", check=_file, metavar="FILE", shown_default="none"
    )
    proxy_headers: bool = setting(
        False,
        "trust `X-Forwarded-For`/`-Proto` from `--forwarded-allow-ips`",
        metavar=None,
    )
    forwarded_allow_ips: str = setting(
        "127.0.0.1,::1",
        "comma-separated proxy addresses (or `*`) trusted with `--proxy-headers`",
        metavar="IPS",
    )
    workflows: str = setting(
        "",
        "directory of NodeTool workflow JSON files, read at start and on SIGHUP",
        check=_directory,
        metavar="DIR",
        shown_default="none",
    )
    nodetool_workers: int = setting(
        0,
        "NodeTool worker processes hosting NodeTool node packages; `0`: none",
        check=_not_negative,
        metavar="N",
    )
    nodetool_python: str = setting(
        "",
        "interpreter that has `nodetool-core` and the node packages",
        metavar="PATH",
        shown_default="this interpreter",
    )
    nodetool_namespaces: tuple[str, ...] = setting(
        (),
        "node package namespace the workers load",
        metavar="NS",
        repeatable=True,
        shown_default="every installed package",
        flag="--nodetool-namespace",
    )
    nodetool_concurrency: int = setting(
        1, "NodeTool executes in flight per worker", check=_positive, metavar="N"
    )
    nodetool_queue: int = setting(
        64, "NodeTool requests that may wait for a worker", check=_positive, metavar="N"
    )
    nodetool_cancel_grace: float = setting(
        5.0,
        "seconds a cancelled NodeTool node may run on before its worker is killed",
        check=_not_negative,
        metavar="S",
    )
    nodetool_hang_timeout: float = setting(
        60.0,
        "seconds a busy worker may go unresponsive before it is killed; `0`: never",
        check=_not_negative,
        metavar="S",
    )
    nodetool_start_timeout: float = setting(
        60.0, "seconds the NodeTool workers may take to start", check=_positive, metavar="S"
    )
    nodetool_tmpdir: str = setting(
        "",
        "directory the NodeTool workers make each execute's workspace in (their `TMPDIR`); "
        "a tmpfs makes every execute cheaper where `/tmp` is on disk",
        check=_directory,
        metavar="DIR",
        shown_default="`TMPDIR` if set, else `/dev/shm` with 1 GiB free, else the system's",
    )
    assets_dir: str = setting(
        "./noderun-assets",
        "directory of uploaded assets (created at start)",
        check=_assets_dir,
        metavar="DIR",
    )
    asset_ttl: float = setting(
        3600.0, "seconds a temporary asset lives", check=_positive, metavar="S"
    )
    max_asset_bytes: int = setting(
        100 * 1024 * 1024,
        "largest asset accepted, in bytes (413 beyond)",
        check=_positive,
        metavar="N",
        shown_default="`104857600` (100 MiB)",
    )
    max_graph_nodes: int = setting(
        10_000,
        "most nodes a graph may have; a larger one's run fails before anything runs",
        check=_positive,
        metavar="N",
    )
    run_timeout: float = setting(
        0.0,
        "seconds after which a run still going fails with `timeout`; `0` = never",
        check=_not_negative,
        metavar="SECONDS",
    )
    debug: bool = setting(False, "Starlette debug mode (tracebacks in HTTP errors)", metavar=None)
    #: The ``NODERUN_PG_*``/``NODERUN_STORE_*`` tuning of the store (environment only).
    store_options: StoreOptions = field(default_factory=StoreOptions)
    #: ``NODERUN_*`` variables that name no setting (reported as a warning at start-up).
    unknown_variables: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            given = "--ssl-certfile" if self.ssl_keyfile is None else "--ssl-keyfile"
            missing = "--ssl-keyfile" if self.ssl_keyfile is None else "--ssl-certfile"
            raise SettingError(
                given, self.ssl_certfile or self.ssl_keyfile, f"needs {missing} as well"
            )

    @property
    def durable(self) -> bool:
        """Whether durable runs are configured (a store other than ``none``)."""
        return self.store.lower() != "none"


#: Help of the store tuning variables (read by :class:`StoreOptions`), for the table.
STORE_VARIABLE_HELP: dict[str, str] = {
    "NODERUN_PG_POOL_MIN": "PostgreSQL pool: connections kept open",
    "NODERUN_PG_POOL_MAX": "PostgreSQL pool: most connections",
    "NODERUN_PG_COMMAND_TIMEOUT": "PostgreSQL: seconds one statement may take",
    "NODERUN_PG_IDLE_LIFETIME": "PostgreSQL: seconds before an idle pooled connection closes",
    "NODERUN_STORE_CONNECT_TIMEOUT": "seconds to connect to the store (start-up fails after)",
    "NODERUN_STORE_HEARTBEAT": "seconds between this server's lease renewals",
    "NODERUN_STORE_LEASE_TIMEOUT": "a server silent this long is dead: its runs are failed",
    "NODERUN_STORE_FINISH_TIMEOUT": "seconds a run's terminal state may take to commit",
    "NODERUN_STORE_COMMIT_CONCURRENCY": (
        "group-commit transactions in flight (more helps only with a distant database)"
    ),
}


def _fields() -> list[tuple[dataclasses.Field[Any], SettingSource]]:
    return [
        (f, f.metadata["noderun"]) for f in dataclasses.fields(Settings) if "noderun" in f.metadata
    ]


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def variable_of(name: str) -> str:
    return ENV_PREFIX + name.upper()


def load_settings(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config: str | None = None,
) -> Settings:
    """Settings from ``flags`` (field name → value as given, ``None`` = not given), then
    ``env`` (default: ``os.environ``), then the TOML file ``config`` (or
    ``NODERUN_CONFIG``), then the defaults. Raises :class:`SettingError`."""
    flags = flags or {}
    env = os.environ if env is None else env
    config = config or env.get(CONFIG_VARIABLE) or None
    file_values = _read_config(config) if config else {}
    values: dict[str, object] = {}
    for f, source in _fields():
        variable = variable_of(f.name)
        if flags.get(f.name) is not None:
            origin, raw = source.flag or flag_of(f.name), flags[f.name]
        elif env.get(variable, "").strip():
            origin, raw = variable, env[variable]
        elif f.name in file_values:
            origin, raw = f"{f.name} in {config}", file_values[f.name]
        else:
            continue
        value = _convert(origin, f.type, raw)
        fix = source.check(value) if source.check else None
        if fix is not None:
            raise SettingError(origin, raw, fix)
        values[f.name] = value
    try:
        values["store_options"] = StoreOptions.from_env(env)
    except StoreConfigError as exc:
        raise SettingError(exc.setting, exc.value, exc.reason) from None
    values["unknown_variables"] = unknown_variables(env)
    return Settings(**values)  # type: ignore[arg-type]


def unknown_variables(env: Mapping[str, str]) -> tuple[str, ...]:
    """The ``NODERUN_*`` names in ``env`` that no setting reads (typos, stale names)."""
    known = {variable_of(f.name) for f, _ in _fields()} | set(STORE_VARIABLES) | {CONFIG_VARIABLE}
    return tuple(
        sorted(
            name
            for name in env
            if name.startswith(ENV_PREFIX)
            and name not in known
            and not name.startswith(_TEST_VARIABLES)
        )
    )


def _read_config(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise SettingError("--config", path, f"cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError("--config", path, f"not valid TOML ({exc})") from None
    names = {f.name for f, _ in _fields()}
    for key in data:
        if key not in names:
            raise SettingError(
                f"key {key!r} in", path, "no such setting (keys are the flags' names with `_`)"
            )
    return data


def _convert(origin: str, kind: object, raw: object) -> object:
    """``raw`` (a flag's or variable's text, or a TOML value) as a value of ``kind``."""
    if kind in ("tuple[str, ...]",):
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        raise SettingError(origin, raw, "must be a list of strings (comma-separated)")
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingError(origin, raw, "must be true or false (1/0, yes/no, on/off)")
    if kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        try:
            return int(str(raw).strip())
        except ValueError:
            raise SettingError(origin, raw, "must be a whole number") from None
    if kind == "float":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        try:
            return float(str(raw).strip())
        except ValueError:
            raise SettingError(origin, raw, "must be a number") from None
    if not isinstance(raw, str):
        raise SettingError(origin, raw, "must be a string")
    return raw


def settings_table() -> str:
    """The Markdown table of every setting (the README's copy is checked against it)."""
    rows = ["| flag | variable | default | |", "|---|---|---|---|"]
    for f, source in _fields():
        flag = source.flag or flag_of(f.name)
        if source.metavar is not None:
            flag += f" {source.metavar}"
        if source.repeatable:
            flag += " (repeatable)"
        variable = f"`{variable_of(f.name)}`"
        if source.repeatable:
            variable += " (comma-separated)"
        default = source.shown_default or _shown(f.default)
        rows.append(f"| `{flag}` | {variable} | {default} | {source.help} |")
    rows.append(
        f"| `--config FILE` | `{CONFIG_VARIABLE}` | none | "
        "TOML file of settings (keys: the flags' names with `_`), below variables and flags |"
    )
    defaults = StoreOptions()
    for variable in sorted(STORE_VARIABLES):
        name = STORE_VARIABLES[variable]
        rows.append(
            f"| | `{variable}` | {_shown(getattr(defaults, name))} | "
            f"{STORE_VARIABLE_HELP[variable]} |"
        )
    return "\n".join(rows) + "\n"


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


if __name__ == "__main__":
    print(settings_table(), end="")
