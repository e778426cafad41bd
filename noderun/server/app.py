"""The Starlette application: ``/ws`` (raw ASGI, for speed), ``/health`` and the SDK's
HTTP API under ``/api`` (:mod:`noderun.server.http_api`).

Start-up (lifespan) starts the runner pool, the NodeTool workers (if any) and
the run store and fails loudly if one cannot start; shutdown cancels active
runs with a reason, waits for their terminal frames, then closes the pools and
the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from noderun.contract import RunStore
from noderun.nodetool import NodeToolError, PoolOptions, WorkerPool, start_nodetool
from noderun.persistence.retention import run_retention
from noderun.runtime.hub import Hub, RuntimeConfig
from noderun.runtime.pool import RunnerPool
from noderun.runtime.registry import Registry, default_registry
from noderun.runtime.workflows import WorkflowCatalog, load_workflows
from noderun.server.assets_api import AssetsApi
from noderun.server.auth import Authenticator
from noderun.server.connection import Connection, Receive, Send
from noderun.server.heap import settle_heap
from noderun.server.http_api import HttpApi
from noderun.server.sdk import SdkService
from noderun.server.settings import Settings

__all__ = ["create_app"]

log = structlog.get_logger(__name__)


class _State:
    def __init__(self) -> None:
        self.hub: Hub | None = None
        self.store: RunStore | None = None
        self.connections: set[Connection] = set()

    async def drain(self, deadline: float = 10.0) -> None:
        """Before sockets close: end every active run and let its terminal frame go out.

        The server calls this after it stops accepting and before it closes
        connections, so clients see ``job_update cancelled`` rather than a bare close.
        """
        hub = self.hub
        if hub is None:
            return
        await hub.close(deadline)
        flushes = [connection.flushed() for connection in self.connections]
        if flushes:
            try:
                await asyncio.wait_for(asyncio.gather(*flushes), deadline)
            except TimeoutError:
                log.warning("server.drain_timeout", connections=len(flushes))


class WebSocketEndpoint:
    """Raw ASGI ``/ws``: Starlette's ``WebSocket`` wrapper adds a layer per frame."""

    def __init__(self, state: _State, settings: Settings, sdk: SdkService) -> None:
        self._state = state
        self._settings = settings
        self._auth = Authenticator(settings.tokens)
        self._sdk = sdk

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        user_id, reason = self._auth.check(scope.get("headers", ()), scope.get("query_string", b""))
        if user_id is None:
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        hub = self._state.hub
        if hub is None:
            await send({"type": "websocket.close", "code": 1013, "reason": "server not ready"})
            return
        settings = self._settings
        connection = Connection(
            hub,
            receive,
            send,
            user_id=user_id,
            outbound_limit=settings.outbound_limit,
            ping_interval=settings.ping_interval,
            sdk=self._sdk,
        )
        self._state.connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._state.connections.discard(connection)


