"""Graph validation and planning: everything checked before anything runs.

:func:`plan_graph` turns the client's graph into a :class:`Plan` or raises
:class:`GraphError` (unknown node type, duplicate id, edge to a missing node or
unknown handle, a cycle, a wrong property type, a required property with no
value and no edge). The plan is immutable; an execution keeps its per-run state
elsewhere, so one plan could serve many runs.

:func:`plan_steps` is the same validation in steps: a generator that yields every
few nodes or edges, so that a large graph can be planned a slice at a time between
other work of the event loop (:class:`~.execution.Execution` does that).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from noderun.protocol.client import Graph
from noderun.protocol.codec import encode_msgpack as _encode
from noderun.runtime.errors import GraphError, PropertyError
from noderun.runtime.node import NodeSpec
from noderun.runtime.registry import Registry

__all__ = [
    "Plan",
    "PlanSteps",
    "PlannedNode",
    "Target",
    "Unplanned",
    "dismantle",
    "plan_graph",
    "plan_steps",
]

#: Nodes or edges validated between two steps of :func:`plan_steps`.
STEP = 64

#: A graph being planned: yields between steps, returns the plan (see :func:`plan_steps`).
PlanSteps = Generator[None, None, "Plan"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where one output handle's values go: node index and input handle."""

    node: int
    handle: str


@dataclass(slots=True)
class PlannedNode:
    index: int
    id: str
    name: str
    spec: NodeSpec
    #: Validated property values (defaults overlaid with ``data``, params applied).
    properties: dict[str, object]
    #: Input handles fed by at least one edge.
    connected: frozenset[str] = frozenset()
    #: Number of incoming edges.
    fan_in: int = 0
    #: output handle → targets.
    targets: dict[str, list[Target]] = field(default_factory=dict)
    #: An input node kept open for ``stream_input`` (no ``value``, no param, has targets).
    streaming_input: bool = False
    #: Whether the input node's value comes from ``params``.
    has_param: bool = False

    @property
    def is_sink(self) -> bool:
        return not self.targets


@dataclass(frozen=True, slots=True)
class Plan:
    nodes: list[PlannedNode]
    by_id: Mapping[str, PlannedNode]
    #: Input nodes by ``name`` and by id (NodeTool's ``stream_input`` accepts either).
    inputs: Mapping[str, tuple[PlannedNode, ...]]

    #: One inline node, no edges, not a streaming input nor a gathering node: runs
    #: without waiting.
    synchronous: bool = False
    #: What the plan runs, as metrics label it: a one-node graph's node type, else ``graph``.
    kind: str = "graph"

    @property
    def single(self) -> bool:
        """One node and no edges: the SDK's single-node run, the hot path."""
        return len(self.nodes) == 1 and self.nodes[0].fan_in == 0 and not self.nodes[0].targets


@dataclass(frozen=True, slots=True)
class Unplanned:
    """A large graph handed to its run unvalidated: its execution validates it in
    slices (:func:`plan_steps`) before running it, so that the frame handler does not
    hold the event loop for it. The run treats it as a plan that has to wait."""

    steps: PlanSteps
    synchronous: ClassVar[bool] = False
    #: As metrics label it (:attr:`Plan.kind`): a large graph is a ``graph``.
    kind: ClassVar[str] = "graph"


def plan_graph(graph: Graph, params: Mapping[str, object] | None, registry: Registry) -> Plan:
    """Validate ``graph`` against ``registry`` and return its execution plan."""
    steps = plan_steps(graph, params, registry)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            plan: Plan = done.value
            return plan


def plan_steps(graph: Graph, params: Mapping[str, object] | None, registry: Registry) -> PlanSteps:
    """:func:`plan_graph` in steps of :data:`STEP` nodes or edges; raises
    :class:`GraphError` from the step that finds the graph invalid."""
    if not graph.nodes:
        raise GraphError("the graph has no nodes")
    params = params or {}
    nodes: list[PlannedNode] = []
    by_id: dict[str, PlannedNode] = {}
    inputs: dict[str, tuple[PlannedNode, ...]] = {}
    for raw in graph.nodes:
        if not len(nodes) % STEP:
            yield
        spec = registry.get(raw.type)
        if spec is None:
            raise GraphError(f"node {raw.id!r}: unknown node type {raw.type!r}", node_id=raw.id)
        if raw.id in by_id:
            raise GraphError(f"duplicate node id {raw.id!r}", node_id=raw.id)
        try:
            properties = spec.check_properties(raw.data)
        except PropertyError as exc:
            raise GraphError(f"node {raw.id!r}: {exc}", node_id=raw.id) from None
        name = raw.data.get("name")
        planned = PlannedNode(
            index=len(nodes),
            id=raw.id,
            name=name if isinstance(name, str) and name else spec.title,
            spec=spec,
            properties=properties,
        )
        if spec.is_input:
            _apply_param(planned, params)
            for key in {raw.id, str(properties.get("name") or raw.id)}:
                inputs[key] = (*inputs.get(key, ()), planned)
        nodes.append(planned)
        by_id[raw.id] = planned
    connected: dict[int, set[str]] = {}
    for count, edge in enumerate(graph.edges, 1):
        if not count % STEP:
            yield
        source = by_id.get(edge.source)
        target = by_id.get(edge.target)
        label = edge.id or f"{edge.source}->{edge.target}"
        if source is None or target is None:
            missing = edge.source if source is None else edge.target
            raise GraphError(f"edge {label!r} refers to a missing node {missing!r}")
        if edge.source_handle not in source.spec.outputs:
            raise GraphError(
                f"edge {label!r}: node {source.id!r} ({source.spec.node_type}) has no output "
                f"{edge.source_handle!r}",
                node_id=source.id,
            )
        if edge.target_handle not in target.spec.properties:
            raise GraphError(
                f"edge {label!r}: node {target.id!r} ({target.spec.node_type}) has no input "
                f"{edge.target_handle!r}",
                node_id=target.id,
            )
        source.targets.setdefault(edge.source_handle, []).append(
            Target(target.index, edge.target_handle)
        )
        target.fan_in += 1
        connected.setdefault(target.index, set()).add(edge.target_handle)
    # Most nodes are fed on the same few handles: one frozenset for each set of them.
    shared: dict[frozenset[str], frozenset[str]] = {}
    for count, (index, handles) in enumerate(connected.items(), 1):
        if not count % STEP:
            yield
        fed = frozenset(handles)
        nodes[index].connected = shared.setdefault(fed, fed)
    del connected
    for planned, raw in zip(nodes, graph.nodes, strict=True):
        if not planned.index % STEP:
            yield
        # NodeTool's rule (its kernel runner's ``_dispatchInputs``): an input node
        # given neither a ``value`` nor a param sends nothing at start and stays
        # open for ``stream_input`` until ``end_input_stream``; one that feeds no
        # node has nothing to keep open.
        planned.streaming_input = (
            planned.spec.is_input
            and not planned.has_param
            and "value" not in raw.data
            and bool(planned.targets)
        )
    for planned in nodes:
        if not planned.index % STEP:
            yield
        if not planned.spec.required:
            continue
        required = [
            name
            for name in planned.spec.required
            if name not in planned.properties and name not in planned.connected
        ]
        if required:
            raise GraphError(
                f"node {planned.id!r} ({planned.spec.node_type}): required "
                f"{', '.join(map(repr, required))} has no value and no edge",
                node_id=planned.id,
            )
    if graph.edges:
        yield from _check_acyclic(nodes)
    only = nodes[0]
    synchronous = (
        len(nodes) == 1
        and not graph.edges
        and only.spec.kind == "inline"
        and not only.streaming_input
        and not only.spec.gather
    )
    kind = only.spec.node_type if len(nodes) == 1 else "graph"
    return Plan(nodes=nodes, by_id=by_id, inputs=inputs, synchronous=synchronous, kind=kind)


