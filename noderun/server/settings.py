"""Server settings: command-line flags, each also a ``NODERUN_*`` environment variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7777
    tokens: tuple[str, ...] = ()
    log_level: str = "info"
    #: ``sqlite:///PATH``, ``postgresql://…``, or ``none`` (durable runs refused).
    store: str = "sqlite:///noderun.db"
    runners: int = 4
    replay_limit: int = 2000
    detach_grace: float = 600.0
    finished_ttl: float = 600.0
    max_active_runs: int = 10_000
    outbound_limit: int = 4096
    ping_interval: float = 25.0
    retention: float = 7 * 24 * 3600.0
    #: Owner id of this server's durable runs; stable across restarts, unique among
    #: live servers. Empty: derived from host, working directory and port.
    server_id: str = ""
    debug: bool = False
    #: Directory of NodeTool workflow JSON files, run by id; empty = none.
    workflows: str = ""
    #: NodeTool worker processes hosting NodeTool node packages; 0 = none.
    nodetool_workers: int = 0
    #: The interpreter with ``nodetool-core`` and the node packages; "" = this one.
    nodetool_python: str = ""
    #: Node package namespaces the workers load; empty = every installed one.
    nodetool_namespaces: tuple[str, ...] = ()
    #: Executes in flight per worker, and requests that may wait for one.
    nodetool_concurrency: int = 1
    nodetool_queue: int = 64
    #: Seconds a cancelled remote node may run on before its worker is killed.
    nodetool_cancel_grace: float = 5.0
    #: Seconds a busy worker may go unresponsive before it is killed; 0 = never.
    nodetool_hang_timeout: float = 60.0
    nodetool_start_timeout: float = 60.0
    #: Where uploaded assets live (created at start; unwritable = start-up error).
    assets_dir: str = "./noderun-assets"
    #: Seconds a temporary asset (``/api/sdk/v1/assets/temporary``) lives.
    asset_ttl: float = 3600.0
    #: The largest asset accepted, in bytes (413 beyond).
    max_asset_bytes: int = 100 * 1024 * 1024
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> dict[str, object]:
        """Values found in ``NODERUN_*`` variables, converted to each field's type."""
        env = os.environ if env is None else env
        found: dict[str, object] = {}
        for name, kind in _FIELD_TYPES.items():
            raw = env.get(f"NODERUN_{name.upper()}")
            if raw is None or raw == "":
                continue
            found[name] = _convert(name, kind, raw)
        return found


_FIELD_TYPES: dict[str, type] = {
    "host": str,
    "port": int,
    "tokens": tuple,
    "log_level": str,
    "store": str,
    "runners": int,
    "replay_limit": int,
    "detach_grace": float,
    "finished_ttl": float,
    "max_active_runs": int,
    "outbound_limit": int,
    "ping_interval": float,
    "retention": float,
    "server_id": str,
    "debug": bool,
    "workflows": str,
    "nodetool_workers": int,
    "nodetool_python": str,
    "nodetool_namespaces": tuple,
    "nodetool_concurrency": int,
    "nodetool_queue": int,
    "nodetool_cancel_grace": float,
    "nodetool_hang_timeout": float,
    "nodetool_start_timeout": float,
    "assets_dir": str,
    "asset_ttl": float,
    "max_asset_bytes": int,
}


def _convert(name: str, kind: type, raw: str) -> object:
    if kind is tuple:
        return tuple(token.strip() for token in raw.split(",") if token.strip())
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"NODERUN_{name.upper()}={raw!r} is not a valid {kind.__name__}") from None
