"""The node registry: node type name → :class:`NodeSpec`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from noderun.runtime.errors import RegistryError
from noderun.runtime.node import NodeSpec, spec_of

__all__ = ["Registry", "default_registry"]


class Registry:
    """Node types by name. Registration happens at start-up; lookups are plain dict reads."""

    def __init__(self, nodes: Iterable[object] = ()) -> None:
        self._specs: dict[str, NodeSpec] = {}
        for definition in nodes:
            self.add(definition)

    def add(self, definition: object) -> NodeSpec:
        """Register a node: a function decorated with ``@node``, or its :class:`NodeSpec`."""
        spec = spec_of(definition)
        if spec.node_type in self._specs:
            raise RegistryError(f"node type {spec.node_type!r} is already registered")
        self._specs[spec.node_type] = spec
        return spec

    def get(self, node_type: str) -> NodeSpec | None:
        return self._specs.get(node_type)

    def __contains__(self, node_type: object) -> bool:
        return node_type in self._specs

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def default_registry() -> Registry:
    """A registry holding every built-in node (NodeTool names and ``noderun.debug.*``)."""
    from noderun.runtime.nodes import BUILTIN_NODES

    return Registry(BUILTIN_NODES)
