"""RPC handlers (PROTOCOL.md §2.2): each request struct's answer, as one ``rpc_response``.

Adding an RPC command: its request struct in ``noderun.protocol.client`` (a
subclass of :class:`~noderun.protocol.client.RpcRequest`: the codec, the
session and the published schema pick it up from there) and its handler here::

    @rpc(GetWorkflow)
    async def get_workflow(context: RpcContext, request: GetWorkflow) -> object:
        ...  # return the ``result``, or raise RpcFailed("not_found", "...")

A handler returns the ``result`` (or an awaitable of it, which the connection
awaits off the read path) or raises :class:`RpcFailed` for an error answer.
``tests/server/test_session.py`` fails while a request has no handler here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from noderun.protocol.client import GetNode, ListNodes, RpcRequest
from noderun.protocol.errors import CommandError
from noderun.protocol.server import RpcError, RpcResponse
from noderun.runtime.hub import Hub

__all__ = ["HANDLERS", "RpcContext", "RpcFailed", "answer", "rpc"]

R = TypeVar("R", bound=RpcRequest)


class RpcFailed(Exception):
    """An RPC's error answer: ``{"code", "message", "retryable"}``."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class RpcContext:
    """What a handler may read: the hub (registry, store), the caller, the node catalog."""

    hub: Hub
    user_id: str
    catalog: list[dict[str, object]]


Handler = Callable[[RpcContext, R], object]

#: request struct → its handler.
HANDLERS: dict[type[RpcRequest], Callable[[RpcContext, Any], object]] = {}


def rpc(request: type[R]) -> Callable[[Handler[R]], Handler[R]]:
    """Register the decorated function as the answer to ``request``."""

    def register(handler: Handler[R]) -> Handler[R]:
        if request in HANDLERS:
            raise ValueError(f"RPC command {request.command!r} has a handler already")
        HANDLERS[request] = handler
        return handler

    return register


def answer(context: RpcContext, request: RpcRequest) -> RpcResponse | Awaitable[RpcResponse]:
    """The ``rpc_response`` to ``request``, or an awaitable of it for an async handler."""
    handler = HANDLERS.get(type(request))
    if handler is None:  # a request struct without a handler: a test catches this
        raise CommandError(
            f"unknown command {request.command!r}",
            command=request.command,
            request_id=request.request_id,
        )
    try:
        result = handler(context, request)
    except RpcFailed as exc:
        return _failed(request, exc)
    if inspect.isawaitable(result):
        return _later(request, result)
    return RpcResponse(request_id=request.request_id, command=request.command, result=result)


async def _later(request: RpcRequest, pending: Awaitable[object]) -> RpcResponse:
    try:
        result = await pending
    except RpcFailed as exc:
        return _failed(request, exc)
    return RpcResponse(request_id=request.request_id, command=request.command, result=result)


def _failed(request: RpcRequest, exc: RpcFailed) -> RpcResponse:
    return RpcResponse(
        request_id=request.request_id,
        command=request.command,
        error=RpcError(code=exc.code, message=exc.message, retryable=exc.retryable),
    )


# -- the commands ---------------------------------------------------------------------


@rpc(ListNodes)
def list_nodes(context: RpcContext, request: ListNodes) -> object:
    """``result.nodes``: the metadata of every node type, or of one namespace's."""
    namespace = request.namespace
    nodes = [
        meta for meta in context.catalog if namespace is None or meta["namespace"] == namespace
    ]
    return {"nodes": nodes}


@rpc(GetNode)
def get_node(context: RpcContext, request: GetNode) -> object:
    """``result``: one node type's metadata; unknown → ``not_found``."""
    spec = context.hub.registry.get(request.node_type)
    if spec is None:
        raise RpcFailed("not_found", f"unknown node type {request.node_type!r}")
    return spec.metadata()
