"""The server's lifecycle: start, serve, drain on a signal, stop.

::

    NEW ──start()──▶ STARTING ──▶ READY ──signal / drain()──▶ DRAINING ──▶ STOPPING ──▶ STOPPED
                        │                                                    ▲
                        └── a dependency or setting fails: StartupError ─────┘ (via stop())

One object for both ways of running: :func:`noderun.server.serve.serve` (the CLI)
and ``uvicorn --factory noderun.server.app:create_app``. The app's ASGI lifespan
starts it and stops it; at start-up it also wraps the process's SIGINT/SIGTERM
handlers (uvicorn's, installed just before): the first signal drains — no new
WebSockets (and, under :func:`serve`, no new TCP connections), runs in flight get
``drain_timeout`` seconds to finish, the rest end ``cancelled`` ("server shutting
down") and their terminal frames are flushed to the clients — and only then is the
signal handed to uvicorn, which closes the sockets and runs the lifespan shutdown
(runner pool, then the store's final commit). A second signal cuts the drain short.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, Protocol

import structlog

from noderun.assets import AssetStore
from noderun.contract import RunStore
from noderun.nodetool import NodeToolError, PoolOptions, WorkerPool, start_nodetool, workspace_dir
from noderun.persistence.errors import StoreConfigError, StoreError, StoreUnavailable
from noderun.persistence.retention import run_retention
from noderun.runtime.hub import Hub, RuntimeConfig
from noderun.runtime.pool import RunnerPool
from noderun.runtime.registry import Registry
from noderun.runtime.workflows import WorkflowCatalog
from noderun.server.connection import Connection
from noderun.server.settings import Settings

__all__ = [
    "CONFIG_ERROR",
    "DEPENDENCY_ERROR",
    "Lifecycle",
    "Phase",
    "ReadinessCheck",
    "StartupError",
    "workers_readiness",
]

log = structlog.get_logger(__name__)

#: Exit status of a start-up refused for a setting's value.
CONFIG_ERROR = 2
#: Exit status of a start-up refused because a dependency (the store) is unreachable.
DEPENDENCY_ERROR = 3

#: Returns ``None`` when its part of the server is ready, else the reason it is not.
ReadinessCheck = Callable[[], Awaitable["str | None"]]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: While runs are in flight but none has a task to await (durable runs waiting for
#: their commit), the drain looks again this often.
_DRAIN_POLL = 0.05


class Phase(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


_MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.NEW: frozenset({Phase.STARTING, Phase.STOPPED}),
    Phase.STARTING: frozenset({Phase.READY, Phase.STOPPING}),
    Phase.READY: frozenset({Phase.DRAINING, Phase.STOPPING}),
    Phase.DRAINING: frozenset({Phase.STOPPING}),
    Phase.STOPPING: frozenset({Phase.STOPPED}),
    Phase.STOPPED: frozenset(),
}


class StartupError(Exception):
    """The server cannot start: ``setting`` (a flag or variable) has ``value``, which fails
    for ``reason``; ``fix`` says what to do. ``exit_status`` is :data:`CONFIG_ERROR` or
    :data:`DEPENDENCY_ERROR`."""

    def __init__(
        self, setting: str, value: object, reason: str, fix: str, exit_status: int
    ) -> None:
        self.setting = setting
        self.value = value
        self.reason = reason
        self.fix = fix
        self.exit_status = exit_status
        super().__init__(f"{setting} {value!r}: {reason}; {fix}")


class Lifecycle:
    """The runner pool, the run store, the hub and the connections of one server."""

    def __init__(
        self, settings: Settings, registry: Registry, workflows: WorkflowCatalog | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.workflows = workflows if workflows is not None else WorkflowCatalog()
        self.phase = Phase.NEW
        self.hub: Hub | None = None
        self.store: RunStore | None = None
        self.connections: set[Connection] = set()
        #: Slow-consumer closes of connections that are gone (for metrics).
        self.slow_consumer_closes = 0
        self._pool: RunnerPool | None = None
        #: NodeTool worker processes (``--nodetool-workers``), whose nodes join the registry.
        self.workers: WorkerPool | None = None
        #: Where worker nodes read the assets their media inputs refer to (set by the app).
        self.asset_store: AssetStore | None = None
        self._on_nodes_added: list[Callable[[], None]] = []
        #: Parts started after the runner pool and stopped before the store (assets).
        self._parts: list[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = []
        self._started_parts: list[Callable[[], Awaitable[None]]] = []
        self._retention: asyncio.Task[None] | None = None
        self._checks: list[tuple[str, ReadinessCheck]] = []
        self._on_ready: list[Callable[[], None]] = []
        self._on_drain: list[Callable[[], None]] = []
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cut_short: asyncio.Event | None = None
        self._drain_task: asyncio.Task[None] | None = None

    # -- hooks ------------------------------------------------------------------------

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """``/readyz`` answers 503 while ``check()`` returns a reason (e.g. NodeTool workers
        still starting)."""
        self._checks.append((name, check))

    def add_part(
        self, start: Callable[[], Awaitable[None]], close: Callable[[], Awaitable[None]]
    ) -> None:
        """Start ``start()`` with the server (after the runner pool) and ``close()`` it
        when the server stops (before the store). ``start`` may raise
        :class:`StartupError`."""
        self._parts.append((start, close))

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once start-up is over."""
        self._on_ready.append(callback)

    def on_nodes_added(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after the NodeTool workers' nodes joined the registry."""
        self._on_nodes_added.append(callback)

    def on_drain(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the drain begins (e.g. to close the listening sockets)."""
        self._on_drain.append(callback)

    # -- phases -------------------------------------------------------------------------

    def _move(self, to: Phase) -> None:
        if to not in _MOVES[self.phase]:
            raise RuntimeError(f"server lifecycle cannot go from {self.phase.value} to {to.value}")
        self.phase = to

    async def start(self) -> None:
        """Start the runner pool and the store; idempotent once ready. Raises
        :class:`StartupError` (having released what it started) when the store cannot."""
        if self.phase is not Phase.NEW:
            return
        self._move(Phase.STARTING)
        self._loop = asyncio.get_running_loop()
        settings = self.settings
        for name in settings.unknown_variables:
            log.warning("settings.unknown_variable", variable=name, hint="no setting reads it")
        try:
            self._pool = RunnerPool(settings.runners)
            await self._pool.start()
            for start, close in self._parts:
                await start()
                self._started_parts.append(close)
            if settings.nodetool_workers > 0:
                self.workers = await _start_workers(settings, self.registry, self.asset_store)
                self.add_readiness_check("nodetool workers", workers_readiness(self.workers))
                for callback in self._on_nodes_added:
                    callback()
            if settings.durable:
                self.store = await _open_store(settings)
            self.hub = Hub(
                self.registry,
                self._pool,
                RuntimeConfig(
                    replay_limit=settings.replay_limit,
                    detach_grace=settings.detach_grace,
                    finished_ttl=settings.finished_ttl,
                    max_active_runs=settings.max_active_runs,
                    max_runs_per_connection=settings.max_runs_per_connection,
                    max_runs_per_user=settings.max_runs_per_user,
                    max_queued_runs_per_user=settings.max_queued_runs_per_user,
                    max_graph_nodes=settings.max_graph_nodes,
                    run_timeout=settings.run_timeout,
                ),
                self.store,
                self.workflows,
            )
        except BaseException:
            await self.stop()
            raise
        hub, store = self.hub, self.store
        if store is not None:
            store.on_cancel_request(lambda job_id: _cancel_local(hub, job_id))
            if settings.retention > 0:
                self._retention = self._loop.create_task(
                    run_retention(store, settings.retention, _retention_interval(settings))
                )
        self._move(Phase.READY)
        for callback in self._on_ready:
            callback()
        log.info(
            "server.ready",
            store=redact(settings.store),
            runners=settings.runners,
            nodes=len(self.registry),
        )

    async def drain(self, grace: float | None = None) -> None:
        """Stop taking connections, give runs in flight ``grace`` seconds (default:
        ``drain_timeout``) to finish, cancel the rest, flush their terminal frames."""
        if self.phase is not Phase.READY:
            return
        self._move(Phase.DRAINING)
        self._cut_short = asyncio.Event()
        grace = self.settings.drain_timeout if grace is None else grace
        hub = self.hub
        assert hub is not None
        log.info("server.draining", active_runs=len(hub.active), grace_s=grace)
        for callback in self._on_drain:
            callback()
        await self._wait_for_runs(hub, grace)
        if hub.active:
            log.warning("server.drain_timeout", cancelled_runs=len(hub.active))
        await hub.close(self.settings.store_options.finish_timeout)
        flushes = [connection.flushed() for connection in self.connections]
        if flushes:
            try:
                await asyncio.wait_for(asyncio.gather(*flushes), timeout=5.0)
            except TimeoutError:
                log.warning("server.flush_timeout", connections=len(flushes))
        log.info("server.drained")

    async def _wait_for_runs(self, hub: Hub, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        assert self._cut_short is not None
        cut_short = loop.create_task(self._cut_short.wait())
        try:
            while hub.active and not cut_short.done():
                left = deadline - loop.time()
                if left <= 0:
                    return
                tasks = {run.task for run in hub.active.values() if run.task is not None}
                await asyncio.wait(
                    {*tasks, cut_short},
                    timeout=left if tasks else min(left, _DRAIN_POLL),
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            cut_short.cancel()

    async def stop(self) -> None:
        """Cancel what is left, close the runner pool, then the store (its final commit)."""
        if self.phase in (Phase.STOPPING, Phase.STOPPED):
            return
        if self.phase is Phase.NEW:
            self._move(Phase.STOPPED)
            return
        self._move(Phase.STOPPING)
        hub, self.hub = self.hub, None
        try:
            if hub is not None:
                log.info("server.stopping", active_runs=len(hub.active))
                await hub.close(self.settings.store_options.finish_timeout)
        finally:
            if self._retention is not None:
                self._retention.cancel()
            if self._pool is not None:
                await self._pool.close()
            if self.workers is not None:
                await self.workers.close()
            for close in reversed(self._started_parts):
                await close()
            if self.store is not None:
                await self.store.close()
            self._move(Phase.STOPPED)

    # -- readiness ----------------------------------------------------------------------

    async def not_ready(self) -> list[str]:
        """Why the server should not get traffic now; empty when it is ready."""
        if self.phase is not Phase.READY:
            return [f"server {self.phase.value}"]
        reasons: list[str] = []
        store = self.store
        if store is not None:
            timeout = self.settings.store_options.connect_timeout
            try:
                # A real read: a pool that still looks fine but cannot reach the database fails it.
                await asyncio.wait_for(store.get_run("noderun-readiness-probe"), timeout)
            except StoreError as exc:
                reasons.append(f"store: {exc}")
            except TimeoutError:
                reasons.append(f"store: no answer within {timeout}s")
        for name, check in self._checks:
            reason = await check()
            if reason is not None:
                reasons.append(f"{name}: {reason}")
        return reasons

    # -- signals ------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """Drain on SIGINT/SIGTERM before the handler found (uvicorn's) sees the signal.
        Only in the main thread (signals are delivered there); elsewhere a no-op."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._pass_on(sig)
            return
        loop.call_soon_threadsafe(self._signalled, sig)

    def _signalled(self, sig: int) -> None:
        # Nothing may come between a signal and uvicorn seeing it but the drain task,
        # whose `finally` passes it on: not even a log line (stderr may be a closed pipe).
        if self.phase is Phase.READY and self._drain_task is None:
            assert self._loop is not None
            self._drain_task = self._loop.create_task(self._drain_then_pass_on(sig))
        elif self.phase is Phase.DRAINING and self._cut_short is not None:
            self._cut_short.set()
        else:
            self._pass_on(sig)

    async def _drain_then_pass_on(self, sig: int) -> None:
        try:
            log.info("server.signal", signal=signal.Signals(sig).name)
            await self.drain()
        except Exception:
            with contextlib.suppress(Exception):
                log.exception("server.drain_failed")
        finally:
            self._pass_on(sig)

    def _pass_on(self, sig: int) -> None:
        previous = self._previous.get(sig)
        if callable(previous):
            previous(sig, None)
        else:  # not Python's: the default action, after this handler is gone
            self.restore_signal_handlers()
            signal.raise_signal(sig)


async def _open_store(settings: Settings) -> RunStore:
    from noderun.persistence import default_server_id, open_store

    url = settings.store
    server_id = settings.server_id or default_server_id(settings.port)
    try:
        store = open_store(url, server_id=server_id, options=settings.store_options)
    except StoreConfigError as exc:
        raise StartupError(
            "--store", redact(url), exc.reason, "give a valid store URL", CONFIG_ERROR
        ) from None
    try:
        await store.start()
    except StoreUnavailable as exc:
        raise StartupError(
            "--store",
            redact(url),
            str(exc),
            "check that the database runs and accepts this URL, or use --store none",
            DEPENDENCY_ERROR,
        ) from None
    except StoreError as exc:
        raise StartupError(
            "--store", redact(url), str(exc), "point --store at another database", CONFIG_ERROR
        ) from None
    return store


class _CountsWorkers(Protocol):
    @property
    def alive(self) -> int: ...


def workers_readiness(pool: _CountsWorkers) -> ReadinessCheck:
    """Not ready while no NodeTool worker is alive (all crashed, restarting): the worker
    nodes would only queue. A pool with some workers alive still serves."""

    async def check() -> str | None:
        return None if pool.alive > 0 else "no worker alive (restarting)"

    return check


def pool_options(settings: Settings) -> PoolOptions:
    """The NodeTool worker pool that ``settings`` ask for."""
    workspace = workspace_dir(settings.nodetool_tmpdir, os.environ)
    return PoolOptions(
        workers=settings.nodetool_workers,
        python=settings.nodetool_python or sys.executable,
        namespaces=settings.nodetool_namespaces,
        concurrency=settings.nodetool_concurrency,
        queue_limit=settings.nodetool_queue,
        start_timeout=settings.nodetool_start_timeout,
        cancel_grace=settings.nodetool_cancel_grace,
        hang_timeout=settings.nodetool_hang_timeout,
        env={} if workspace is None else {"TMPDIR": workspace},
    )


async def _start_workers(
    settings: Settings, registry: Registry, assets: AssetStore | None
) -> WorkerPool:
    options = pool_options(settings)
    python = options.python
    try:
        return await start_nodetool(options, registry, assets)
    except NodeToolError as exc:
        raise StartupError(
            "--nodetool-python",
            python,
            f"nodetool_unavailable: {exc}",
            "install nodetool-core and the node packages for it, or --nodetool-workers 0",
            DEPENDENCY_ERROR,
        ) from None


def _cancel_local(hub: Hub, job_id: str) -> None:
    run = hub.get_durable(job_id)
    if run is not None:
        run.cancel("cancelled by client")


def _retention_interval(settings: Settings) -> float:
    """A tenth of the retention period, between 1 s and an hour."""
    return min(max(settings.retention / 10, 1.0), 3600.0)


def redact(url: str) -> str:
    """``url`` without its password (anything before ``@``)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest
