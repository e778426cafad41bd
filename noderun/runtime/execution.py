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

A large graph must not hold the event loop (other clients' runs and handshakes
wait meanwhile): the scheduler works in slices of at most :data:`SLICE` seconds
and then lets the loop run before it goes on, and a graph handed over unplanned
(:class:`~.graph.Unplanned`) is validated in slices the same way before it executes.
Node state is let go as soon as a node is retired, so what a run holds while it
executes is what is still in flight, not everything that flowed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping
from typing import Any, Final, Protocol

from noderun.protocol.values import RANGE_FREE, out_of_range
from noderun.runtime.context import NodeContext
from noderun.runtime.errors import GraphError, NodeFailed, PropertyError
from noderun.runtime.graph import STEP, Plan, PlannedNode, PlanSteps, Unplanned, dismantle
from noderun.runtime.pool import RunnerPool

__all__ = ["SLICE", "Execution", "ExecutionEvents", "execute_single_inline"]

#: Longest stretch (seconds) the scheduler or the planner holds the event loop before
#: it lets other work run.
SLICE: Final = 0.001
#: Work items between two looks at the clock (a power of two).
_CLOCK_EVERY: Final = 32

_perf_counter = time.perf_counter


class ExecutionEvents(Protocol):
    """What the execution reports to its run (which turns them into messages)."""

    job_id: str
    workflow_id: str

    def node_started(self, node: PlannedNode, properties: Mapping[str, object]) -> None: ...
    def node_completed(self, node: PlannedNode, result: Mapping[str, object]) -> None: ...
    def node_failed(self, node: PlannedNode, error: str) -> None: ...
    def output_value(self, node: PlannedNode, name: str, value: object) -> None: ...
    def emit_detail(self, message: Any) -> None: ...
    def congestion(self) -> asyncio.Future[None] | None:
        """``None`` when the run's clients can take more messages, else what to await."""
        ...


class _State:
    """Mutable per-run state of one node."""

    __slots__ = ("busy", "closed", "gathered", "inbox", "latest", "open_in", "pending_fire")

    def __init__(self, node: PlannedNode) -> None:
        self.latest: dict[str, object] = {}
        # Made on the first value that arrives: most nodes of a large graph never queue
        # more than one, and an empty deque is the largest part of a node's state.
        self.inbox: deque[tuple[str, object]] | None = None
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

    @classmethod
    def retired(cls) -> _State:
        """The state of every retired node: nothing more arrives, nothing fires."""
        state = cls.__new__(cls)
        state.latest = {}
        state.inbox = None
        state.busy = False
        state.open_in = -1
        state.pending_fire = False
        state.closed = True
        state.gathered = None
        return state


#: Shared by every retired node of every execution; never changed (a retired node is
#: neither fed nor fired, and its sources are retired before it).
_RETIRED: Final = _State.retired()


class Execution:
    """One run of one plan that can wait (never a :attr:`Plan.synchronous` one: the
    run calls :func:`execute_single_inline` for those). Not reusable.

    Given an :class:`~.graph.Unplanned` graph instead of a plan, it validates the graph first
    (:meth:`validate`, in slices); a command that arrives meanwhile finishes the
    validation at once, so it is answered as if the plan had been there all along.
    """

    def __init__(
        self, plan: Plan | Unplanned, events: ExecutionEvents, pool: RunnerPool | None
    ) -> None:
        self.outputs: dict[str, object] = {}
        self._events = events
        self._pool = pool
        self._states: list[_State] = []
        self._remaining = 0
        self._work: deque[int] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Future[None] | None = None
        self._resume: asyncio.Handle | None = None
        #: The task resuming the scheduler once the run's clients have read enough.
        self._paused: asyncio.Task[None] | None = None
        self._steps: Generator[None, None, None] | None = None
        self._invalid: GraphError | None = None
        self._sources: list[int] = []
        #: A plan made for this execution alone (:meth:`release` empties it).
        self._owned: Plan | None = None
        if isinstance(plan, Plan):
            for _ in self._setup(plan):
                pass
        else:
            self._steps = self._planning(plan.steps)

    def _planning(self, steps: PlanSteps) -> Generator[None, None, None]:
        plan = self._owned = yield from steps
        yield from self._setup(plan)

    def _setup(self, plan: Plan) -> Generator[None, None, None]:
        """Make the per-run state of ``plan``'s nodes, in steps."""
        self.plan = plan
        outputs = self.outputs
        states = self._states
        sources = self._sources
        for node in plan.nodes:
            if not node.index % STEP:
                yield
            states.append(_State(node))
            if not node.fan_in:
                # Only a node with no incoming edge has anything to do before a value
                # arrives.
                sources.append(node.index)
            if node.spec.is_output:
                # §3.3: every Output node is in result.outputs, with [] if it received
                # no value.
                outputs[str(node.properties.get("name") or node.id)] = []
        self._remaining = len(plan.nodes)

    @property
    def planned(self) -> bool:
        """Whether the graph is validated and valid; if not, :meth:`validate` validates it
        or raises the error found."""
        return self._steps is None and self._invalid is None

    async def validate(self) -> None:
        """Validate the graph handed over unplanned, a slice at a time; raises
        :class:`GraphError` (also when a command found it invalid meanwhile)."""
        deadline = _perf_counter() + SLICE
        try:
            while self._steps is not None:
                self._plan_step()
                if _perf_counter() >= deadline:
                    await asyncio.sleep(0)
                    deadline = _perf_counter() + SLICE
        finally:
            if self._steps is not None:  # cancelled: the half-made plan goes now
                self._steps.close()
                self._steps = None
        if self._invalid is not None:
            raise self._invalid

    def _plan_step(self) -> None:
        steps = self._steps
        assert steps is not None
        try:
            next(steps)
        except StopIteration:
            self._steps = None
        except GraphError as exc:
            self._steps = None
            self._invalid = exc

    def _plan_now(self) -> str | None:
        """Finish validating at once (a command needs the plan); an error text if the
        graph is invalid (the run fails with it)."""
        while self._steps is not None:
            self._plan_step()
        invalid = self._invalid
        return None if invalid is None else f"the run's graph is invalid: {invalid.detail}"

    async def release(self) -> None:
        """Let go of the node states and of a plan made for this execution alone, a
        slice at a time (a large graph's objects take as long to free as to make)."""
        states = self._states
        owned = dismantle(self._owned) if self._owned is not None else None
        self._owned = None
        deadline = _perf_counter() + SLICE
        while states or owned is not None:
            del states[-STEP:]
            if owned is not None and next(owned, True):
                owned = None
            if _perf_counter() >= deadline:
                await asyncio.sleep(0)
                deadline = _perf_counter() + SLICE

    async def execute(self) -> dict[str, object]:
        """Run every node of the planned graph; return ``result.outputs``. Raises
        :class:`NodeFailed`."""
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        self._work.extend(self._sources)
        self._sources = []
        try:
            self._pump()
            await self._finished
        finally:
            for task in self._tasks:
                task.cancel()
            if self._resume is not None:
                self._resume.cancel()
                self._resume = None
            self._finished = None
        return self.outputs

    # -- commands from the client -------------------------------------------------

    def _open_inputs(self, name: str, handle: str | None) -> list[PlannedNode] | str:
        """The input nodes named ``name`` (or with that id) still open, else an error text.

        ``handle`` is the input node's output to send on (NodeTool's
        ``source_handle``); ``None`` means its only one, ``output``.
        """
        if self._steps is not None and (invalid := self._plan_now()) is not None:
            return invalid
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
        if self._steps is not None and (invalid := self._plan_now()) is not None:
            return invalid
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
        """Fire or retire every node on the work list until nothing changes, or until
        :data:`SLICE` has passed: then the loop runs other work and this goes on."""
        work = self._work
        states = self._states
        nodes = self.plan.nodes
        deadline = _perf_counter() + SLICE
        count = 0
        while work:
            if self._finished is None or self._finished.done():
                work.clear()
                return
            if self._paused is not None:
                return
            waiting = self._events.congestion()
            if waiting is not None:
                # Backpressure: the run's clients read slower than it produces.
                self._paused = asyncio.get_running_loop().create_task(
                    self._resume_writable(waiting)
                )
                self._tasks.add(self._paused)
                self._paused.add_done_callback(self._tasks.discard)
                return
            count += 1
            if not count % _CLOCK_EVERY and _perf_counter() >= deadline:
                if self._resume is None:
                    self._resume = asyncio.get_running_loop().call_soon(self._resumed)
                return
            index = work.popleft()
            state = states[index]
            if state.busy:
                continue
            node = nodes[index]
            if state.pending_fire:
                state.pending_fire = False
                self._fire(node, state, dict(node.properties))
            elif state.gathered is not None:
                self._gather(node, state, state.gathered)
            else:
                inbox = state.inbox
                while inbox:
                    handle, value = inbox.popleft()
                    state.latest[handle] = value
                    if len(state.latest) == len(node.connected):
                        self._fire(node, state, {**node.properties, **state.latest})
                        break
            # Retire a node as soon as it has nothing more to do, right after its last
            # firing: what it kept (its latest inputs) goes now, before its targets
            # fire, not at the end of the run (a chain would hold every value at once).
            if not state.busy and not state.inbox and state.open_in == 0 and state.closed:
                states[index] = _RETIRED
                self._retire(node)

    def _resumed(self) -> None:
        self._resume = None
        self._pump()

    async def _resume_writable(self, waiting: asyncio.Future[None]) -> None:
        await waiting
        while (waiting_more := self._events.congestion()) is not None:
            await waiting_more
        self._paused = None
        self._pump()

    def _gather(self, node: PlannedNode, state: _State, gathered: dict[str, list[object]]) -> None:
        """Take what arrived; at the end of every input stream, fire with the lists."""
        inbox = state.inbox
        while inbox:
            handle, value = inbox.popleft()
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
                    while (waiting := self._events.congestion()) is not None:
                        await waiting
                self._states[node.index].busy = False
                self._record_sink(node, merged)
                self._events.node_completed(node, merged)
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
            # §3.2: a sink that is not an Output node reports each output handle (vvvv
            # reads a node's value from these in ``outputs`` mode).
            for handle, value in produced.items():
                self._events.output_value(node, handle, value)

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
                state = states[target.node]
                inbox = state.inbox
                if inbox is None:
                    inbox = state.inbox = deque()
                inbox.append((target.handle, checked))
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
    node: PlannedNode, events: ExecutionEvents, *, report_nodes: bool, report_outputs: bool
) -> dict[str, object]:
    """Run a :attr:`Plan.synchronous` plan's node now; ``result.outputs``.

    The SDK's single-node call of a cheap node: the same events and outputs as
    :class:`Execution`, with none of its scheduling state. ``report_nodes``: whether
    the run wants ``node_started``/``node_completed`` (on the hot path a call the run
    would ignore is not made); ``report_outputs``: whether it wants ``output_value``
    for the node's outputs (``full`` and ``outputs``). Raises :class:`NodeFailed`.
    """
    spec = node.spec
    # Not copied: ``**`` copies them into the call, so the plan's own are not touched.
    args = node.properties
    if report_nodes:
        events.node_started(node, args)
    if spec.takes_context:
        args = dict(args)
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
    if report_outputs:
        for handle, output in produced.items():
            events.output_value(node, handle, output)
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
