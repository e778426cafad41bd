"""Executing a plan: an event-driven scheduler inside the run's own coroutine.

Values flow along edges as streams. A node fires once per value arriving on
any connected input, as soon as every connected input has had a value (the
others keep their latest value); source nodes fire once; streaming nodes
(async generators) send each item downstream as it is produced. Firings of one
node are serial and in arrival order; independent nodes run concurrently.

Inline nodes are called directly by the scheduler (no task); async and
streaming nodes get a task per firing; blocking nodes run on the runner pool.
A single inline node therefore completes with no task switch at all: the hot
path.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from noderun.protocol.values import RANGE_FREE, out_of_range
from noderun.runtime.context import NodeContext
from noderun.runtime.errors import NodeFailed, PropertyError
from noderun.runtime.graph import Plan, PlannedNode
from noderun.runtime.pool import RunnerPool

__all__ = ["Execution", "ExecutionEvents", "execute_single_inline"]


class ExecutionEvents(Protocol):
    """What the execution reports to its run (which turns them into messages)."""

    job_id: str
    workflow_id: str

    def node_started(self, node: PlannedNode, properties: Mapping[str, object]) -> None: ...
    def node_completed(self, node: PlannedNode, result: Mapping[str, object]) -> None: ...
    def node_failed(self, node: PlannedNode, error: str) -> None: ...
    def output_value(self, node: PlannedNode, name: str, value: object) -> None: ...
    def emit_detail(self, message: Any) -> None: ...


class _State:
    """Mutable per-run state of one node."""

    __slots__ = ("busy", "closed", "gathered", "inbox", "latest", "open_in", "pending_fire")

    def __init__(self, node: PlannedNode) -> None:
        self.latest: dict[str, object] = {}
        self.inbox: deque[tuple[str, object]] = deque()
        self.busy = False
        self.open_in = node.fan_in
        # Sources fire once at start, except an input kept open for streaming.
        self.pending_fire = node.fan_in == 0 and not node.streaming_input
        # A streaming input stays open until end_input_stream.
        self.closed = not node.streaming_input
        # A gathering node (``gather=``) holds its streams here until they end, then
        # fires once; ``None`` once it has fired (or for any other node).
        gather = node.spec.gather
        self.gathered: dict[str, list[object]] | None = (
            {handle: [] for handle in gather} if gather else None
        )
        if gather:
            self.pending_fire = False


class Execution:
    """One run of one plan that can wait (never a :attr:`Plan.synchronous` one: the
    run calls :func:`execute_single_inline` for those). Not reusable."""

    def __init__(self, plan: Plan, events: ExecutionEvents, pool: RunnerPool | None) -> None:
        self.plan = plan
        self.outputs: dict[str, object] = {}
        # §3.3: every Output node is in result.outputs, with [] if it received no value.
        for planned in plan.nodes:
            if planned.spec.is_output:
                self.outputs[str(planned.properties.get("name") or planned.id)] = []
        self._events = events
        self._pool = pool
        self._states = [_State(node) for node in plan.nodes]
        self._remaining = len(plan.nodes)
        self._work: deque[int] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Future[None] | None = None

    async def execute(self) -> dict[str, object]:
        """Run every node; return ``result.outputs``. Raises :class:`NodeFailed`."""
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        self._work.extend(range(len(self.plan.nodes)))
        try:
            self._pump()
            await self._finished
        finally:
            for task in self._tasks:
                task.cancel()
            self._finished = None
        return self.outputs

    # -- commands from the client -------------------------------------------------

    def _open_inputs(self, name: str, handle: str | None) -> list[PlannedNode] | str:
        """The input nodes named ``name`` (or with that id) still open, else an error text.

        ``handle`` is the input node's output to send on (NodeTool's
        ``source_handle``); ``None`` means its only one, ``output``.
        """
        nodes = self.plan.inputs.get(name, ())
        if not nodes:
            return f"no input named {name!r}"
        if handle is not None and any(handle not in node.spec.outputs for node in nodes):
            return f"input {name!r} has no output handle {handle!r}"
        streaming = [node for node in nodes if node.streaming_input]
        if not streaming:
            return (
                f"input {name!r} is not streaming: it was given a value or a param, "
                "or feeds no node"
            )
        still_open = [node for node in streaming if not self._states[node.index].closed]
        if not still_open:
            return f"input stream {name!r} is already ended"
        return still_open

    def push_input(self, name: str, value: object, handle: str | None = None) -> str | None:
        """Send one streamed value out of input ``name``; an error text, or ``None``."""
        nodes = self._open_inputs(name, handle)
        if isinstance(nodes, str):
            return nodes
        produced: list[tuple[PlannedNode, dict[str, object]]] = []
        for node in nodes:
            try:
                checked = node.spec.properties["value"].check(node.spec.node_type, value)
            except PropertyError as exc:
                return exc.detail
            produced.append((node, {handle or "output": checked}))
        for node, outputs in produced:
            self._route(node, outputs)
        self._pump()
        return None

    def end_input(self, name: str, handle: str | None = None) -> str | None:
        """Close input ``name``'s stream; an error text, or ``None``."""
        nodes = self._open_inputs(name, handle)
        if isinstance(nodes, str):
            return nodes
        for node in nodes:
            self._states[node.index].closed = True
            self._work.append(node.index)
        self._pump()
        return None

    def update_properties(self, node_id: str, properties: Mapping[str, object]) -> str | None:
        """Apply new property values to the node's next firings; an error text, or ``None``."""
        node = self.plan.by_id.get(node_id)
        if node is None:
            return f"no node {node_id!r} in this run"
        checked: dict[str, object] = {}
        for name, value in properties.items():
            prop = node.spec.properties.get(name)
            if prop is None:
                return f"node {node_id!r} ({node.spec.node_type}) has no property {name!r}"
            try:
                checked[name] = prop.check(node.spec.node_type, value)
            except PropertyError as exc:
                return str(exc)
        node.properties.update(checked)
        return None

    # -- scheduling ---------------------------------------------------------------

    def _pump(self) -> None:
        """Fire or retire every node on the work list until nothing changes."""
        work = self._work
        states = self._states
        nodes = self.plan.nodes
        while work:
            if self._finished is None or self._finished.done():
                work.clear()
                return
            index = work.popleft()
            state = states[index]
            if state.busy:
                continue
            node = nodes[index]
            if state.pending_fire:
                state.pending_fire = False
                self._fire(node, state, dict(node.properties))
                continue
            gathered = state.gathered
            if gathered is not None:
                self._gather(node, state, gathered)
                continue
            fired = False
            while state.inbox:
                handle, value = state.inbox.popleft()
                state.latest[handle] = value
                if len(state.latest) == len(node.connected):
                    self._fire(node, state, {**node.properties, **state.latest})
                    fired = True
                    break
            if fired:
                continue
            if state.open_in == 0 and state.closed:
                state.open_in = -1  # retired: never again
                self._retire(node)

    def _gather(self, node: PlannedNode, state: _State, gathered: dict[str, list[object]]) -> None:
        """Take what arrived; at the end of every input stream, fire with the lists."""
        while state.inbox:
            handle, value = state.inbox.popleft()
            if handle in gathered:
                gathered[handle].append(value)
            else:
                state.latest[handle] = value
        if state.open_in == 0 and state.closed:
            state.gathered = None
            self._fire(node, state, {**node.properties, **state.latest, **gathered})

    def _fire(self, node: PlannedNode, state: _State, args: dict[str, object]) -> None:
        spec = node.spec
        self._events.node_started(node, args)
        if spec.takes_context:
            args["ctx"] = NodeContext(self._events, node.id, node.name, asyncio.get_running_loop())
        if spec.kind == "inline":
            try:
                value = spec.fn(**args)
            except Exception as exc:
                self._fail(node, exc)
                return
            self._complete(node, value)
            return
        state.busy = True
        task = asyncio.get_running_loop().create_task(self._invoke(node, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _invoke(self, node: PlannedNode, args: dict[str, object]) -> None:
        spec = node.spec
        try:
            if spec.kind == "async":
                value = await spec.fn(**args)
            elif spec.kind == "blocking":
                value = await self._pool_call(spec.fn, args)
            else:
                merged: dict[str, object] = {}
                async for item in spec.fn(**args):
                    produced = self._outputs_of(node, item)
                    merged.update(produced)
                    self._route(node, produced)
                    self._pump()
                self._states[node.index].busy = False
                self._events.node_completed(node, merged)
                self._record_sink(node, merged)
                self._work.append(node.index)
                self._pump()
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(node, exc)
            return
        self._states[node.index].busy = False
        self._complete(node, value)
        self._pump()

    async def _pool_call(self, fn: Callable[..., object], args: dict[str, object]) -> object:
        if self._pool is None:
            raise RuntimeError("no runner pool to run a blocking node on")
        return await self._pool.call(fn, args)

    def _complete(self, node: PlannedNode, value: object) -> None:
        try:
            produced = self._outputs_of(node, value)
        except TypeError as exc:
            self._fail(node, exc)
            return
        if node.spec.is_output:
            name = str(node.properties.get("name") or node.id)
            values = self.outputs.setdefault(name, [])
            assert isinstance(values, list)
            values.append(produced["output"])
            # §3.2: a node's output_update comes before its node_update completed.
            self._events.output_value(node, name, produced["output"])
        else:
            self._record_sink(node, produced)
        self._events.node_completed(node, produced)
        self._route(node, produced)
        self._work.append(node.index)

    def _record_sink(self, node: PlannedNode, produced: dict[str, object]) -> None:
        if node.is_sink and not node.spec.is_output:
            self.outputs[node.id] = produced

    def _route(self, node: PlannedNode, produced: Mapping[str, object]) -> None:
        states = self._states
        nodes = self.plan.nodes
        for handle, targets in node.targets.items():
            if handle not in produced:
                continue
            value = produced[handle]
            for target in targets:
                target_node = nodes[target.node]
                prop = target_node.spec.properties[target.handle]
                try:
                    checked = prop.check(target_node.spec.node_type, value)
                except PropertyError as exc:
                    self._fail(target_node, exc)
                    return
                states[target.node].inbox.append((target.handle, checked))
                self._work.append(target.node)

    def _retire(self, node: PlannedNode) -> None:
        states = self._states
        for targets in node.targets.values():
            for target in targets:
                states[target.node].open_in -= 1
                self._work.append(target.node)
        self._remaining -= 1
        if self._remaining == 0 and self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    def _fail(self, node: PlannedNode, exc: BaseException) -> None:
        if self._finished is None or self._finished.done():
            return
        failure = NodeFailed(node.id, node.spec.node_type, node.name, exc)
        self._events.node_failed(node, str(failure))
        self._finished.set_exception(failure)

    @staticmethod
    def _outputs_of(node: PlannedNode, value: object) -> dict[str, object]:
        if type(value) is not str:  # the common output needs no check and costs no call
            _check_range(value)
        if node.spec.single_output:
            return {"output": value}
        if not isinstance(value, dict) or not set(value) <= set(node.spec.outputs):
            raise TypeError(
                f"expected a dict with keys among {sorted(node.spec.outputs)}, "
                f"got {type(value).__name__}"
            )
        return value


def execute_single_inline(
    node: PlannedNode, events: ExecutionEvents, *, report_nodes: bool
) -> dict[str, object]:
    """Run a :attr:`Plan.synchronous` plan's node now; ``result.outputs``.

    The SDK's single-node call of a cheap node: the same events and outputs as
    :class:`Execution`, with none of its scheduling state. ``report_nodes``: whether
    the run wants ``node_started``/``node_completed`` (on the hot path a call the run
    would ignore is not made). Raises :class:`NodeFailed`.
    """
    spec = node.spec
    args = dict(node.properties)
    if report_nodes:
        events.node_started(node, args)
    if spec.takes_context:
        args["ctx"] = NodeContext(events, node.id, node.name, asyncio.get_running_loop())
    try:
        value = spec.fn(**args)
        if not spec.single_output:
            produced = Execution._outputs_of(node, value)
        else:
            if type(value) is not str:  # as in _outputs_of
                _check_range(value)
            produced = {"output": value}
    except Exception as exc:
        failure = NodeFailed(node.id, spec.node_type, node.name, exc)
        events.node_failed(node, str(failure))
        raise failure from None
    if spec.is_output:
        name = str(node.properties.get("name") or node.id)
        events.output_value(node, name, produced["output"])
        if report_nodes:
            events.node_completed(node, produced)
        return {name: [produced["output"]]}
    if report_nodes:
        events.node_completed(node, produced)
    return {node.id: produced}


def _check_range(value: object) -> None:
    """Raise :class:`TypeError` when ``value`` holds an integer MessagePack cannot carry.

    Every message carrying a node's output must encode: such an integer fails the
    node (named in the run's error) here, rather than the encoder later (a dropped
    connection, a durable run without its terminal).
    """
    if type(value) not in RANGE_FREE and (bad := out_of_range(value)) is not None:
        raise TypeError(f"output integer {bad} is outside the range the wire can carry")
