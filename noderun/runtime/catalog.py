"""Node metadata in NodeTool's shape: the one source of ``list_nodes``, ``get_node``,
``GET /api/nodes/metadata`` and the node-type inventory (PROTOCOL.md §6.2, §8).

NodeTool's C# SDK deserializes every entry into typed classes (``NodeMetadataResponse``,
``NodeTypeDefinition``): a wrong JSON type in one entry fails the whole list. So every
key here always has the type the SDK declares, never ``None`` where it wants a string.

A type descriptor is ``{"type", "optional", "type_args"}`` plus ``values`` (enums) and
``type_name`` (a named type) only when they apply, derived from a property's
annotation: ``Literal``/``enum.Enum`` → ``enum``, ``X | None`` → ``X`` optional,
other unions → ``union``, ``list``/``tuple``/``dict`` with their arguments, a
``msgspec.Struct`` whose ``type`` field has a string default (NodeTool's asset
references: ``image``, ``audio``, …) → that name.
"""

from __future__ import annotations

import collections.abc
import datetime
import enum
import hashlib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from noderun.runtime.inventory import type_usage

if TYPE_CHECKING:
    from noderun.runtime.node import NodeSpec, Property

__all__ = [
    "NodeCatalog",
    "json_value",
    "node_metadata",
    "node_summary",
    "property_metadata",
    "type_descriptor",
]

TypeDescriptor = dict[str, object]

_NAMES: dict[Any, str] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    bytes: "bytes",
    bytearray: "bytes",
    list: "list",
    tuple: "tuple",
    set: "list",
    frozenset: "list",
    dict: "dict",
    Any: "any",
    object: "any",
    type(None): "none",
    datetime.datetime: "datetime",
    datetime.date: "date",
    collections.abc.Sequence: "list",
    collections.abc.MutableSequence: "list",
    collections.abc.Iterable: "list",
    collections.abc.Collection: "list",
    collections.abc.Set: "list",
    collections.abc.Mapping: "dict",
    collections.abc.MutableMapping: "dict",
}


def type_descriptor(tp: Any) -> TypeDescriptor:
    """NodeTool's type metadata for the Python annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return type_descriptor(typing.get_args(tp)[0])
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [arg for arg in args if arg is not type(None)]
        optional = len(rest) < len(args)
        if len(rest) == 1:
            meta = type_descriptor(rest[0])
        elif rest and all(typing.get_origin(arg) is Literal for arg in rest):
            # Literal["a"] | Literal["b"] is one enum.
            values = [value for arg in rest for value in typing.get_args(arg)]
            meta = _descriptor("enum", values=[v for v in values if v is not None])
        else:
            meta = _descriptor("union", [type_descriptor(arg) for arg in rest])
        meta["optional"] = bool(meta["optional"]) or optional
        return meta
    if origin is Literal:
        values = [value for value in args if value is not None]
        meta = _descriptor("enum", values=[_plain(value) for value in values])
        meta["optional"] = len(values) < len(args)
        return meta
    if origin is not None:
        arguments = [type_descriptor(arg) for arg in args if arg is not Ellipsis]
        return _descriptor(_NAMES.get(origin, "any"), arguments, type_name=_name_of(origin))
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return _descriptor(
                "enum", values=[_plain(member.value) for member in tp], type_name=_qualified(tp)
            )
        if issubclass(tp, msgspec.Struct):
            return _struct_descriptor(tp)
    if tp in _NAMES:
        return _descriptor(_NAMES[tp])
    return _descriptor("any", type_name=_name_of(tp))


def _descriptor(
    name: str,
    type_args: list[TypeDescriptor] | None = None,
    *,
    values: list[object] | None = None,
    type_name: str | None = None,
) -> TypeDescriptor:
    meta: TypeDescriptor = {"type": name, "optional": False, "type_args": type_args or []}
    if values is not None:
        meta["values"] = values
    if type_name is not None:
        meta["type_name"] = type_name
    return meta


def _struct_descriptor(tp: type[msgspec.Struct]) -> TypeDescriptor:
    """A tagged struct (``Datetime`` tagged ``"datetime"``), or one whose ``type`` field
    defaults to a string (``ImageRef`` → ``image``), is NodeTool's typed value of that
    name; any other struct is a named object."""
    tag = tp.__struct_config__.tag
    if isinstance(tag, str):
        return _descriptor(tag)
    for field in msgspec.structs.fields(tp):
        if field.name == "type" and isinstance(field.default, str) and field.default:
            return _descriptor(field.default)
    return _descriptor("object", type_name=tp.__name__)


def _name_of(tp: Any) -> str | None:
    if tp in _NAMES:
        return None
    name = getattr(tp, "__name__", None)
    return name if isinstance(name, str) else repr(tp)


def _qualified(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def json_value(value: object) -> object:
    """``value`` as plain JSON/MessagePack data (enums by value, structs as maps);
    ``None`` for what has no such form, so one odd default never breaks a listing."""
    try:
        return msgspec.to_builtins(value, str_keys=True)
    except (TypeError, msgspec.EncodeError):
        return None


def property_metadata(prop: Property) -> dict[str, object]:
    """One property as NodeTool's ``Property`` metadata."""
    described = type_descriptor(prop.plain)
    meta: dict[str, object] = {
        "name": prop.name,
        "type": described,
        "default": None if prop.required else json_value(prop.default),
        "title": prop.name.replace("_", " ").title(),
        "description": prop.description,
        "required": prop.required,
    }
    if prop.min is not None:
        meta["min"] = prop.min
    if prop.max is not None:
        meta["max"] = prop.max
    if "values" in described:
        meta["values"] = described["values"]
    return meta


