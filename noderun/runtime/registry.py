"""The node registry (node type name → :class:`NodeSpec`) and where its nodes come from.

A server's registry holds, in this order:

1. the built-in nodes (:data:`noderun.runtime.nodes.BUILTIN_NODES`);
2. the ``noderun.debug.*`` test nodes, only when asked for (``--debug-nodes``);
3. every installed package's ``noderun.nodes`` entry points;
4. the modules named on the command line (``--nodes MODULE``).

An entry point of the group ``noderun.nodes`` names either a module
(``mypkg.nodes``: every node defined in it) or an object (``mypkg.nodes:NODES``:
an iterable of nodes, or a single node). Two definitions of one node type name
fail start-up with :class:`DuplicateNodeType`, naming both modules.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import types
from collections.abc import Iterable, Iterator, Sequence

from noderun.runtime.errors import DuplicateNodeType, NodeSourceError, RegistryError
from noderun.runtime.node import NodeSpec, spec_of

__all__ = ["ENTRY_POINT_GROUP", "Registry", "default_registry", "load_registry", "nodes_in"]

#: The entry-point group through which installed packages register nodes.
ENTRY_POINT_GROUP = "noderun.nodes"


class Registry:
    """Node types by name. Registration happens at start-up; lookups are plain dict reads."""

    def __init__(self, nodes: Iterable[object] = ()) -> None:
        self._specs: dict[str, NodeSpec] = {}
        self._origins: dict[str, str] = {}
        for definition in nodes:
            self.add(definition)

    def add(self, definition: object, *, origin: str | None = None) -> NodeSpec:
        """Register a node: a function decorated with ``@node``, or its :class:`NodeSpec`.

        ``origin`` names where it comes from in errors (default: the module defining it).
        """
        spec = spec_of(definition)
        origin = origin or spec.fn.__module__
        first = self._origins.get(spec.node_type)
        if first is not None:
            raise DuplicateNodeType(spec.node_type, first, origin)
        self._specs[spec.node_type] = spec
        self._origins[spec.node_type] = origin
        return spec

    def origin(self, node_type: str) -> str | None:
        """Where ``node_type`` was registered from (a module name), if registered."""
        return self._origins.get(node_type)

    def get(self, node_type: str) -> NodeSpec | None:
        return self._specs.get(node_type)

    def __contains__(self, node_type: object) -> bool:
        return node_type in self._specs

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def nodes_in(module: types.ModuleType) -> list[NodeSpec]:
    """Every node defined in ``module``: its module-level functions decorated with ``@node``,
    in definition order. Nodes it merely imports from elsewhere are not its own (so a
    module that imports another's nodes does not register them twice)."""
    found: list[NodeSpec] = []
    for value in vars(module).values():
        try:
            spec = spec_of(value)
        except RegistryError:
            continue
        if spec.fn is value and getattr(value, "__module__", None) == module.__name__:
            found.append(spec)
    return found


def import_nodes(module_name: str) -> list[NodeSpec]:
    """Import ``module_name`` (a ``--nodes`` argument) and return the nodes defined in it."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the module raises while importing
        raise NodeSourceError(f"module {module_name!r}", _describe(exc)) from exc
    found = nodes_in(module)
    if not found:
        raise NodeSourceError(f"module {module_name!r}", "it defines no @node function")
    return found


def entry_point_nodes() -> Iterator[tuple[str, NodeSpec]]:
    """``(origin, spec)`` of every node that installed packages declare in
    :data:`ENTRY_POINT_GROUP`."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry.name!r} ({entry.value})"
        try:
            loaded = entry.load()
        except Exception as exc:  # whatever the package raises while importing
            raise NodeSourceError(source, _describe(exc)) from exc
        if isinstance(loaded, types.ModuleType):
            for spec in nodes_in(loaded):
                yield f"{loaded.__name__} (entry point {entry.name!r})", spec
            continue
        definitions = [loaded] if _is_node(loaded) else loaded
        if not isinstance(definitions, Iterable):
            raise NodeSourceError(source, "names neither a module, a node nor a list of nodes")
        for definition in definitions:
            try:
                spec = spec_of(definition)
            except RegistryError as exc:
                raise NodeSourceError(source, str(exc)) from exc
            yield f"{spec.fn.__module__} (entry point {entry.name!r})", spec


def load_registry(
    modules: Sequence[str] = (), *, debug_nodes: bool = False, entry_points: bool = True
) -> Registry:
    """The registry a server starts with (see the module docstring for the order).

    Raises :class:`NodeSourceError` when a module or entry point cannot be loaded and
    :class:`DuplicateNodeType` when two of them define one node type.
    """
    from noderun.runtime.nodes import BUILTIN_NODES, DEBUG_NODES

    registry = Registry(BUILTIN_NODES)
    if debug_nodes:
        for spec in DEBUG_NODES:
            registry.add(spec)
    if entry_points:
        for origin, spec in entry_point_nodes():
            registry.add(spec, origin=origin)
    for name in modules:
        for spec in import_nodes(name):
            registry.add(spec, origin=name)
    return registry


def default_registry(*, debug_nodes: bool = False) -> Registry:
    """The built-in nodes (NodeTool names), and ``noderun.debug.*`` with ``debug_nodes``."""
    return load_registry(debug_nodes=debug_nodes, entry_points=False)


def _is_node(value: object) -> bool:
    try:
        spec_of(value)
    except RegistryError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