class _App(Starlette):
    """Starlette, with ``/ws`` handed straight to its endpoint.

    Starlette's middleware stack wraps every ``send`` of a WebSocket route in
    its exception handler; on the hot path that wrapper cost more per run than
    it is worth for an endpoint that handles its own errors. The route stays
    registered so ``url_path_for`` and routing tables still show it.
    """

    def __init__(self, websocket: WebSocketEndpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._websocket = websocket

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await self._websocket(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> Starlette:
    """The application; reads the stored workflows (``settings.workflows``) now, once.

    Raises :class:`ValueError` when the workflows directory does not exist.
    """
    settings = settings or Settings()
    registry = registry or default_registry()
    state = _State()
    workflows = (
        load_workflows(settings.workflows, registry) if settings.workflows else WorkflowCatalog()
    )
    sdk = SdkService(settings, registry, workflows)
    assets = AssetsApi(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pool = RunnerPool(settings.runners)
        await pool.start()
        store: RunStore | None = None
        retention: asyncio.Task[None] | None = None
        workers: WorkerPool | None = None
        try:
            await assets.start()
            if settings.nodetool_workers > 0:
                workers = await _start_workers(settings, registry)
                # The workers' nodes joined the registry: the catalog and the stored
                # workflows (which may use them) are read again.
                sdk.reload_nodes()
                reload_workflows()
            if settings.store.lower() != "none":
                store = await _open_store(settings.store, _server_id(settings))
            hub = Hub(
                registry,
                pool,
                RuntimeConfig(
                    replay_limit=settings.replay_limit,
                    detach_grace=settings.detach_grace,
                    finished_ttl=settings.finished_ttl,
                    max_active_runs=settings.max_active_runs,
                ),
                store,
                workflows,
            )
            if store is not None:
                store.on_cancel_request(lambda job_id: _cancel_local(hub, job_id))
                if settings.retention > 0:
                    retention = asyncio.get_running_loop().create_task(
                        run_retention(store, settings.retention, _retention_interval(settings))
                    )
            state.hub, state.store = hub, store
            settle_heap()
            log.info("server.ready", store=_redact(settings.store), runners=settings.runners)
            yield
            log.info("server.stopping", active_runs=len(hub.active))
            await hub.close()
        finally:
            state.hub = None
            if retention is not None:
                retention.cancel()
            await pool.close()
            if workers is not None:
                await workers.close()
            await assets.close()
            if store is not None:
                await store.close()

    async def health(_request: Request) -> JSONResponse:
        hub = state.hub
        if hub is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok", "active_runs": len(hub.active)})

    websocket = WebSocketEndpoint(state, settings, sdk)
    api = HttpApi(sdk, Authenticator(settings.tokens), lambda: state.hub)
    app = _App(
        websocket,
        debug=settings.debug,
        # Assets before the API, whose catch-all answers any other /api/ path.
        routes=[
            Route("/health", health),
            WebSocketRoute("/ws", websocket),
            *assets.routes,
            *api.routes(),
        ],
        lifespan=lifespan,
    )
    app.state.drain = state.drain
    app.state.assets = assets

    def reload_workflows() -> None:
        """Read the workflows directory again; on failure keep serving the old catalog."""
        if not settings.workflows:
            return
        try:
            workflows.replace(load_workflows(settings.workflows, registry))
        except ValueError as exc:
            log.error("workflows.reload_failed", error=str(exc))

    app.state.reload_workflows = reload_workflows
    return app


async def _start_workers(settings: Settings, registry: Registry) -> WorkerPool:
    options = PoolOptions(
        workers=settings.nodetool_workers,
        python=settings.nodetool_python or sys.executable,
        namespaces=settings.nodetool_namespaces,
        concurrency=settings.nodetool_concurrency,
        queue_limit=settings.nodetool_queue,
        start_timeout=settings.nodetool_start_timeout,
        cancel_grace=settings.nodetool_cancel_grace,
        hang_timeout=settings.nodetool_hang_timeout,
    )
    try:
        return await start_nodetool(options, registry)
    except NodeToolError as exc:
        log.error("server.nodetool_unavailable", error=str(exc))
        raise


def _server_id(settings: Settings) -> str:
    from noderun.persistence import default_server_id

    return settings.server_id or default_server_id(settings.port)


async def _open_store(url: str, server_id: str) -> RunStore:
    from noderun.persistence import StoreError, StoreOptions, open_store

    try:
        store = open_store(url, server_id=server_id, options=StoreOptions.from_env())
        await store.start()
    except StoreError as exc:
        # One clear line before uvicorn's start-up traceback: why the server stops.
        log.error("server.store_unavailable", store=_redact(url), error=str(exc))
        raise
    return store


def _cancel_local(hub: Hub, job_id: str) -> None:
    run = hub.get(job_id)
    if run is not None:
        run.cancel("cancelled by client")


def _retention_interval(settings: Settings) -> float:
    """A tenth of the retention period, between 1 s and an hour."""
    return min(max(settings.retention / 10, 1.0), 3600.0)


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest
