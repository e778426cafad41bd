"""One run: its messages, its subscribers, its replay buffer, its terminal state.

A run does not depend on any connection (PROTOCOL.md §4). It numbers every
message it emits (``job_seq``), keeps the newest ones in a bounded replay
buffer (oldest dropped first), hands each to every attached subscriber and,
for a durable run, to the store. The terminal ``job_update`` of a durable run
is committed before any subscriber sees it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Literal, Protocol

import structlog

from noderun.protocol.codec import Outbound
from noderun.protocol.records import TERMINAL_STATUSES
from noderun.protocol.server import (
    Chunk,
    JobUpdate,
    NodeUpdate,
    OutputUpdate,
    RunMessage,
)
from noderun.protocol.values import wrap_explicit
from noderun.runtime.errors import NodeFailed
from noderun.runtime.execution import Execution, execute_single_inline
from noderun.runtime.graph import Plan, PlannedNode
from noderun.runtime.pool import RunnerPool
from noderun.runtime.store import RunStore

__all__ = ["Detail", "Run", "Subscriber"]

log = structlog.get_logger(__name__)

Detail = Literal["full", "outputs", "terminal"]

_MAX_ERROR = 1000


class Subscriber(Protocol):
    """A connection attached to runs: receives each message, must not block."""

    def deliver(self, item: Outbound) -> None: ...

    def run_finished(self, job_id: str) -> None:
        """Called once after the terminal message: forget the run."""
        ...


class Run:
    """A run's state and message stream. Created and driven by the :class:`~.hub.Hub`."""

    __slots__ = (
        "_abandoned",
        "_begun",
        "_buffer",
        "_cancel_reason",
        "_detach_grace",
        "_error",
        "_full",
        "_grace_timer",
        "_on_finished",
        "_outputs",
        "_plan",
        "_pool",
        "_started",
        "_terminal_queued",
        "detail",
        "execution",
        "explicit_types",
        "job_id",
        "require_terminal_result",
        "seq",
        "status",
        "store",
        "subscribers",
        "task",
        "terminal",
        "user_id",
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
        replay_limit: int,
        detach_grace: float,
        store: RunStore | None = None,
        on_finished: Callable[[Run], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.workflow_id = workflow_id
        self.user_id = user_id
        self.detail = detail
        self.explicit_types = explicit_types
        self.require_terminal_result = require_terminal_result
        self.store = store
        self.status = "queued"
        self.seq = 0
        self.execution: Execution | None = None
        self.task: asyncio.Task[None] | None = None
        self.terminal: Outbound | None = None
        self.subscribers: list[Subscriber] = []
        self._buffer: deque[Outbound] = deque(maxlen=replay_limit)
        self._detach_grace = detach_grace
        self._grace_timer: asyncio.TimerHandle | None = None
        self._on_finished = on_finished
        self._started = time.perf_counter()
        self._cancel_reason: str | None = None
        self._error: str | None = None
        self._begun = False
        self._abandoned = False
        self._terminal_queued = False
        self._plan: Plan | None = None
        self._pool: RunnerPool | None = None
        self._full = detail == "full"
        self._outputs = detail != "terminal"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def created_at(self) -> float:
        """Wall-clock creation time (unix seconds), for job snapshots; derived from the
        run's monotonic start so that a run pays nothing for it."""
        return time.time() - (time.perf_counter() - self._started)

    @property
    def durable(self) -> bool:
        return self.store is not None

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
            self._grace_timer = loop.call_later(self._detach_grace, self._grace_expired)
        return True

    def _grace_expired(self) -> None:
        self._grace_timer = None
        if not self.subscribers:
            log.info("run.detached_too_long", job_id=self.job_id)
            self.cancel("no client attached within the grace period")

    def replay(self, after_seq: int) -> tuple[list[Outbound], bool]:
        """Buffered messages with ``job_seq > after_seq``, and whether some were dropped."""
        items = [item for item in self._buffer if item.seq > after_seq]
        first = items[0].seq if items else self.seq + 1
        return items, first > after_seq + 1

    # -- emitting -----------------------------------------------------------------

    def emit(self, message: RunMessage) -> Outbound:
        self.seq += 1
        message.job_seq = self.seq
        item = Outbound(message, self.seq)
        self._buffer.append(item)
        if self.store is not None and not self._abandoned:
            # An abandoned run (its row refused) must not write under an id that a
            # new run may own by now.
            self.store.append(self.job_id, self.seq, item.msgpack())
        for subscriber in self.subscribers:
            subscriber.deliver(item)
        return item

    def emit_detail(self, message: RunMessage) -> None:
        """Progress, logs and chunks: in ``full``; chunks also in ``outputs``."""
        if self.finished:
            return
        if self._full or (self._outputs and isinstance(message, Chunk)):
            self.emit(message)

    def node_started(self, node: PlannedNode, properties: Mapping[str, object]) -> None:
        if self._full:
            self.emit(self._node_update(node, "running"))

    def node_completed(self, node: PlannedNode, result: Mapping[str, object]) -> None:
        if self._full:
            self.emit(self._node_update(node, "completed", result=self._wrap_map(result)))

    def node_failed(self, node: PlannedNode, error: str) -> None:
        self.emit(self._node_update(node, "error", error=error[:_MAX_ERROR]))

    def _node_update(
        self,
        node: PlannedNode,
        status: Literal["running", "completed", "error"],
        *,
        result: dict[str, object] | None = None,
        error: str | None = None,
    ) -> NodeUpdate:
        return NodeUpdate(
            job_id=self.job_id,
            workflow_id=self.workflow_id,
            node_id=node.id,
            node_name=node.name,
            node_type=node.spec.node_type,
            status=status,
            result=result,
            error=error,
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

    def prepare(self, plan: Plan | None, pool: RunnerPool | None, error: str | None = None) -> None:
        """Give the run what it will execute; with ``error`` it fails at once, nothing executed."""
        self._plan = plan
        self._pool = pool
        self._error = error

    def start(self) -> None:
        """Execute the run.

        A run that is one inline node (the SDK's single-node call) or that failed
        validation executes right here, synchronously: no task, no execution state,
        no task switch; a durable one publishes its terminal from the callback of
        its commit. Anything that can wait runs in the run's own task, driven by an
        :class:`Execution`.
        """
        self.status = "running"
        plan = self._plan
        if plan is None or plan.synchronous:
            if self.store is None:
                self._publish(self._execute_now())
            else:
                self._commit_then_publish(self._execute_now())
            return
        if plan is not None:
            self.execution = Execution(plan, self, self._pool)
        self.task = asyncio.get_running_loop().create_task(self._main())

    def abandon(self) -> None:
        """Stop a run whose row could not be created: no terminal, nothing more stored.

        What it already queued is ignored by the store (no such running row of ours).
        """
        self._abandoned = True
        self._on_finished = None
        if self.task is not None:
            self.task.cancel()

    def cancel(self, reason: str = "cancelled by client") -> bool:
        """Request cancellation; the run ends with a terminal ``cancelled``.

        Too late once a durable run's terminal is being committed: it is the outcome.
        """
        if (
            self.finished
            or self.task is None
            or self._cancel_reason is not None
            or self._terminal_queued
        ):
            return False
        self._cancel_reason = reason
        if self._begun:
            self.task.cancel()
        # else: a task cancelled before its first step never enters _main, so
        # there would be no terminal message; _main sees the reason instead.
        return True

    def _announce(self) -> None:
        self.emit(
            JobUpdate(
                job_id=self.job_id,
                workflow_id=self.workflow_id,
                status="running",
                message="Workflow started",
            )
        )

    def _execute_now(self) -> Outbound:
        """Execute a synchronous plan (or fail validation) here; the terminal item."""
        plan = self._plan
        if plan is None:
            return self._terminal("failed", error=self._error)
        if self._full:
            self._announce()
        try:
            outputs = execute_single_inline(plan.nodes[0], self)
        except NodeFailed as exc:
            return self._terminal("failed", error=str(exc))
        except Exception as exc:
            log.exception("run.internal_error", job_id=self.job_id)
            return self._terminal("failed", error=_internal(exc))
        return self._terminal("completed", outputs=outputs)

    async def _main(self) -> None:
        self._begun = True
        if self._abandoned:
            return
        if self._cancel_reason is not None:
            await self._finish(self._terminal("cancelled", message=self._cancel_reason))
            return
        execution = self.execution
        if execution is None:
            await self._finish(self._terminal("failed", error=self._error))
            return
        if self._full:
            self._announce()
        try:
            outputs = await execution.execute()
        except NodeFailed as exc:
            await self._finish(self._terminal("failed", error=str(exc)))
        except asyncio.CancelledError:
            if self._cancel_reason is None or self._abandoned:
                raise  # not a client's cancel: shutdown or an abandoned run
            await self._finish(self._terminal("cancelled", message=self._cancel_reason))
        except Exception as exc:
            log.exception("run.internal_error", job_id=self.job_id)
            await self._finish(self._terminal("failed", error=_internal(exc)))
        else:
            await self._finish(self._terminal("completed", outputs=outputs))

    def _terminal(
        self,
        status: Literal["completed", "failed", "cancelled"],
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
        elif status == "completed" and self.require_terminal_result:
            result = {"outputs": {}}
        self.seq += 1
        terminal = JobUpdate(
            job_id=self.job_id,
            workflow_id=self.workflow_id,
            status=status,
            message=message,
            result=result,
            error=error[:_MAX_ERROR] if error else None,
            duration=time.perf_counter() - self._started,
            job_seq=self.seq,
        )
        return Outbound(terminal, self.seq)

    async def _finish(self, item: Outbound) -> None:
        if self.store is not None:
            if self._abandoned:
                return
            item = await self._commit_terminal(item)
        self._publish(item)

    def _publish(self, item: Outbound) -> None:
        """Deliver the terminal message and let go of everything but the replay buffer."""
        message = item.message
        assert isinstance(message, JobUpdate)
        self.status = message.status
        self.terminal = item
        self._buffer.append(item)
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        subscribers, self.subscribers = self.subscribers, []
        for subscriber in subscribers:
            subscriber.deliver(item)
            subscriber.run_finished(self.job_id)
        # Break the run <-> execution/task/hub cycles now: a finished run is kept
        # only for replay, and a cycle-free one is freed by refcounting, not by GC.
        self.execution = None
        self._plan = None
        self.task = None
        on_finished, self._on_finished = self._on_finished, None
        if on_finished is not None:
            on_finished(self)

    async def _commit_terminal(self, item: Outbound) -> Outbound:
        """Commit a durable run's terminal state before anyone sees it.

        If the store is down, wait for it: the finish stays queued in the store,
        and telling the client anything else now would contradict what the store
        says once it commits (PROTOCOL.md §5: exactly one terminal, committed first).
        A server that stops meanwhile leaves the run to crash recovery.
        """
        committed = self._queue_terminal(item)
        await committed
        return item

    def _commit_then_publish(self, item: Outbound) -> None:
        """``_commit_terminal`` without a task: publish from the commit's callback."""
        committed = self._queue_terminal(item)
        committed.add_done_callback(functools.partial(self._terminal_committed, item))

    def _terminal_committed(self, item: Outbound, committed: asyncio.Future[None]) -> None:
        if self._abandoned:
            return  # the row was refused: this run never existed
        if committed.cancelled() or committed.exception() is not None:
            # Only a store closing under the run fails a patient finish: the server
            # is stopping, crash recovery will report the run as interrupted.
            log.warning("run.terminal_not_committed", job_id=self.job_id)
            return
        self._publish(item)

    def _queue_terminal(self, item: Outbound) -> asyncio.Future[None]:
        store = self.store
        assert store is not None
        self._terminal_queued = True
        terminal = item.message
        assert isinstance(terminal, JobUpdate)
        # Patient: while the store is down the run waits (the store logs the outage
        # and its recovery; no per-run timer on the hot path).
        return store.finish(
            self.job_id,
            terminal.status,
            terminal.job_seq,
            item.msgpack(),
            terminal.error,
            patient=True,
        )


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
