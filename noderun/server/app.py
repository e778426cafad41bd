"""The Starlette application: ``/ws`` (raw ASGI), the probes, ``/health`` and the SDK's
HTTP API under ``/api`` (:mod:`noderun.server.http_api`).

``create_app()`` without arguments reads the settings from the environment
(``NODERUN_*``, ``NODERUN_CONFIG``), so plain uvicorn serves the same server as
``noderun serve``::

    uvicorn --factory noderun.server.app:create_app --host 0.0.0.0 --port 7777

Its ASGI lifespan runs the :class:`~noderun.server.lifecycle.Lifecycle`: start-up
fails loudly when the store cannot start; SIGINT/SIGTERM drain the runs before
uvicorn closes the sockets.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Scope
from starlette.types import Receive as ASGIReceive
from starlette.types import Send as ASGISend

from noderun.assets import AssetStoreUnavailable
from noderun.runtime.registry import Registry, load_registry
from noderun.runtime.workflows import WorkflowCatalog, load_workflows
from noderun.server.assets_api import AssetsApi
from noderun.server.auth import Authenticator
from noderun.server.connection import Connection, Receive, Send
from noderun.server.http_api import HttpApi
from noderun.server.lifecycle import CONFIG_ERROR, Lifecycle, Phase, StartupError
from noderun.server.metrics import metrics_route
from noderun.server.probes import probe_routes
from noderun.server.sdk import SdkService
from noderun.server.settings import Settings, load_settings

__all__ = ["WebSocketEndpoint", "create_app", "registry_for"]

log = structlog.get_logger(__name__)


class WebSocketEndpoint:
    """``/ws`` as a raw ASGI app: Starlette's ``WebSocket`` wrapper would add a layer
    per frame (a ``WebSocketRoute`` whose endpoint is not a function calls it as is)."""

    def __init__(self, lifecycle: Lifecycle, sdk: SdkService) -> None:
        self._lifecycle = lifecycle
        settings = lifecycle.settings
        self._settings = settings
        self._auth = Authenticator(settings.tokens)
        self._sdk = sdk

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        # Every line logged while serving this connection (its task and the tasks it
        # starts) carries its id.
        structlog.contextvars.bind_contextvars(connection_id=secrets.token_hex(6))
        user_id, reason = self._auth.check(scope.get("headers", ()), scope.get("query_string", b""))
        if user_id is None:
            client = scope.get("client")
            log.warning("auth.refused", reason=reason, client=client[0] if client else None)
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        lifecycle = self._lifecycle
        hub = lifecycle.hub
        if lifecycle.phase is Phase.DRAINING:
            await send({"type": "websocket.close", "code": 1012, "reason": "server shutting down"})
            return
        if hub is None or lifecycle.phase is not Phase.READY:
            await send({"type": "websocket.close", "code": 1013, "reason": "server not ready"})
            return
        settings = self._settings
        if len(lifecycle.connections) >= settings.max_connections:
            # Accepted then closed, as for a bad token: a client sees a close code and
            # a reason (a refused handshake only surfaces as an HTTP status).
            await send(
                {
                    "type": "websocket.close",
                    "code": 1013,
                    "reason": f"server full: {settings.max_connections} connections",
                }
            )
            return
        connection = Connection(
            hub,
            receive,
            send,
            user_id=user_id,
            outbound_limit=settings.outbound_limit,
            outbound_bytes=settings.outbound_bytes,
            slow_client_timeout=settings.slow_client_timeout,
            ping_interval=settings.ping_interval,
            sdk=self._sdk,
        )
        lifecycle.connections.add(connection)
        try:
            await connection.serve()
        finally:
            lifecycle.connections.discard(connection)
            lifecycle.slow_consumer_closes += connection.slow_consumer_closes


class _App(Starlette):
    """Starlette, except that WebSocket connections go from the route table straight to
    their route: Starlette's exception middleware wraps every ``send`` of a
    connection, which on ``/ws`` costs ≈ 1.4k instructions per frame sent (callgrind)
    for an endpoint that handles its own errors. HTTP requests and the lifespan keep
    the full middleware stack."""

    def build_middleware_stack(self) -> ASGIApp:
        http = super().build_middleware_stack()
        router = self.router

        async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
            if scope["type"] == "websocket":
                await router(scope, receive, send)
            else:
                await http(scope, receive, send)

        return app


def registry_for(settings: Settings) -> Registry:
    """The nodes ``settings`` ask for: built-ins, debug nodes, entry points, ``--nodes``."""
    return load_registry(settings.nodes, debug_nodes=settings.debug_nodes)


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> Starlette:
    """The application; ``app.state.lifecycle`` is its :class:`Lifecycle`.

    Without ``settings``, they are read from the environment (flags' variables and
    ``NODERUN_CONFIG``); without ``registry``, :func:`registry_for` those settings.
    Building the app changes nothing process-wide (signals and the collector are
    touched only by the lifespan and :func:`noderun.server.serve.serve`). Reads the
    stored workflows (``settings.workflows``) now, once; raises :class:`ValueError`
    when that directory does not exist. ``app.state.reload_workflows()`` reads it again.
    """
    settings = settings or load_settings()
    registry = registry or registry_for(settings)
    workflows = (
        load_workflows(settings.workflows, registry) if settings.workflows else WorkflowCatalog()
    )
    sdk = SdkService(settings, registry, workflows)
    lifecycle = Lifecycle(settings, registry, workflows)
    assets = AssetsApi(settings)
    lifecycle.asset_store = assets.store

    async def start_assets() -> None:
        try:
            await assets.start()
        except AssetStoreUnavailable as exc:
            raise StartupError(
                "--assets-dir", exc.path, exc.reason, "choose a writable directory", CONFIG_ERROR
            ) from None

    lifecycle.add_part(start_assets, assets.close)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await lifecycle.start()
        lifecycle.install_signal_handlers()
        try:
            yield
        finally:
            lifecycle.restore_signal_handlers()
            await lifecycle.stop()

    app = _App(
        debug=settings.debug,
        routes=[
            *probe_routes(lifecycle),
            metrics_route(lifecycle),
            WebSocketRoute("/ws", WebSocketEndpoint(lifecycle, sdk), name="ws"),
            # Assets before the API, whose catch-all answers any other /api/ path.
            *assets.routes,
            *HttpApi(sdk, Authenticator(settings.tokens), lambda: lifecycle.hub).routes(),
        ],
        lifespan=lifespan,
    )
    app.state.lifecycle = lifecycle
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
    # The workers' nodes joined the registry: the catalog and the stored workflows (which
    # may use them) are read again.
    lifecycle.on_nodes_added(sdk.reload_nodes)
    lifecycle.on_nodes_added(reload_workflows)
    return app
