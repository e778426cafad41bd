"""The node-authoring API: a decorated function becomes a node type.

::

    @node("nodetool.text.Concat", title="Concat", inline=True)
    def concat(a: str = "", b: str = "") -> str:
        return a + b

* Keyword parameters are the node's properties: the annotation is the type
  (checked with msgspec on every value), the default is the default; a
  parameter without a default is required (from ``data`` or an edge).
  Constraints and descriptions ride on the annotation:
  ``Annotated[float, msgspec.Meta(ge=0, le=3600, description="…")]``.
* A parameter named ``ctx`` receives the :class:`~noderun.runtime.context.NodeContext`
  (progress, logs, chunks) and is not a property.
* The return annotation is the type of the single output ``output``; pass
  ``outputs={"name": type, …}`` for several outputs and return a dict.
* How it runs follows from what it is: ``async def`` runs on the server loop;
  an async generator is a streaming node (each item is an output value, or a
  dict of outputs); a plain ``def`` is assumed to block and runs on the
  runner pool, unless ``inline=True`` declares it a cheap pure function that
  may run on the server loop (the built-in text and math nodes).
* ``gather=("handle", …)`` names inputs whose whole stream the node takes at
  once: the runtime collects every value arriving there and calls the node a
  single time, when all its upstream nodes are done, with the list (empty when
  nothing arrived) — NodeTool's ``Collect``.
* The decorator returns the function unchanged (callable and testable as
  written); its :class:`NodeSpec` is :func:`spec_of` the function, and a
  :class:`~noderun.runtime.registry.Registry` accepts either.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from noderun.runtime.catalog import node_metadata, property_metadata
from noderun.runtime.catalog import type_descriptor as type_metadata
from noderun.runtime.errors import PropertyError, RegistryError

__all__ = ["NodeKind", "NodeSpec", "Property", "node", "spec_of", "type_metadata"]

NodeKind = Literal["inline", "blocking", "async", "stream"]

_MISSING: Any = object()
#: Where ``@node`` leaves the spec on the function it decorates.
_SPEC_ATTRIBUTE = "__noderun_node__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Property:
    """One typed input of a node."""

    name: str
    #: The annotation as written, ``Annotated`` constraints included (msgspec checks them).
    type: Any
    default: Any = _MISSING
    description: str = ""
    min: float | None = None
    max: float | None = None
    #: The annotation without ``Annotated``: the type a value of the fast path has.
    plain: Any = None
    #: Whether the annotation carries constraints (no fast path then).
    constrained: bool = False

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def check(self, node_type: str, value: object) -> object:
        """``value`` converted to this property's type, or :class:`PropertyError`."""
        if self.plain is Any or self.plain is object:
            return value
        # The common case, a value already of the exact plain type, needs no
        # conversion (``type(True) is bool``, never ``int``, so bools stay strict).
        if type(value) is self.plain and not self.constrained:
            return value
        try:
            return msgspec.convert(value, self.type)
        except msgspec.ValidationError as exc:
            raise PropertyError(node_type, self.name, str(exc)) from None

    def metadata(self) -> dict[str, object]:
        """NodeTool's property metadata (built by :mod:`noderun.runtime.catalog`)."""
        return property_metadata(self)


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
    #: Inputs whose values are gathered into one list for a single call at end of stream.
    gather: frozenset[str] = frozenset()

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
        """NodeTool's node metadata (built by :mod:`noderun.runtime.catalog`)."""
        return node_metadata(self)


def node(
    node_type: str,
    *,
    title: str | None = None,
    description: str | None = None,
    outputs: Mapping[str, Any] | None = None,
    inline: bool = False,
    is_output: bool = False,
    is_input: bool = False,
    gather: Iterable[str] = (),
) -> Callable[[F], F]:
    """Declare a function a node type; the function is returned unchanged.

    Raises :class:`RegistryError` at once for a misshapen node (not a dotted
    type name, a positional-only or ``*args`` parameter, an input or output node
    without ``name`` and ``value`` properties, a ``gather`` name that is no property).
    """

    def decorate(fn: F) -> F:
        spec = _build_spec(
            fn,
            node_type=node_type,
            title=title,
            description=description,
            outputs=outputs,
            inline=inline,
            is_output=is_output,
            is_input=is_input,
            gather=frozenset(gather),
        )
        setattr(fn, _SPEC_ATTRIBUTE, spec)
        return fn

    return decorate


