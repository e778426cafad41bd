"""The node-authoring API: a decorated function becomes a node type.

::

    @node("nodetool.text.Concat", title="Concat", inline=True)
    def concat(a: str = "", b: str = "") -> str:
        return a + b

* Keyword parameters are the node's properties: the annotation is the type
  (checked with msgspec on every value), the default is the default; a
  parameter without a default is required (from ``data`` or an edge).
* A parameter named ``ctx`` receives the :class:`~noderun.runtime.context.NodeContext`
  (progress, logs, chunks) and is not a property.
* The return annotation is the type of the single output ``output``; pass
  ``outputs={"name": type, …}`` for several outputs and return a dict.
* How it runs follows from what it is: ``async def`` runs on the server loop;
  an async generator is a streaming node (each item is an output value, or a
  dict of outputs); a plain ``def`` is assumed to block and runs on the
  runner pool, unless ``inline=True`` declares it a cheap pure function that
  may run on the server loop (the built-in text and math nodes).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from noderun.runtime.errors import PropertyError, RegistryError

__all__ = ["NodeKind", "NodeSpec", "Property", "node", "type_metadata"]

NodeKind = Literal["inline", "blocking", "async", "stream"]

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Property:
    """One typed input of a node."""

    name: str
    type: Any
    default: Any = _MISSING
    description: str = ""
    min: float | None = None
    max: float | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def check(self, node_type: str, value: object) -> object:
        """``value`` converted to this property's type, or :class:`PropertyError`."""
        if self.type is Any or self.type is object:
            return value
        # The common case, a value already of the exact plain type, needs no
        # conversion (``type(True) is bool``, never ``int``, so bools stay strict).
        if type(value) is self.type and self.min is None and self.max is None:
            return value
        try:
            converted = msgspec.convert(value, self.type)
        except msgspec.ValidationError as exc:
            raise PropertyError(node_type, self.name, str(exc)) from None
        if self.min is not None and isinstance(converted, (int, float)) and converted < self.min:
            raise PropertyError(
                node_type, self.name, f"{converted} is below the minimum {self.min}"
            )
        if self.max is not None and isinstance(converted, (int, float)) and converted > self.max:
            raise PropertyError(
                node_type, self.name, f"{converted} is above the maximum {self.max}"
            )
        return converted

    def metadata(self) -> dict[str, object]:
        meta: dict[str, object] = {
            "name": self.name,
            "type": type_metadata(self.type),
            "default": None if self.required else self.default,
            "description": self.description,
        }
        if self.min is not None:
            meta["min"] = self.min
        if self.max is not None:
            meta["max"] = self.max
        return meta


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node type: its metadata, typed properties and outputs, and how it runs."""

    node_type: str
    title: str
    description: str
    fn: Callable[..., Any]
    kind: NodeKind
    properties: Mapping[str, Property]
    outputs: Mapping[str, Any]
    takes_context: bool = False
    #: ``nodetool.output.*``: collected into ``result.outputs`` under its ``name``.
    is_output: bool = False
    #: ``nodetool.input.*``: its ``value`` comes from the run's ``params[name]``.
    is_input: bool = False
    defaults: Mapping[str, object] = field(default_factory=dict)
    #: Properties without a default: each needs a value in ``data`` or an edge.
    required: frozenset[str] = frozenset()

    @property
    def namespace(self) -> str:
        return self.node_type.rpartition(".")[0]

    @property
    def single_output(self) -> bool:
        return len(self.outputs) == 1 and "output" in self.outputs

    def check_properties(self, data: Mapping[str, object]) -> dict[str, object]:
        """Defaults overlaid with the declared properties found in ``data``, type-checked.

        Keys of ``data`` that are not properties (UI state, NodeTool extras)
        are ignored.
        """
        values = dict(self.defaults)
        properties = self.properties
        for name, value in data.items():
            prop = properties.get(name)
            if prop is not None:
                values[name] = prop.check(self.node_type, value)
        return values

    def metadata(self) -> dict[str, object]:
        return {
            "node_type": self.node_type,
            "title": self.title,
            "description": self.description,
            "namespace": self.namespace,
            "properties": [prop.metadata() for prop in self.properties.values()],
            "outputs": [
                {"name": name, "type": type_metadata(tp)} for name, tp in self.outputs.items()
            ],
            "is_streaming_output": self.kind == "stream",
        }


def node(
    node_type: str,
    *,
    title: str | None = None,
    description: str | None = None,
    outputs: Mapping[str, Any] | None = None,
    inline: bool = False,
    descriptions: Mapping[str, str] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    is_output: bool = False,
    is_input: bool = False,
) -> Callable[[Callable[..., Any]], NodeSpec]:
    """Turn a function into a :class:`NodeSpec` (register it with a ``Registry``)."""

    def decorate(fn: Callable[..., Any]) -> NodeSpec:
        return _build_spec(
            fn,
            node_type=node_type,
            title=title,
            description=description,
            outputs=outputs,
            inline=inline,
            descriptions=descriptions or {},
            bounds=bounds or {},
            is_output=is_output,
            is_input=is_input,
        )

    return decorate


def _build_spec(
    fn: Callable[..., Any],
    *,
    node_type: str,
    title: str | None,
    description: str | None,
    outputs: Mapping[str, Any] | None,
    inline: bool,
    descriptions: Mapping[str, str],
    bounds: Mapping[str, tuple[float | None, float | None]],
    is_output: bool,
    is_input: bool,
) -> NodeSpec:
    if "." not in node_type:
        raise RegistryError(f"node type {node_type!r} must be a dotted name")
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn)
    properties: dict[str, Property] = {}
    takes_context = False
    for param in signature.parameters.values():
        if param.name == "ctx":
            takes_context = True
            continue
        if param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            raise RegistryError(
                f"{node_type}: parameter {param.name!r} must be a keyword parameter"
            )
        low, high = bounds.get(param.name, (None, None))
        properties[param.name] = Property(
            name=param.name,
            type=hints.get(param.name, Any),
            default=_MISSING if param.default is param.empty else param.default,
            description=descriptions.get(param.name, ""),
            min=low,
            max=high,
        )
    if inspect.isasyncgenfunction(fn):
        kind: NodeKind = "stream"
    elif inspect.iscoroutinefunction(fn):
        kind = "async"
    else:
        kind = "inline" if inline else "blocking"
    if outputs is None:
        returned = hints.get("return", Any)
        if kind == "stream":
            returned = _yield_type(returned)
        outputs = {"output": returned}
    doc = inspect.getdoc(fn) or ""
    return NodeSpec(
        node_type=node_type,
        title=title or node_type.rpartition(".")[2],
        description=description if description is not None else doc,
        fn=fn,
        kind=kind,
        properties=properties,
        outputs=dict(outputs),
        takes_context=takes_context,
        is_output=is_output,
        is_input=is_input,
        defaults={name: p.default for name, p in properties.items() if not p.required},
        required=frozenset(name for name, p in properties.items() if p.required),
    )


def _yield_type(annotation: Any) -> Any:
    """``AsyncIterator[T]``/``AsyncGenerator[T, …]`` → ``T``."""
    args = typing.get_args(annotation)
    return args[0] if args else Any


_TYPE_NAMES: dict[Any, str] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    bytes: "bytes",
    list: "list",
    dict: "dict",
    Any: "any",
    object: "any",
}


def type_metadata(tp: Any) -> dict[str, object]:
    """The ``{"type", "optional", "type_args"}`` description of a Python type (§6.2)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) < len(args) and len(rest) == 1:
            meta = type_metadata(rest[0])
            meta["optional"] = True
            return meta
        return {"type": "union", "optional": False, "type_args": [type_metadata(a) for a in args]}
    if origin is Literal:
        return {"type": "enum", "optional": False, "type_args": [], "values": list(args)}
    if origin is not None:
        return {
            "type": _TYPE_NAMES.get(origin, getattr(origin, "__name__", "any")),
            "optional": False,
            "type_args": [type_metadata(arg) for arg in args],
        }
    return {
        "type": _TYPE_NAMES.get(tp, getattr(tp, "__name__", "any")),
        "optional": False,
        "type_args": [],
    }