def dismantle(plan: Plan) -> Generator[None, None, None]:
    """Empty ``plan`` in steps of :data:`STEP` nodes, for a run that made it for itself
    and is done with it: freeing a large plan's objects all at once would hold the
    event loop as long as making them did."""
    nodes = plan.nodes
    by_id = plan.by_id
    assert isinstance(by_id, dict)
    inputs = plan.inputs
    assert isinstance(inputs, dict)
    inputs.clear()
    while nodes:
        # by_id holds the nodes in the list's order: both let go of the same ones.
        for _ in range(min(STEP, len(by_id))):
            by_id.popitem()
        del nodes[-STEP:]
        yield


def _apply_param(planned: PlannedNode, params: Mapping[str, object]) -> None:
    name = planned.properties.get("name")
    if isinstance(name, str) and name in params:
        prop = planned.spec.properties["value"]
        try:
            planned.properties["value"] = prop.check(planned.spec.node_type, params[name])
        except PropertyError as exc:
            raise GraphError(f"param {name!r}: {exc.detail}", node_id=planned.id) from None
        planned.has_param = True


def _check_acyclic(nodes: list[PlannedNode]) -> Generator[None, None, None]:
    """Kahn's algorithm, in steps; names the nodes left on a cycle."""
    indegree = [n.fan_in for n in nodes]
    ready = deque(n.index for n in nodes if indegree[n.index] == 0)
    seen = 0
    while ready:
        index = ready.popleft()
        seen += 1
        if not seen % STEP:
            yield
        for targets in nodes[index].targets.values():
            for target in targets:
                indegree[target.node] -= 1
                if indegree[target.node] == 0:
                    ready.append(target.node)
    if seen != len(nodes):
        stuck = [n.id for n in nodes if indegree[n.index] > 0]
        raise GraphError(f"the graph has a cycle through {', '.join(map(repr, stuck))}")


class PlanCache:
    """Plans runs' graphs: validated plans of single-node graphs reused across runs,
    large graphs handed over :class:`Unplanned`, graphs over the node limit refused.

    NodeTool's SDK sends the same single-node graph for every call of a node;
    validating it again each time was a fifth of a trivial run's cost. Only
    plans that no run can change are kept: one inline node, no edges, not an
    input node (whose value comes from the run's params) — such a run completes
    synchronously, so nothing (``update_node_properties``) can reach its plan.
    Bounded: emptied when it holds ``size`` plans.

    A graph of more than ``at_once`` nodes is not validated here but by its run, in
    slices; one of more than ``max_nodes`` nodes is refused (:class:`GraphError`).
    Both are looked at only off the single-node path.
    """

    def __init__(
        self,
        registry: Registry,
        size: int = 1024,
        *,
        at_once: int = 256,
        max_nodes: int = 10_000,
    ) -> None:
        self._registry = registry
        self._size = size
        self._plans: dict[bytes, Plan] = {}
        self._at_once = min(at_once, max_nodes)
        self._max_nodes = max_nodes

    def plan(self, graph: Graph, params: Mapping[str, object] | None) -> Plan | Unplanned:
        """Like :func:`plan_graph` (raises :class:`GraphError` the same way), or the
        graph :class:`Unplanned` when it is large."""
        nodes = graph.nodes
        if len(nodes) != 1 or graph.edges:
            return self._plan_graph(graph, params)
        # The node's own MessagePack bytes: exact (True, 1 and 1.0 differ, unlike
        # in a tuple key) and hashable whatever the property values are.
        key = _encode(nodes[0])
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        plan = plan_graph(graph, params, self._registry)
        if plan.synchronous and not plan.nodes[0].spec.is_input:
            if len(self._plans) >= self._size:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _plan_graph(self, graph: Graph, params: Mapping[str, object] | None) -> Plan | Unplanned:
        count = len(graph.nodes)
        if count <= self._at_once:
            return plan_graph(graph, params, self._registry)
        if count > self._max_nodes:
            raise GraphError(
                f"the graph has {count} nodes; this server runs graphs of at most "
                f"{self._max_nodes} (max_graph_nodes)"
            )
        return Unplanned(plan_steps(graph, params, self._registry))
