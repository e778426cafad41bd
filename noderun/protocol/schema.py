"""A machine-readable description of the ``/ws`` protocol, generated from its msgspec types.

:func:`json_schema` is a JSON Schema (2020-12) document whose ``$defs`` hold every struct the
protocol uses, with two entry points: ``ClientFrame`` (any frame a client may send: the
envelope of PROTOCOL.md §2 with each command's ``data``) and ``ServerFrame`` (any frame the
server sends, §3). :func:`asyncapi` wraps the same definitions in an AsyncAPI 3 document of the
``/ws`` channel. Both are built from the structs the codec decodes and encodes with, so they
cannot drift from the wire: a new struct in ``protocol.server.__all__`` or a new command in
``protocol.client.COMMANDS`` appears in them without an edit here.

Schemas describe the JSON (text) form; the MessagePack (binary) form carries the same maps,
with raw bytes as msgpack ``bin`` where JSON has base64 strings.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import msgspec

from noderun.protocol import client, server

__all__ = ["SCHEMA_ID", "any_value", "asyncapi", "client_commands", "json_schema", "server_frames"]

SCHEMA_ID = "https://noderun.dev/schema/ws-protocol.json"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/{name}"


def client_commands() -> dict[str, type[msgspec.Struct]]:
    """Command name → the struct its ``data`` decodes into (aliases included)."""
    return dict(client.COMMANDS)


def server_frames() -> list[type[msgspec.Struct]]:
    """Every struct the server sends as a frame of its own, in ``__all__`` order."""
    frames: list[type[msgspec.Struct]] = []
    for name in server.__all__:
        item = getattr(server, name)
        if inspect.isclass(item) and issubclass(item, msgspec.Struct):
            frames.append(item)
    return frames


def _components(ref_template: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    commands = client_commands()
    types: list[Any] = [*dict.fromkeys(commands.values()), *server_frames()]
    schemas, defs = msgspec.json.schema_components(
        types, schema_hook=any_value, ref_template=ref_template
    )
    return list(schemas), dict(defs)


def any_value(kind: type) -> dict[str, Any]:
    """Node values (``object`` in the structs) are any JSON value."""
    if kind is object:
        return {"description": "any value"}
    raise NotImplementedError(f"no JSON schema for {kind!r}")


def _envelope(command: str, data_ref: Mapping[str, Any]) -> dict[str, Any]:
    """PROTOCOL.md §2's envelope for one command; the SDK repeats the name as ``type``."""
    return {
        "type": "object",
        "title": f"{command} frame",
        "properties": {
            "command": {"const": command},
            "type": {"const": command},
            "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "data": dict(data_ref),
        },
        "required": ["command"],
    }


def _client_frame(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    refs = dict(zip(dict.fromkeys(client_commands().values()), schemas, strict=False))
    variants = [_envelope(name, refs[struct]) for name, struct in client_commands().items()]
    # ping/pong travel without a command: only their type (PROTOCOL.md §1).
    for kind in ("ping", "pong"):
        variants.append(
            {
                "type": "object",
                "title": f"client {kind}",
                "properties": {"type": {"const": kind}, "ts": {"type": "number"}},
                "required": ["type"],
                "not": {"required": ["command"]},
            }
        )
    return {"oneOf": variants}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of every client and server frame."""
    schemas, defs = _components(_REF)
    server_refs = schemas[len(dict.fromkeys(client_commands().values())) :]
    defs["ClientFrame"] = _client_frame(schemas)
    defs["ServerFrame"] = {"anyOf": server_refs}
    return {
        "$schema": _DIALECT,
        "$id": SCHEMA_ID,
        "title": "noderun /ws protocol (NodeTool-compatible)",
        "description": "Frames of the /ws WebSocket: ClientFrame (client to server) and "
        "ServerFrame (server to client). Generated from noderun.protocol.",
        "oneOf": [
            {"$ref": _REF.format(name="ClientFrame")},
            {"$ref": _REF.format(name="ServerFrame")},
        ],
        "$defs": defs,
    }


#: PROTOCOL.md §1: when the server has tokens, the handshake carries one, as a bearer
#: header or the ``api_key`` query parameter (else it is closed with 1008).
_SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <token> on the handshake",
    },
    "apiKey": {
        "type": "httpApiKey",
        "name": "api_key",
        "in": "query",
        "description": "?api_key=<token> on the handshake (for clients that cannot set headers)",
    },
}


def asyncapi(version: str) -> dict[str, Any]:
    """An AsyncAPI 3.0 document of ``/ws``: the server receives client frames, sends the rest."""
    ref = "#/components/schemas/{name}"
    schemas, defs = _components(ref)
    commands = client_commands()
    unique = list(dict.fromkeys(commands.values()))
    by_struct = dict(zip(unique, schemas, strict=False))
    messages: dict[str, Any] = {}
    for name, struct in commands.items():
        messages[name] = {
            "name": name,
            "title": name,
            "contentType": "application/json",
            "payload": _envelope(name, by_struct[struct]),
        }
    sent: dict[str, Any] = {}
    for struct in server_frames():
        sent[struct.__name__] = {
            "name": struct.__name__,
            "title": struct.__name__,
            "summary": (inspect.getdoc(struct) or "").split("\n", 1)[0],
            "contentType": "application/json",
            "payload": {"$ref": ref.format(name=struct.__name__)},
        }
    security = [{"$ref": f"#/components/securitySchemes/{name}"} for name in _SECURITY_SCHEMES]
    channel_messages = {
        **{name: {"$ref": f"#/components/messages/{name}"} for name in messages},
        **{name: {"$ref": f"#/components/messages/{name}"} for name in sent},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "noderun",
            "version": version,
            "description": "NodeTool-compatible node execution over one WebSocket. Binary "
            "frames are MessagePack maps, text frames JSON objects, with the same content. "
            "The HTTP routes on the same port are described by the OpenAPI document "
            "(`noderun schema --openapi`).",
        },
        "defaultContentType": "application/json",
        "channels": {
            "ws": {
                "address": "/ws",
                "title": "The execution WebSocket",
                "messages": channel_messages,
            }
        },
        "operations": {
            "receiveClientFrame": {
                "action": "receive",
                "channel": {"$ref": "#/channels/ws"},
                "security": security,
                "messages": [{"$ref": f"#/channels/ws/messages/{name}"} for name in messages],
            },
            "sendServerFrame": {
                "action": "send",
                "channel": {"$ref": "#/channels/ws"},
                "security": security,
                "messages": [{"$ref": f"#/channels/ws/messages/{name}"} for name in sent],
            },
        },
        "components": {
            "schemas": defs,
            "messages": {**messages, **sent},
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }
