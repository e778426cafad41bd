"""The JSON shapes NodeTool's C# SDK deserializes (``nodetool-sdk`` csharp/, System.Text.Json).

A key of the wrong JSON type fails the whole call in the SDK (for a list, one bad
entry fails the list), and ``null`` fails a non-nullable value type (``int``, ``bool``,
``long``, ``double``, ``DateTime``). :func:`check` asserts an answer fits a shape:
every listed key present (``Maybe`` keys may be absent), of its type, ``null`` only
where the C# property is nullable (``Opt``). Written from the SDK's model classes.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CAPABILITIES",
    "ERROR",
    "HEALTH",
    "INTERFACE",
    "INTERFACES",
    "INVENTORY",
    "JOB",
    "NODE_METADATA",
    "PREFLIGHT",
    "SUMMARIES",
    "WORKFLOW",
    "WORKFLOW_LIST",
    "check",
]


@dataclass(frozen=True)
class Opt:
    """Nullable in C#: ``null`` or ``shape``."""

    shape: Any


@dataclass(frozen=True)
class Maybe:
    """May be absent (or ``null``); when present, ``shape``."""

    shape: Any


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    value: Any


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


STR: Callable[[object], bool] = _is_str
INT: Callable[[object], bool] = _is_int
NUM: Callable[[object], bool] = _is_number
BOOL: Callable[[object], bool] = _is_bool
DATETIME: Callable[[object], bool] = _is_datetime


def _anything(_value: object) -> bool:
    return True


#: ``object?`` in C#: anything, ``null`` included.
ANY = Opt(_anything)


def check(value: object, shape: Any, path: str = "$") -> None:
    """Assert ``value`` deserializes into ``shape``."""
    if isinstance(shape, Opt | Maybe):
        if value is not None:
            check(value, shape.shape, path)
        return
    assert value is not None, f"{path}: null where the SDK wants a value"
    if isinstance(shape, ListOf):
        assert isinstance(value, list), f"{path}: {value!r} is not a list"
        for index, item in enumerate(value):
            check(item, shape.item, f"{path}[{index}]")
    elif isinstance(shape, MapOf):
        assert isinstance(value, dict), f"{path}: {value!r} is not a map"
        for key, item in value.items():
            check(item, shape.value, f"{path}.{key}")
    elif isinstance(shape, Mapping):
        assert isinstance(value, dict), f"{path}: {value!r} is not a map"
        for key, item_shape in shape.items():
            if key not in value:
                assert isinstance(item_shape, Maybe), f"{path}: key {key!r} missing"
                continue
            check(value[key], item_shape, f"{path}.{key}")
    elif callable(shape):
        assert shape(value), f"{path}: {value!r} does not fit {shape.__name__}"
    else:
        raise AssertionError(f"bad shape {shape!r}")


def _type_definition(value: object) -> bool:
    """``NodeTypeDefinition``, recursively through ``type_args``."""
    check(
        value,
        {
            "type": STR,
            "optional": BOOL,
            "values": Maybe(ListOf(ANY)),
            "type_args": Maybe(ListOf(_type_definition)),
            "type_name": Maybe(STR),
        },
    )
    return True


TYPE = _type_definition

PROPERTY = {
    "name": STR,
    "type": TYPE,
    "default": ANY,
    "title": STR,
    "description": Opt(STR),
    "min": Maybe(NUM),
    "max": Maybe(NUM),
    "values": Maybe(ListOf(ANY)),
    "required": BOOL,
}

NODE_METADATA = {
    "title": STR,
    "description": STR,
    "namespace": STR,
    "node_type": STR,
    "layout": STR,
    "properties": ListOf(PROPERTY),
    "outputs": ListOf({"type": TYPE, "name": STR, "stream": BOOL}),
    "the_model_info": MapOf(ANY),
    "recommended_models": ListOf(ANY),
    "required_settings": ListOf(STR),
    "required_runtimes": ListOf(STR),
    "supports_dynamic_inputs": Opt(BOOL),
    "supports_dynamic_outputs": Opt(BOOL),
    "is_streaming_input": Opt(BOOL),
    "is_streaming_output": Opt(BOOL),
    "hidden": Opt(BOOL),
    "deprecated": Opt(BOOL),
    "replaced_by": Opt(STR),
}

HEALTH = {"version": STR, "uptime": INT}

