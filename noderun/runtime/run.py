"""One run: its lifecycle, its messages, its subscribers, its replay buffer.

A run does not depend on any connection (PROTOCOL.md §4). It numbers every
message it emits (``job_seq``), keeps the newest ones in a bounded replay
buffer (oldest dropped first), hands each to every attached subscriber and to
its :mod:`sink <noderun.runtime.sink>` (a durable run's sink stores it).

Its life is an explicit state machine; :meth:`Run._move` is the only place that
changes the state and it refuses any move not drawn here (a bug)::

                   start(): one inline node (or an invalid graph), executed in start()
    PREPARED ─────────────────────────────────> RUNNING ───────────────┐
        │ start(): anything else, in a task        ^  │ cancel(),      │ outcome decided
        │                                          │  │ timeout        │
        v                                          │  v                v
    STARTING ───── the task's first step ──────────┘ CANCELLING ──> FINISHING ──> FINISHED
        │ cancel()                                    ^     the sink: at once (ephemeral),
        └─────────────────────────────────────────────┘     after the commit (durable)

    every state but ABANDONED ── abandon() ──> ABANDONED   (a durable run's row was refused)

* ``PREPARED``: registered with its plan (or the reason it cannot run); the caller acks.
  A run the hub queued (``waiting``) stays here until a slot frees; cancelling it
  goes straight to ``CANCELLING`` and ends it at once.
* ``STARTING``: its task exists but has not taken its first step; a cancel now is
  seen by that first step (cancelling a task that never started would run nothing).
* ``RUNNING``: executing, inline inside :meth:`Run.start` or in its task.
* ``CANCELLING``: a stop was requested; the task ends the run with ``cancelled`` (a
  cancel) or ``failed`` (the run's timeout).
* ``FINISHING``: the terminal is decided and with the sink; nothing more is emitted and
  a cancel is too late. An ephemeral sink publishes at once; a durable one after the
  terminal's commit.
* ``FINISHED``: the terminal was published; the run is kept only for replay.
* ``ABANDONED``: a durable run whose row the store refused: no terminal, nothing more
  stored, as if it never existed.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import structlog

from noderun.contract import RunStatus
from noderun.protocol.codec import Outbound
from noderun.protocol.server import (
    Chunk,
    JobQueued,
    JobUpdate,
    NodeUpdate,
    OutputUpdate,
    RunMessage,
)
from noderun.protocol.values import wrap_explicit
from noderun.runtime.errors import GraphError, NodeFailed
from noderun.runtime.execution import Execution, execute_single_inline
from noderun.runtime.graph import Plan, PlannedNode, Unplanned
from noderun.runtime.pool import RunnerPool
from noderun.runtime.sink import OutputSink
from noderun.runtime.workflows import run_error

__all__ = ["Detail", "Run", "RunLimits", "RunState", "Subscriber"]

log = structlog.get_logger(__name__)

Detail = Literal["full", "outputs", "terminal"]

_MAX_ERROR = 1000


class RunState(enum.IntEnum):
    """Where a run is in its life (see the module docstring).

    Int-valued so the move table below is looked up without a Python-level hash.
    """

    PREPARED = 1
    STARTING = 2
    RUNNING = 3
    CANCELLING = 4
    FINISHING = 5
    FINISHED = 6
    ABANDONED = 7


# Module-level names for the hot path: reading a member off an enum class is a
# Python-level lookup on 3.11, a global is not.
_PREPARED: Final = RunState.PREPARED
_STARTING: Final = RunState.STARTING
_RUNNING: Final = RunState.RUNNING
_CANCELLING: Final = RunState.CANCELLING
_FINISHING: Final = RunState.FINISHING
_FINISHED: Final = RunState.FINISHED
_ABANDONED: Final = RunState.ABANDONED

#: state -> the states it may move to; anything else is a bug.
_MOVES: Final[dict[RunState, frozenset[RunState]]] = {
    # CANCELLING: a queued run (never started) is cancelled.
    _PREPARED: frozenset({_STARTING, _RUNNING, _CANCELLING, _ABANDONED}),
    _STARTING: frozenset({_RUNNING, _CANCELLING, _ABANDONED}),
    _RUNNING: frozenset({_CANCELLING, _FINISHING, _ABANDONED}),
    _CANCELLING: frozenset({_FINISHING, _ABANDONED}),
    # A durable run's row may be refused after its terminal was queued, even after
    # it was published (nobody saw it: a durable run has no subscriber before its ack).
    _FINISHING: frozenset({_FINISHED, _ABANDONED}),
    _FINISHED: frozenset({_ABANDONED}),
    _ABANDONED: frozenset(),
}

#: States in which a run emits messages: its outcome is not decided yet.
_LIVE: Final = (_RUNNING, _CANCELLING)

_COMPLETED: Final = RunStatus.COMPLETED
_FAILED: Final = RunStatus.FAILED
_CANCELLED: Final = RunStatus.CANCELLED


class Subscriber(Protocol):
    """A connection attached to runs: receives each message, must not block."""

    def deliver(self, item: Outbound) -> None: ...

    def run_finished(self, job_id: str) -> None:
        """Called once after the terminal message: forget the run."""
        ...

    def congestion(self) -> asyncio.Future[None] | None:
        """``None`` when it can take more now; else what the run awaits first."""
        ...


@dataclass(frozen=True, slots=True)
class RunLimits:
    """What every run of a hub shares (one object, not a field each per run)."""

    #: Messages kept for replay (oldest dropped first).
    replay_limit: int = 2000
    #: Seconds a run with no subscriber goes on before it is cancelled.
    detach_grace: float = 600.0
    #: Seconds after which a run that waits ends ``failed`` (timeout); 0: never.
    timeout: float = 0.0


class Run:
    """A run's state and message stream. Created and driven by the :class:`~.hub.Hub`."""

    __slots__ = (
        "_buffer",
        "_cancel_reason",
        "_deadline",
        "_error",
        "_full",
        "_grace_timer",
        "_keeps",
        "_limits",
        "_on_finished",
        "_outcome",
        "_outputs",
        "_plan",
        "_pool",
        "_sink",
        "_started",
        "_state",
        "_stop_status",
        "admitted",
        "connection",
        "detail",
        "execution",
        "explicit_types",
        "finished_at",
        "job_id",
        "kind",
        "require_terminal_result",
        "seq",
        "store_key",
        "subscribers",
        "task",
        "terminal",
        "user_id",
        "waiting",
        "workflow_id",
    )

    def __init__(
        self,
        *,
        job_id: str,
        workflow_id: str,
        user_id: str,
        detail: Detail,
        explicit_types: bool,
        require_terminal_result: bool,
        limits: RunLimits,
        sink: OutputSink,
        plan: Plan | Unplanned | None,
        pool: RunnerPool | None,
        error: str | None = None,
        subscriber: Subscriber | None = None,
        on_finished: Callable[[Run], None] | None = None,
    ) -> None:
        """A ``PREPARED`` run of ``plan``; with ``plan=None`` it fails with ``error``
        when started, nothing executed. ``subscriber``: attached from the start."""
        self.job_id = job_id
        self.workflow_id = workflow_id
        self.user_id = user_id
        self.detail = detail
        self.explicit_types = explicit_types
        self.require_terminal_result = require_terminal_result
        self._state = _PREPARED
        self._sink = sink
        self._keeps = sink.keeps
        self._plan = plan
        #: What it runs, for metrics: see :attr:`Plan.kind` (``invalid``: no plan).
        self.kind = plan.kind if plan is not None else "invalid"
        self._pool = pool
        self._error = error
        self.seq = 0
        self.execution: Execution | None = None
        self.task: asyncio.Task[None] | None = None
        self.terminal: Outbound | None = None
        self.subscribers: list[Subscriber] = [subscriber] if subscriber is not None else []
        # Made by the first message before the terminal: a run whose only message is
        # its terminal (the usual single-node call) replays it from ``terminal``.
        self._buffer: deque[Outbound] | None = None
        self._limits = limits
        self._grace_timer: asyncio.TimerHandle | None = None
        self._on_finished = on_finished
        self._started = time.perf_counter()
        self._cancel_reason = ""
        # _stop_status is set by _stop, the one place that moves to CANCELLING.
        self._deadline: asyncio.TimerHandle | None = None
        self._outcome = _FAILED
        self._full = detail == "full"
        self._outputs = detail != "terminal"
        #: The connection it counts against (the hub's admission), if any.
        self.connection: object = None
        #: Its key in a run store (a durable run's): ``contract.store_key``.
        self.store_key = job_id
        #: It holds an in-flight slot; ``waiting``: it is queued for one.
        self.admitted = False
        self.waiting = False
        #: When the hub moved it to its finished runs (``time.monotonic()``).
        self.finished_at = 0.0

    @property
    def state(self) -> RunState:
        return self._state

    @property
    def status(self) -> RunStatus:
        """The run's status as a client sees it (``get_status``, ``job_resumed``); a run
        abandoned without a terminal counts as failed."""
        state = self._state
        if state is _FINISHED:
            return self._outcome
        if state is _ABANDONED:
            return _FAILED
        return RunStatus.QUEUED if state is _PREPARED else RunStatus.RUNNING

    @property
    def finished(self) -> bool:
        """Whether the run will emit nothing more (its terminal is published, or it was
        abandoned)."""
        state = self._state
        return state is _FINISHED or state is _ABANDONED

    def _move(self, to: RunState) -> None:
        """The one place the state changes; an impossible move is a bug."""
        if to not in _MOVES[self._state]:
            raise RuntimeError(f"run {self.job_id!r}: no move from {self._state.name} to {to.name}")
        self._state = to

    @property
    def created_at(self) -> float:
        """Wall-clock creation time (unix seconds), for job snapshots; derived from the
        run's monotonic start so that a run pays nothing for it."""
        return time.time() - (time.perf_counter() - self._started)

    @property
    def durable(self) -> bool:
        """Whether its sink stores it (a durable run)."""
        return self._keeps

    # -- subscribers --------------------------------------------------------------

    def attach(self, subscriber: Subscriber) -> bool:
        """Attach a subscriber for live messages; ``False`` if it already was."""
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if subscriber in self.subscribers:
            return False
        self.subscribers.append(subscriber)
        return True

    def detach(self, subscriber: Subscriber) -> bool:
        """Stop sending to ``subscriber``; a run left alone is cancelled after the grace period."""
        try:
            self.subscribers.remove(subscriber)
        except ValueError:
            return False
        if not self.subscribers and not self.finished and self._grace_timer is None:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self._limits.detach_grace, self._grace_expired)
        return True

    def _grace_expired(self) -> None:
        self._grace_timer = None
        if not self.subscribers:
            log.info("run.detached_too_long", job_id=self.job_id)
            self.cancel("no client attached within the grace period")

    def congestion(self) -> asyncio.Future[None] | None:
        """What the run's producers await before producing more: the first congested
        subscriber's signal, so the slowest reader paces the run (one that reads
        nothing is closed after the slow-client timeout, which lets the run go on);
        ``None`` when every subscriber can take more, or there is none."""
        for subscriber in self.subscribers:
            waiting = subscriber.congestion()
            if waiting is not None:
                return waiting
        return None

    def replay(self, after_seq: int) -> tuple[list[Outbound], bool]:
        """Buffered messages with ``job_seq > after_seq``, and whether some were dropped."""
        buffer = self._buffer
        items: list[Outbound]
        if buffer is not None:
            items = [item for item in buffer if item.seq > after_seq]
        else:
            terminal = self.terminal
            items = []
            if terminal is not None and terminal.seq > after_seq and self._limits.replay_limit:
                items.append(terminal)
        # While FINISHING the terminal is numbered but not yet published (buffered):
        # it is still to come, not lost.
        upcoming = self.seq if self._state is _FINISHING else self.seq + 1
        first = items[0].seq if items else upcoming
        return items, first > after_seq + 1

    def _buffered(self) -> deque[Outbound]:
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = deque(maxlen=self._limits.replay_limit)
        return buffer

    # -- emitting -----------------------------------------------------------------

    def emit(self, message: RunMessage) -> None:
        """Number ``message`` and send it everywhere; dropped once the outcome is decided
        (the terminal is the last message, and an abandoned run writes nothing more)."""
        if self._state not in _LIVE:
            return
        self.seq += 1
        message.job_seq = self.seq
        item = Outbound(message, self.seq)
        self._buffered().append(item)
        if self._keeps:
            self._sink.keep(self.store_key, item)
        for subscriber in self.subscribers:
            subscriber.deliver(item)

    def queued(self, position: int) -> None:
        """Tell subscribers the run waits at ``position`` (1 = next) of its queue."""
        if self._state is not _PREPARED:
            return
        self.seq += 1
        item = Outbound(
            JobQueued(
                job_id=self.job_id,
                workflow_id=self.workflow_id,
                message="Waiting for a free slot",
                queue_position=position,
                job_seq=self.seq,
            ),
            self.seq,
        )
        self._buffered().append(item)
        if self._keeps:
            self._sink.keep(self.store_key, item)
        for subscriber in self.subscribers:
            subscriber.deliver(item)

    def emit_detail(self, message: RunMessage) -> None:
        """Progress, logs and chunks: in ``full``; chunks also in ``outputs``."""
        if self._full or (self._outputs and isinstance(message, Chunk)):
            self.emit(message)

    def node_started(self, node: PlannedNode, properties: Mapping[str, object]) -> None:
        if self._full:
            self.emit(
                NodeUpdate(
                    job_id=self.job_id,
                    workflow_id=self.workflow_id,
                    node_id=node.id,
                    node_name=node.name,
                    node_type=node.spec.node_type,
                    status="running",
                )
            )

    def node_completed(self, node: PlannedNode, result: Mapping[str, object]) -> None:
        if self._full:
            self.emit(
                NodeUpdate(
                    job_id=self.job_id,
                    workflow_id=self.workflow_id,
                    node_id=node.id,
                    node_name=node.name,
                    node_type=node.spec.node_type,
                    status="completed",
                    result=self._wrap_map(result),
                )
            )

    def node_failed(self, node: PlannedNode, error: str) -> None:
        self.emit(
            NodeUpdate(
                job_id=self.job_id,
                workflow_id=self.workflow_id,
                node_id=node.id,
                node_name=node.name,
                node_type=node.spec.node_type,
                status="error",
                error=error[:_MAX_ERROR],
            )
        )

    def output_value(self, node: PlannedNode, name: str, value: object) -> None:
        if self._outputs:
            self.emit(
                OutputUpdate(
                    job_id=self.job_id,
                    workflow_id=self.workflow_id,
                    node_id=node.id,
                    node_name=node.name,
                    output_name=name,
                    value=value,
                    output_type=_output_type(value),
                )
            )

    def _wrap_map(self, values: Mapping[str, object]) -> dict[str, object]:
        if self.explicit_types:
            return {key: wrap_explicit(value) for key, value in values.items()}
        return dict(values)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Execute the run.

        A run that is one inline node (the SDK's single-node call) or that failed
        validation executes right here, synchronously: no task, no execution state,
        no task switch (the hot path, hence written out inline). Anything that can
        wait runs in the run's own task, driven by an :class:`Execution`.
        """
        plan = self._plan
        if plan is not None and not plan.synchronous:
            self._move(_STARTING)
            execution = self.execution = Execution(plan, self, self._pool)
            loop = asyncio.get_running_loop()
            self.task = loop.create_task(self._main(execution))
            timeout = self._limits.timeout
            if timeout > 0:
                self._deadline = loop.call_later(timeout, self._timed_out)
            return
        self._move(_RUNNING)
        if plan is None:
            item = self._terminal(_FAILED, error=self._error)
        else:
            full = self._full
            if full:
                self._announce()
            try:
                # Only a Plan is synchronous (Unplanned.synchronous is False); no
                # isinstance here, on the hot path, to tell mypy so.
                outputs = execute_single_inline(
                    plan.nodes[0],  # type: ignore[union-attr]
                    self,
                    report_nodes=full,
                    report_outputs=self._outputs,
                )
            except NodeFailed as exc:
                item = self._terminal(_FAILED, error=str(exc))
            except Exception as exc:
                log.exception("run.internal_error", job_id=self.job_id)
                item = self._terminal(_FAILED, error=_internal(exc))
            else:
                item = self._terminal(_COMPLETED, outputs=outputs)
        self._move(_FINISHING)
        self._sink.conclude(self, item)

    def cancel(self, reason: str = "cancelled by client") -> bool:
        """Request cancellation; the run ends with a terminal ``cancelled``.

        A queued run (``waiting``) ends here, its terminal delivered before this
        returns. ``False`` when there is nothing to cancel: not started, ending already
        (a durable run's terminal being committed is its outcome; a timeout already
        stopping it), or executing inline (no await there, so only a re-entrant call
        can get here).
        """
        return self._stop(_CANCELLED, reason)

    def _timed_out(self) -> None:
        self._deadline = None
        timeout = self._limits.timeout
        if self._stop(_FAILED, f"timeout: the run did not finish within {timeout:g} s"):
            log.info("run.timeout", job_id=self.job_id, timeout=timeout)

    def _stop(self, status: RunStatus, reason: str) -> bool:
        """Stop the run's task; its terminal has ``status`` and ``reason`` (the error of
        a ``failed`` one, the message of a ``cancelled`` one)."""
        state = self._state
        if state is _PREPARED and self.waiting:
            # Queued, never started: ends here, nothing executed.
            self.waiting = False
            self._cancel_reason = reason
            self._move(_CANCELLING)
            if status is _CANCELLED:
                item = self._terminal(_CANCELLED, message=reason)
            else:
                item = self._terminal(status, error=reason)
            self._move(_FINISHING)
            self._sink.conclude(self, item)
        elif state is _STARTING:
            # Its task has not begun: cancelling it would skip _main and with it the
            # terminal; the first step sees the state instead.
            self._cancel_reason = reason
            self._stop_status = status
            self._move(_CANCELLING)
        elif state is _RUNNING and self.task is not None:
            self._cancel_reason = reason
            self._stop_status = status
            self._move(_CANCELLING)
            self.task.cancel()
        else:
            return False
        return True

    def abandon(self) -> None:
        """Forget a durable run whose row was refused: no terminal, nothing more stored.

        What it already queued is ignored by the store (no such running row of ours).
        """
        executing = self._state in (_STARTING, _RUNNING, _CANCELLING)
        self._move(_ABANDONED)
        self._on_finished = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if executing and self.task is not None:
            self.task.cancel()
        # A run that is FINISHING lets its terminal commit (a no-op without its row)
        # and then publishes nothing.

    def publish(self, item: Outbound) -> None:
        """``FINISHING`` -> ``FINISHED``: deliver the terminal (called by the sink).

        Lets go of everything but the replay buffer. Nothing for an abandoned run.
        """
        if self._state is _ABANDONED:
            return
        self._move(_FINISHED)
        message = item.message
        if isinstance(message, JobUpdate) and message.status != self._outcome:
            # The store's terminal, not the run's own (see sink.DurableSink).
            self._outcome = RunStatus(message.status)
        self.terminal = item
        if self._buffer is not None:
            self._buffer.append(item)
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        subscribers, self.subscribers = self.subscribers, []
        job_id = self.job_id
        for subscriber in subscribers:
            subscriber.deliver(item)
            subscriber.run_finished(job_id)
        # Break the run <-> execution/task/hub cycles now: a finished run is kept
        # only for replay, and a cycle-free one is freed by refcounting, not by GC.
        self.execution = None
        self._plan = None
        self.task = None
        on_finished, self._on_finished = self._on_finished, None
        if on_finished is not None:
            on_finished(self)

    def _stopped(self) -> Outbound:
        """The terminal of a run stopped by :meth:`_stop`."""
        if self._stop_status is _FAILED:
            return self._terminal(_FAILED, error=self._cancel_reason)
        return self._terminal(_CANCELLED, message=self._cancel_reason)

    def _announce(self) -> None:
        self.emit(
            JobUpdate(
                job_id=self.job_id,
                workflow_id=self.workflow_id,
                status="running",
                message="Workflow started",
            )
        )

    async def _main(self, execution: Execution) -> None:
        # Never entered by a task abandoned before its first step: that task was
        # cancelled, so its coroutine does not run at all.
        if self._state is _CANCELLING:  # stopped before this first step
            item = self._stopped()
        else:
            self._move(_RUNNING)
            item = await self._execute(execution)
        self._move(_FINISHING)
        committed = self._sink.conclude(self, item)
        # While a durable terminal commits; a large graph's objects are freed in slices.
        await execution.release()
        if committed is not None:
            # The task lasts until the terminal is published: Hub.close waits for it.
            await committed

    async def _execute(self, execution: Execution) -> Outbound:
        """Validate the graph if it came unplanned, run the execution to its end; the
        terminal item."""
        try:
            if not execution.planned:
                await execution.validate()
            if self._full:
                self._announce()
            outputs = await execution.execute()
        except GraphError as exc:
            return self._terminal(_FAILED, error=run_error(exc))
        except NodeFailed as exc:
            return self._terminal(_FAILED, error=str(exc))
        except asyncio.CancelledError:
            if self._state is not _CANCELLING:
                raise  # not a stop of ours: shutdown, or an abandoned run
            return self._stopped()
        except Exception as exc:
            log.exception("run.internal_error", job_id=self.job_id)
            return self._terminal(_FAILED, error=_internal(exc))
        return self._terminal(_COMPLETED, outputs=outputs)

    def _terminal(
        self,
        status: RunStatus,
        *,
        outputs: dict[str, object] | None = None,
        error: str | None = None,
        message: str | None = None,
    ) -> Outbound:
        """The terminal ``job_update``, numbered as the run's last message."""
        result: dict[str, object] | None = None
        if outputs is not None:
            wrapped = self._wrap_map(outputs)
            result = {"outputs": wrapped} if self.require_terminal_result else wrapped
        elif status is _COMPLETED and self.require_terminal_result:
            result = {"outputs": {}}
        self._outcome = status
        self.seq += 1
        terminal = JobUpdate(
            job_id=self.job_id,
            workflow_id=self.workflow_id,
            # A RunStatus is a str whose values are JobStatus's (tests/test_contract.py):
            # msgspec encodes it as that string, at no cost.
            status=status,  # type: ignore[arg-type]
            message=message,
            result=result,
            error=error[:_MAX_ERROR] if error else None,
            duration=time.perf_counter() - self._started,
            job_seq=self.seq,
        )
        return Outbound(terminal, self.seq)


def _internal(exc: Exception) -> str:
    return f"internal error: {type(exc).__name__}: {exc}"


def _output_type(value: object) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        kind = value.get("type")
        return kind if isinstance(kind, str) else "dict"
    return "any"
