"""``noderun serve``: start the server (flags or ``NODERUN_*`` variables)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvicorn

from noderun.server.app import create_app
from noderun.server.logging import configure_logging
from noderun.server.settings import Settings
from noderun.server.uvicorn_config import uvicorn_config

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noderun", description="NodeTool-compatible node server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the server")
    serve.add_argument("--host", help="address to bind (NODERUN_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (NODERUN_PORT, default 7777)")
    serve.add_argument(
        "--token",
        action="append",
        dest="tokens",
        help="accepted bearer token, repeatable (NODERUN_TOKENS, comma-separated); none = no auth",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="NODERUN_LOG_LEVEL, default info",
    )
    serve.add_argument("--store", help="sqlite:///PATH | postgresql://… | none (NODERUN_STORE)")
    serve.add_argument(
        "--runners", type=int, help="runner threads for blocking nodes (NODERUN_RUNNERS)"
    )
    serve.add_argument(
        "--retention",
        type=float,
        help="seconds to keep finished durable runs, 0 = forever (NODERUN_RETENTION)",
    )
    serve.add_argument(
        "--detach-grace",
        type=float,
        help="seconds a run with no client attached goes on (NODERUN_DETACH_GRACE)",
    )
    serve.add_argument(
        "--ping-interval",
        type=float,
        help="seconds between server pings, 0 = off (NODERUN_PING_INTERVAL)",
    )
    serve.add_argument(
        "--workflows",
        metavar="DIR",
        help="directory of NodeTool workflow JSON files, read at start (NODERUN_WORKFLOWS)",
    )
    serve.add_argument(
        "--nodetool-workers",
        type=int,
        help="NodeTool worker processes for NodeTool node packages, 0 = off "
        "(NODERUN_NODETOOL_WORKERS; needs noderun[nodetool])",
    )
    serve.add_argument(
        "--nodetool-python",
        help="interpreter with nodetool-core and the node packages, default this one "
        "(NODERUN_NODETOOL_PYTHON)",
    )
    serve.add_argument(
        "--nodetool-namespace",
        action="append",
        dest="nodetool_namespaces",
        help="node package namespace to load, repeatable; default all "
        "(NODERUN_NODETOOL_NAMESPACES, comma-separated)",
    )
    serve.add_argument(
        "--server-id",
        help="owner id of this server's durable runs, unique among live servers and the same"
        " across restarts (NODERUN_SERVER_ID, default: from host, directory and port)",
    )
    serve.add_argument(
        "--debug", action="store_true", default=None, help="debug mode (NODERUN_DEBUG)"
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags override ``NODERUN_*`` variables, which override the defaults."""
    values = Settings.from_env()
    for field in dataclasses.fields(Settings):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return Settings(**values)  # type: ignore[arg-type]


class _Server(uvicorn.Server):
    """uvicorn's server, draining runs between "stop accepting" and "close sockets"."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await self._drain()
        await super().shutdown(sockets)


def _reload(reload_workflows: Callable[[], None]) -> None:
    """SIGHUP: re-read the workflows directory on the event loop, not inside the handler
    (which may interrupt anything, a log call included)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not serving yet
        reload_workflows()
        return
    loop.call_soon_threadsafe(reload_workflows)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        configure_logging(settings.log_level)
        app = create_app(settings)
    except ValueError as exc:
        print(f"noderun: {exc}", file=sys.stderr)
        return 2
    config = uvicorn_config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level
    )
    server = _Server(config, app.state.drain)
    # After a graceful shutdown uvicorn re-raises the signal that caused it, under the
    # handler it found: with the default one a SIGTERM stop would end in death by signal
    # instead of exit 0. This handler also covers a signal that arrives before uvicorn
    # installs its own (start-up then shuts down at once).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: setattr(server, "should_exit", True))
    if hasattr(signal, "SIGHUP"):  # not on Windows
        signal.signal(signal.SIGHUP, lambda _sig, _frame: _reload(app.state.reload_workflows))
    server.run()
    # uvicorn returns normally when start-up fails (e.g. the store is unreachable).
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