def node_metadata(spec: NodeSpec) -> dict[str, object]:
    """One node type as NodeTool's ``NodeMetadata`` (what ``?fields=full`` returns)."""
    streaming = spec.kind == "stream"
    return {
        "node_type": spec.node_type,
        "title": spec.title,
        "description": spec.description,
        "namespace": spec.namespace,
        "layout": "default",
        "properties": [property_metadata(prop) for prop in spec.properties.values()],
        "outputs": [
            {"name": name, "type": type_descriptor(tp), "stream": streaming}
            for name, tp in spec.outputs.items()
        ],
        "basic_fields": list(spec.properties),
        "is_dynamic": False,
        "is_streaming_output": streaming,
        "is_streaming_input": False,
        "supports_dynamic_inputs": False,
        "supports_dynamic_outputs": False,
        "expose_as_tool": False,
        "hidden": False,
        "deprecated": False,
        "replaced_by": None,
        "the_model_info": {},
        "recommended_models": [],
        "required_settings": [],
        "required_runtimes": [],
    }


def node_summary(metadata: Mapping[str, object]) -> dict[str, object]:
    """The slim entry NodeTool lists without ``?fields=full``."""
    return {key: metadata[key] for key in ("node_type", "title", "description", "namespace")}


class NodeCatalog:
    """Every node type's metadata, built once from a registry and cached.

    The registry does not change after start-up, so neither does the catalog;
    ``revision`` is a digest of it that a client may cache interfaces against.
    """

    def __init__(self, specs: Iterable[NodeSpec]) -> None:
        self.specs: dict[str, NodeSpec] = {spec.node_type: spec for spec in specs}
        self.nodes: list[dict[str, object]] = [
            spec.metadata() for spec in sorted(self.specs.values(), key=_by_type)
        ]
        self.by_type: dict[str, dict[str, object]] = {
            str(meta["node_type"]): meta for meta in self.nodes
        }
        digest = hashlib.sha256(msgspec.json.encode(self.nodes)).digest()
        #: A non-negative integer below 2**53, safe as a JSON number everywhere.
        self.revision = int.from_bytes(digest[:6], "big")
        self._types = type_usage(self.nodes)

    def select(self, *, namespace: str | None = None, full: bool = True) -> list[dict[str, object]]:
        """The listing, optionally only one namespace (and those under it), slim unless ``full``."""
        nodes = self.nodes
        if namespace:
            nodes = [
                meta
                for meta in nodes
                if meta["namespace"] == namespace
                or str(meta["namespace"]).startswith(namespace + ".")
            ]
        return nodes if full else [node_summary(meta) for meta in nodes]

    def inventory(self, cursor: int, limit: int) -> dict[str, object]:
        """One page of the distinct types used by node properties and outputs
        (NodeTool's ``NodeTypeInventoryResponse``)."""
        page = self._types[cursor : cursor + limit]
        end = cursor + len(page)
        return {
            "version": 1,
            "registry_revision": self.revision,
            "registry_ready": True,
            "python_bridge_ready": False,
            "node_count": len(self.nodes),
            "type_count": len(self._types),
            "provenance_counts": {"noderun": len(self.nodes)},
            "cursor": cursor,
            "next_cursor": end if end < len(self._types) else None,
            "types": page,
            "unavailable_packs": [],
        }


def _by_type(spec: NodeSpec) -> str:
    return spec.node_type
