"""RPC commands (PROTOCOL.md §2.2): requests answered by one ``rpc_response``.

Adding an RPC command is one change, here: declare its ``data`` as a struct and
register a handler for it::

    class GetWorkflowParams(msgspec.Struct, kw_only=True):
        workflow_id: str

    @rpc("get_workflow", GetWorkflowParams)
    async def get_workflow(context: RpcContext, params: GetWorkflowParams) -> object:
        ...  # return the ``result``, or raise RpcFailed("not_found", "...")

The codec hands any command it has no struct for to the session as an
:class:`~noderun.protocol.client.RpcCall`; :func:`answer` finds its entry here
(none: ``invalid_command``), decodes ``data`` with the entry's decoder built
once (malformed: ``invalid_command``), and calls the handler. A handler returns
the ``result`` (or a coroutine of it, which the connection awaits off the read
path), or raises :class:`RpcFailed` for an error answer.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from noderun.protocol.client import RpcCall
from noderun.protocol.codec import malformed
from noderun.protocol.errors import CommandError
from noderun.protocol.server import RpcError, RpcResponse
from noderun.runtime.hub import Hub

__all__ = ["RPCS", "RpcContext", "RpcFailed", "answer", "rpc"]

P = TypeVar("P", bound=msgspec.Struct)

Handler = Callable[["RpcContext", P], object]


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


@dataclass(frozen=True, slots=True)
class _Entry:
    handler: Callable[[RpcContext, Any], object]
    msgpack: msgspec.msgpack.Decoder[Any]
    json: msgspec.json.Decoder[Any]


#: command name → its handler and the decoders of its ``data``.
RPCS: dict[str, _Entry] = {}


def rpc(command: str, params: type[P]) -> Callable[[Handler[P]], Handler[P]]:
    """Register ``handler`` as the answer to ``command``, whose ``data`` is ``params``."""

    def register(handler: Handler[P]) -> Handler[P]:
        if command in RPCS:
            raise ValueError(f"RPC command {command!r} registered twice")
        RPCS[command] = _Entry(
            handler, msgspec.msgpack.Decoder(params), msgspec.json.Decoder(params)
        )
        return handler

    return register


def answer(context: RpcContext, call: RpcCall) -> RpcResponse | Awaitable[RpcResponse]:
    """The ``rpc_response`` to ``call``, or an awaitable of it for an async handler.

    Raises :class:`CommandError` for an unknown command or malformed ``data``.
    """
    entry = RPCS.get(call.command)
    if entry is None:
        raise CommandError(
            f"unknown command {call.command!r}", command=call.command, request_id=call.request_id
        )
    try:
        params = (entry.json if call.text else entry.msgpack).decode(call.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise malformed(
            call.command, exc, call.data, text=call.text, request_id=call.request_id
        ) from None
    try:
        result = entry.handler(context, params)
    except RpcFailed as exc:
        return _failed(call, exc)
    if inspect.isawaitable(result):
        return _later(call, result)
    return RpcResponse(request_id=call.request_id, command=call.command, result=result)


async def _later(call: RpcCall, pending: Awaitable[object]) -> RpcResponse:
    try:
        result = await pending
    except RpcFailed as exc:
        return _failed(call, exc)
    return RpcResponse(request_id=call.request_id, command=call.command, result=result)


def _failed(call: RpcCall, exc: RpcFailed) -> RpcResponse:
    return RpcResponse(
        request_id=call.request_id,
        command=call.command,
        error=RpcError(code=exc.code, message=exc.message, retryable=exc.retryable),
    )


# -- the commands ---------------------------------------------------------------------


class ListNodesParams(msgspec.Struct, kw_only=True):
    namespace: str | None = None


@rpc("list_nodes", ListNodesParams)
def list_nodes(context: RpcContext, params: ListNodesParams) -> object:
    """``result.nodes``: the metadata of every node type, or of one namespace's."""
    namespace = params.namespace
    nodes = [
        meta for meta in context.catalog if namespace is None or meta["namespace"] == namespace
    ]
    return {"nodes": nodes}


class GetNodeParams(msgspec.Struct, kw_only=True):
    node_type: str


@rpc("get_node", GetNodeParams)
def get_node(context: RpcContext, params: GetNodeParams) -> object:
    """``result``: one node type's metadata; unknown → ``not_found``."""
    spec = context.hub.registry.get(params.node_type)
    if spec is None:
        raise RpcFailed("not_found", f"unknown node type {params.node_type!r}")
    return spec.metadata()
