"""The HTTP API NodeTool's SDK and its vvvv package call, on the same port as ``/ws``
(PROTOCOL.md §8).

JSON in and out (encoded with msgspec: a non-finite float in a node default becomes
``null`` rather than a failed listing; a media value's bytes become a ``data:`` URI, as
for a text client on ``/ws``). Every route but ``/api/health`` takes the
tokens ``/ws`` takes, as ``Authorization: Bearer``; without one it answers 401.
A refusal is ``{"code", "message", "detail", "retryable"}`` with a 4xx/5xx status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from noderun.protocol.client import (
    GetNodeTypeInventory,
    GetWorkflowInterface,
    GetWorkflowInterfaces,
    ListWorkflows,
    ListWorkflowSummaries,
    PreflightWorkflow,
)
from noderun.runtime.hub import Hub
from noderun.server.auth import Authenticator
from noderun.server.errors import ApiError
from noderun.server.jobs import cancel_job, job_snapshot
from noderun.server.sdk import SdkService

__all__ = ["QUERIES", "HttpApi", "NodesQuery", "query_fields"]

Handler = Callable[[Request, str], Awaitable[object]]
T = TypeVar("T")
Q = TypeVar("Q", bound=msgspec.Struct)

_encode = msgspec.json.Encoder().encode


def _json(payload: object, status: int = 200) -> Response:
    return Response(_encode(payload), status_code=status, media_type="application/json")


def _refusal(exc: ApiError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    response = _json(exc.body(), exc.status)
    if headers:
        response.headers.update(headers)
    return response


class NodesQuery(msgspec.Struct, kw_only=True):
    """``GET /api/nodes/metadata``'s query: one node type, or the listing of a namespace
    (and those under it), full when ``fields`` is ``full``."""

    node_type: str | None = None
    namespace: str | None = None
    fields: str | None = None


#: Route → the struct its query string is read into (the RPC's own, where there is one),
#: for the OpenAPI document's parameters.
QUERIES: dict[str, type[msgspec.Struct]] = {
    "/api/nodes/metadata": NodesQuery,
    "/api/sdk/v1/node-types": GetNodeTypeInventory,
    "/api/workflows": ListWorkflows,
    "/api/workflows/{workflow_id}/interface": GetWorkflowInterface,
    "/api/sdk/v1/workflows": ListWorkflowSummaries,
}


class HttpApi:
    """The routes, bound to the service that answers them and the hub that runs jobs."""

    def __init__(
        self, service: SdkService, auth: Authenticator, hub: Callable[[], Hub | None]
    ) -> None:
        self._service = service
        self._auth = auth
        self._hub = hub

    def routes(self) -> list[BaseRoute]:
        get, post = ["GET"], ["POST"]
        authed = self._authed
        return [
            Route("/api/health", self._health, methods=get),
            Route("/api/nodes/metadata", authed(self._nodes), methods=get),
            Route("/api/sdk/v1/node-types", authed(self._node_types), methods=get),
            Route("/api/sdk/v1/capabilities", authed(self._capabilities), methods=get),
            Route("/api/sdk/v1/preflight", authed(self._preflight), methods=post),
            Route("/api/workflows", authed(self._workflows), methods=get),
            Route("/api/workflows/{workflow_id}", authed(self._workflow), methods=get),
            Route("/api/workflows/{workflow_id}/interface", authed(self._interface), methods=get),
            Route("/api/sdk/v1/workflows", authed(self._summaries), methods=get),
            Route("/api/sdk/v1/workflow-interfaces", authed(self._interfaces), methods=post),
            Route("/api/jobs/{job_id}", authed(self._job), methods=get),
            Route("/api/jobs/{job_id}/cancel", authed(self._cancel), methods=post),
            Route("/api/{rest:path}", authed(self._unknown)),
        ]

    def _authed(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                # Header only: a token in a URL ends up in logs and browser history.
                user_id, reason = self._auth.check(request.headers.raw, b"")
                if user_id is None:
                    raise ApiError(401, "UNAUTHORIZED", reason)
                return _json(await handler(request, user_id))
            except ApiError as exc:
                return _refusal(exc)

        return endpoint

    # -- server and nodes -----------------------------------------------------------

    async def _health(self, _request: Request) -> Response:
        hub = self._hub()
        if hub is None:
            return _refusal(ApiError(503, "SERVICE_UNAVAILABLE", "starting", retryable=True))
        return _json(self._service.health(len(hub.active)))

    async def _nodes(self, request: Request, _user: str) -> object:
        query = _query(request, NodesQuery)
        if query.node_type:
            return self._service.node(query.node_type)
        return self._service.catalog.select(namespace=query.namespace, full=query.fields == "full")

    async def _node_types(self, request: Request, _user: str) -> object:
        query = _query(request, GetNodeTypeInventory)
        return self._service.inventory(query.cursor, query.limit)

    async def _capabilities(self, _request: Request, _user: str) -> object:
        return self._service.capabilities()

    async def _preflight(self, request: Request, _user: str) -> object:
        return self._service.preflight(await _body(request, PreflightWorkflow))

    # -- workflows ------------------------------------------------------------------

    async def _workflows(self, request: Request, _user: str) -> object:
        query = _query(request, ListWorkflows)
        return self._service.workflows_page(query.limit, query.cursor)

    async def _workflow(self, request: Request, _user: str) -> object:
        return self._service.workflow(request.path_params["workflow_id"])

    async def _interface(self, request: Request, _user: str) -> object:
        query = _query(request, GetWorkflowInterface)
        return self._service.interface(request.path_params["workflow_id"], query.version)

    async def _summaries(self, request: Request, _user: str) -> object:
        query = _query(request, ListWorkflowSummaries)
        return self._service.summaries(query.limit, query.cursor)

    async def _interfaces(self, request: Request, _user: str) -> object:
        body = await _body(request, GetWorkflowInterfaces)
        return self._service.interfaces(body.ids, body.version)

    # -- jobs -----------------------------------------------------------------------

    def _running_hub(self) -> Hub:
        hub = self._hub()
        if hub is None:
            raise ApiError(503, "SERVICE_UNAVAILABLE", "server not ready", retryable=True)
        return hub

    async def _job(self, request: Request, user_id: str) -> object:
        return await job_snapshot(self._running_hub(), request.path_params["job_id"], user_id)

    async def _cancel(self, request: Request, user_id: str) -> object:
        return await cancel_job(self._running_hub(), request.path_params["job_id"], user_id)

    async def _unknown(self, request: Request, _user: str) -> object:
        raise ApiError(404, "NOT_FOUND", f"no API route {request.method} {request.url.path}")


def _query(request: Request, kind: type[Q]) -> Q:
    """The query string read into ``kind``: a parameter absent or empty keeps its field's
    default, an integer field's value must be an integer."""
    values: dict[str, object] = {}
    for field in query_fields(kind):
        raw = request.query_params.get(field.encode_name)
        if raw is None or raw == "":
            continue
        if field.type is int:
            try:
                values[field.name] = int(raw)
            except ValueError:
                raise ApiError(
                    400, "INVALID_INPUT", f"{field.encode_name} must be an integer, not {raw!r}"
                ) from None
        else:
            values[field.name] = raw
    return msgspec.convert(values, kind)


#: RPC fields a query string does not set: the frame's ``request_id``, and the ``id`` the
#: HTTP route takes from its path (``{workflow_id}``).
_NOT_QUERY = frozenset({"request_id", "id"})


def query_fields(kind: type[msgspec.Struct]) -> list[msgspec.structs.FieldInfo]:
    """The fields of ``kind`` a query string may set."""
    return [field for field in msgspec.structs.fields(kind) if field.name not in _NOT_QUERY]


async def _body(request: Request, kind: type[T]) -> T:
    data = await request.body()
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "INVALID_INPUT", f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "INVALID_JSON", f"the request body is not JSON: {exc}") from None
