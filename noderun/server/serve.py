"""``serve()``: run a server in this process until SIGINT/SIGTERM, the way the CLI does.

It owns what is process-wide: the listening socket (bound here, so a taken or
impossible address is a start-up error, not a log line), the signal handlers, the
event loop, and the collector's tuning (:mod:`noderun.server.heap`). The drain
itself is the app's (:class:`~noderun.server.lifecycle.Lifecycle`); ``serve`` adds
closing the listening socket when the drain begins.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import structlog
import uvicorn

from noderun.runtime.errors import RegistryError
from noderun.runtime.registry import Registry
from noderun.server.app import create_app, registry_for
from noderun.server.heap import settle_heap
from noderun.server.lifecycle import CONFIG_ERROR, Lifecycle, StartupError
from noderun.server.settings import Settings
from noderun.server.uvicorn_config import uvicorn_config

__all__ = ["bind", "config_for", "serve"]

log = structlog.get_logger(__name__)


def serve(
    settings: Settings,
    registry: Registry | None = None,
    *,
    sock: socket.socket | None = None,
    worker: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then drain and stop; returns after a clean stop.

    Raises :class:`StartupError` (with its ``exit_status``) when the nodes, the
    address, the TLS files or the store are unusable; nothing is left running then.
    ``sock`` is a socket already bound (by the supervisor of ``--workers``, which
    numbers its children ``worker``); ``on_ready`` is called once the server is ready.
    """
    if registry is None:
        try:
            registry = registry_for(settings)
        except RegistryError as exc:
            raise StartupError(
                "--nodes", ",".join(settings.nodes), str(exc), "fix or remove it", CONFIG_ERROR
            ) from None
    try:
        app = create_app(settings, registry)
    except ValueError as exc:  # the workflows directory
        raise StartupError(
            "--workflows", settings.workflows, str(exc), "give an existing directory", CONFIG_ERROR
        ) from None
    lifecycle: Lifecycle = app.state.lifecycle
    config = config_for(settings, app)
    try:
        config.load()
    except (ssl.SSLError, OSError) as exc:
        raise StartupError(
            "--ssl-certfile/--ssl-keyfile",
            settings.ssl_certfile,
            f"cannot load them ({exc})",
            "give a PEM certificate and its private key",
            CONFIG_ERROR,
        ) from None
    if sock is None:
        sock = bind(settings.host, settings.port)
    scheme = "wss" if settings.ssl_certfile else "ws"
    host, port = sock.getsockname()[:2]
    url = f"{scheme}://{_url_host(host)}:{port}/ws"
    server = uvicorn.Server(config)
    lifecycle.on_drain(lambda: _stop_listening(server))
    lifecycle.on_ready(settle_heap)
    # Once the store is up: a start-up error stays the only line on stderr.
    lifecycle.on_ready(
        lambda: log.info("server.listening", url=url, pid=os.getpid(), worker=worker)
    )
    if on_ready is not None:
        lifecycle.on_ready(on_ready)
    # Until uvicorn installs its handlers (and after it restores these and re-raises the
    # signal that stopped it), a signal only asks the server to exit: not the default
    # action, which would end a graceful stop in death by signal instead of exit 0.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(
                sig, lambda _sig, _frame: setattr(server, "should_exit", True)
            )
        if hasattr(signal, "SIGHUP"):  # not on Windows
            previous[signal.SIGHUP] = signal.signal(
                signal.SIGHUP, lambda _sig, _frame: _reload(app.state.reload_workflows)
            )
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(_serve(server, lifecycle, sock))
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def config_for(settings: Settings, app: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` under ``settings`` (address, TLS, proxies)."""
    return uvicorn_config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        proxy_headers=settings.proxy_headers,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        max_frame_bytes=settings.max_frame_bytes,
    )


async def _serve(server: uvicorn.Server, lifecycle: Lifecycle, sock: socket.socket) -> None:
    # Started before uvicorn so that a store failure is one StartupError, not uvicorn's
    # lifespan traceback; the lifespan's start() then finds it started.
    await lifecycle.start()
    try:
        await server.serve(sockets=[sock])
    finally:
        await lifecycle.stop()


def _reload(reload_workflows: Callable[[], None]) -> None:
    """SIGHUP: re-read the workflows directory on the event loop, not inside the handler
    (which may interrupt anything, a log call included)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not serving yet
        reload_workflows()
        return
    loop.call_soon_threadsafe(reload_workflows)


def _stop_listening(server: uvicorn.Server) -> None:
    for listener in getattr(server, "servers", ()):
        listener.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            "--host/--port",
            f"{host}:{port}",
            f"cannot listen there ({exc.strerror})",
            "choose a free port and an address of this machine",
            CONFIG_ERROR,
        ) from None
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        sock.close()
        raise StartupError(
            "--host",
            host,
            f"not an address ({exc})",
            "give an IP address or host name",
            CONFIG_ERROR,
        ) from None
    sock.set_inheritable(True)
    return sock