CAPABILITIES = {
    "protocol_version": STR,
    "nodetool_version": STR,
    "server_time": DATETIME,
    "supported_encodings": ListOf(STR),
    "default_encoding": STR,
    "profiles": MapOf(STR),
    "registry_revision": INT,
    "python_bridge": STR,
    "auth_modes": ListOf(STR),
    "asset_uri_schemes": ListOf(STR),
    "execution_options": {
        "persistence": ListOf(STR),
        "event_detail": ListOf(STR),
        "asset_persistence": ListOf(STR),
        "defaults": {"persistence": STR, "event_detail": STR, "asset_persistence": STR},
    },
    "limits": {
        "max_rpc_batch": INT,
        "max_inline_bytes": INT,
        "max_upload_bytes": INT,
        "max_queued_jobs": INT,
        "max_job_event_replay": INT,
        "request_timeout_seconds": NUM,
    },
}

_SCHEMA_PROPERTY = {
    "type": Maybe(STR),
    "default": Maybe(ANY),
    "title": Maybe(STR),
    "description": Maybe(STR),
    "minimum": Maybe(NUM),
    "maximum": Maybe(NUM),
    "enum": Maybe(ListOf(ANY)),
}
_SCHEMA = {"type": STR, "properties": MapOf(_SCHEMA_PROPERTY), "required": ListOf(STR)}

_GRAPH = {
    "nodes": ListOf({"id": STR, "type": STR, "data": MapOf(ANY)}),
    "edges": ListOf(
        {
            "id": Opt(STR),
            "source": STR,
            "target": STR,
            "sourceHandle": Opt(STR),
            "targetHandle": Opt(STR),
            "ui_properties": Maybe({"className": Maybe(STR)}),
        }
    ),
}

WORKFLOW = {
    "id": STR,
    "name": STR,
    "description": STR,
    "tags": Opt(ListOf(STR)),
    "input_schema": Opt(_SCHEMA),
    "output_schema": Opt(_SCHEMA),
    "graph": Opt(_GRAPH),
    "created_at": DATETIME,
    "updated_at": DATETIME,
}

WORKFLOW_LIST = {"workflows": ListOf(WORKFLOW), "next": Opt(STR)}

SUMMARIES = {
    "workflows": ListOf(
        {
            "id": STR,
            "name": STR,
            "description": STR,
            "revision": STR,
            "registry_revision": Opt(INT),
            "run_mode": Opt(STR),
        }
    ),
    "next": Opt(STR),
}

_PIN = {"node_id": STR, "name": STR, "description": STR, "type": TYPE}
INTERFACE = {
    "version": INT,
    "workflow_id": STR,
    "etag": Opt(STR),
    "source": STR,
    "inputs": ListOf(
        {**_PIN, "required": BOOL, "default": ANY, "min": Maybe(NUM), "max": Maybe(NUM)}
    ),
    "outputs": ListOf({**_PIN, "stream": BOOL, "stream_kind": Maybe(STR)}),
    "diagnostics": ListOf(
        {
            "severity": STR,
            "code": STR,
            "message": STR,
            "node_id": Maybe(STR),
            "pin_name": Maybe(STR),
        }
    ),
}

INTERFACES = {
    "interfaces": ListOf(INTERFACE),
    "errors": ListOf({"workflow_id": STR, "code": STR, "message": STR}),
}

INVENTORY = {
    "version": INT,
    "registry_revision": INT,
    "registry_ready": BOOL,
    "python_bridge_ready": BOOL,
    "node_count": INT,
    "type_count": INT,
    "provenance_counts": MapOf(INT),
    "cursor": INT,
    "next_cursor": Opt(INT),
    "types": ListOf(
        {
            "signature": STR,
            "type": STR,
            "type_name": Opt(STR),
            "optional": BOOL,
            "type_args": ListOf(STR),
            "values": ListOf(ANY),
            "values_truncated": BOOL,
            "input_uses": INT,
            "output_uses": INT,
            "node_count": INT,
            "sources": MapOf(INT),
            "examples": ListOf({"node_type": STR, "pin": STR, "direction": STR}),
        }
    ),
    "unavailable_packs": ListOf({"id": STR, "name": STR, "reason": STR}),
}

PREFLIGHT = {
    "version": INT,
    "level": STR,
    "workflow_id": STR,
    "workflow_etag": Opt(STR),
    "runnable": BOOL,
    "issues": ListOf(
        {
            "severity": STR,
            "code": STR,
            "message": STR,
            "node_id": Opt(STR),
            "pin_name": Opt(STR),
        }
    ),
    "requirements": ListOf(ANY),
    "cost": Opt(ANY),
}

JOB = {
    "id": STR,
    "status": STR,
    "progress": NUM,
    "result": Opt(MapOf(ANY)),
    "error": Opt(STR),
    "created_at": DATETIME,
    "started_at": Opt(DATETIME),
    "completed_at": Opt(DATETIME),
}

ERROR = {"code": STR, "detail": STR, "retryable": BOOL}
