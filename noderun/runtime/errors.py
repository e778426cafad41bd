"""Errors of the runtime.

Hierarchy::

    RuntimeFault                  root of everything the runtime raises on purpose
    ├── GraphError                the client's graph is invalid: nothing was executed
    │   └── WorkflowError         no such stored workflow, or params its inputs refuse
    ├── PropertyError             a property value has the wrong type (client's fault)
    ├── NodeFailed                a node raised: the run fails, naming the node
    └── RegistryError             a node definition is invalid (the node author's bug)
        ├── DuplicateNodeType     two definitions claim one node type name
        └── NodeSourceError       a node module or entry point cannot be loaded

Anything else escaping the runtime is our bug and is logged with a traceback.
"""

from __future__ import annotations

__all__ = [
    "DuplicateNodeType",
    "GraphError",
    "NodeFailed",
    "NodeSourceError",
    "PropertyError",
    "RegistryError",
    "RuntimeFault",
    "WorkflowError",
]


class RuntimeFault(Exception):
    """Root of the runtime's deliberate errors."""


class GraphError(RuntimeFault):
    """The graph cannot run: unknown node type, bad edge or handle, cycle, bad property."""

    def __init__(self, detail: str, *, node_id: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.node_id = node_id


class WorkflowError(GraphError):
    """A run or preflight of a stored workflow refused before anything runs.

    ``code``: ``workflow_not_found``, ``unknown_input`` (a param names no input
    node) or ``invalid_input`` (a param's value does not fit its input);
    ``input`` names the offending input.
    """

    def __init__(
        self,
        detail: str,
        *,
        code: str,
        workflow_id: str,
        input: str | None = None,
        node_id: str | None = None,
    ) -> None:
        super().__init__(detail, node_id=node_id)
        self.code = code
        self.workflow_id = workflow_id
        self.input = input


class PropertyError(RuntimeFault):
    """A value does not fit a node property's declared type."""

    def __init__(self, node_type: str, name: str, detail: str) -> None:
        super().__init__(f"property {name!r} of {node_type}: {detail}")
        self.node_type = node_type
        self.name = name
        self.detail = detail


class NodeFailed(RuntimeFault):
    """A node raised while running."""

    def __init__(self, node_id: str, node_type: str, node_name: str, cause: BaseException) -> None:
        super().__init__(f"node {node_name!r} ({node_id}, {node_type}) failed: {_describe(cause)}")
        self.node_id = node_id
        self.node_type = node_type
        self.node_name = node_name
        self.cause = cause


class RegistryError(RuntimeFault):
    """A node definition is invalid or its type name is taken."""


class DuplicateNodeType(RegistryError):
    """Two definitions, from ``first`` and ``second`` (module names), share ``node_type``."""

    def __init__(self, node_type: str, first: str, second: str) -> None:
        super().__init__(
            f"node type {node_type!r} is already registered (defined in {first} and in {second})"
        )
        self.node_type = node_type
        self.first = first
        self.second = second


class NodeSourceError(RegistryError):
    """A node source (``--nodes`` module or ``noderun.nodes`` entry point) failed to load."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"cannot load nodes from {source}: {detail}")
        self.source = source
        self.detail = detail


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