def spec_of(definition: object) -> NodeSpec:
    """The :class:`NodeSpec` of a function decorated with :func:`node` (or a spec itself)."""
    if isinstance(definition, NodeSpec):
        return definition
    spec = getattr(definition, _SPEC_ATTRIBUTE, None)
    if not isinstance(spec, NodeSpec):
        raise RegistryError(f"{definition!r} is not a node (decorate it with @node)")
    return spec


def _build_spec(
    fn: Callable[..., Any],
    *,
    node_type: str,
    title: str | None,
    description: str | None,
    outputs: Mapping[str, Any] | None,
    inline: bool,
    is_output: bool,
    is_input: bool,
    gather: frozenset[str] = frozenset(),
) -> NodeSpec:
    if "." not in node_type:
        raise RegistryError(f"node type {node_type!r} must be a dotted name")
    hints = typing.get_type_hints(fn, include_extras=True)
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
        properties[param.name] = _property(node_type, param, hints.get(param.name, Any))
    if is_input or is_output:
        missing = [name for name in ("name", "value") if name not in properties]
        if missing:
            role = "an input" if is_input else "an output"
            raise RegistryError(
                f"{node_type}: {role} node needs the properties 'name' and 'value' "
                f"(missing: {', '.join(missing)})"
            )
    unknown = sorted(gather - properties.keys())
    if unknown:
        raise RegistryError(f"{node_type}: gather names no property: {', '.join(unknown)}")
    if inspect.isasyncgenfunction(fn):
        kind: NodeKind = "stream"
    elif inspect.iscoroutinefunction(fn):
        kind = "async"
    else:
        kind = "inline" if inline else "blocking"
    if outputs is None:
        returned = _strip(hints.get("return", Any))[0]
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
        gather=gather,
    )


def _property(node_type: str, param: inspect.Parameter, annotation: Any) -> Property:
    plain, metas = _strip(annotation)
    low: float | None = None
    high: float | None = None
    description = ""
    for meta in metas:
        low = _first(meta.ge, meta.gt, low)
        high = _first(meta.le, meta.lt, high)
        description = meta.description or description
    default = _MISSING if param.default is param.empty else param.default
    if default is not _MISSING and metas:
        try:
            msgspec.convert(default, annotation)
        except msgspec.ValidationError as exc:
            raise RegistryError(
                f"{node_type}: default of {param.name!r} breaks its own constraints: {exc}"
            ) from None
    return Property(
        name=param.name,
        type=annotation,
        default=default,
        description=description,
        min=low,
        max=high,
        plain=plain,
        constrained=any(_constrains(meta) for meta in metas),
    )


def _strip(annotation: Any) -> tuple[Any, list[msgspec.Meta]]:
    """``Annotated[T, Meta(…), …]`` → ``T`` and its ``msgspec.Meta`` constraints."""
    if typing.get_origin(annotation) is Annotated:
        plain, *extras = typing.get_args(annotation)
        return plain, [extra for extra in extras if isinstance(extra, msgspec.Meta)]
    return annotation, []


_CONSTRAINTS = ("gt", "ge", "lt", "le", "multiple_of", "pattern", "min_length", "max_length", "tz")


def _constrains(meta: msgspec.Meta) -> bool:
    """Whether ``meta`` limits values (a description alone keeps the fast path)."""
    return any(getattr(meta, name) is not None for name in _CONSTRAINTS)


def _first(*values: float | None) -> float | None:
    for value in values:
        if value is not None:
            return value
    return None


def _yield_type(annotation: Any) -> Any:
    """``AsyncIterator[T]``/``AsyncGenerator[T, …]`` → ``T``."""
    args = typing.get_args(annotation)
    return args[0] if args else Any
