"""Group commit: one writer task turns the creates, appends and finishes of every run
into few transactions.

``append`` only queues; the writer takes whatever accumulated while the previous
transaction was in flight (up to ``batch_max`` items) and hands it to the backend's
``commit`` as one transaction. Under load a batch holds many messages, so the cost of
a durable commit (one fsync) is shared instead of paid per message.

Items keep their queue order, and a run's items are queued in ``job_seq`` order, so a
``Finish`` is committed in the same transaction as its run's earlier appends or in a
later one. A backend applies a batch's creates before its appends and finishes (a run
may be created and finished in one batch); so that this never reorders a run's items,
a ``Create`` of a job id that already has an append or finish in the batch being
formed starts the next batch.

A create that is refused (``RunExists``) fails only its own caller: the backend
returns the refusals instead of raising, and the rest of the batch commits. A create
that meets an unavailable store fails at once with ``StoreUnavailable`` (and so does
every create queued until a commit succeeds again). A create whose future is done
(it failed, or its caller timed out or was cancelled) is left out of
the batches formed after that; if it was already in the transaction that committed,
``on_committed`` sees it with ``abandoned`` true, so the store can finish that orphan run.

Failures never stop the writer:

* ``StoreUnavailable`` (down, locked, disk full): the same batch is retried with
  exponential backoff; newer items wait in the queue behind it.
* ``WriteRejected`` (or an unexpected exception, which is a bug): the batch is split
  and retried item by item so one bad item cannot block the others; the bad item is
  dropped (an append, logged) or failed (a finish, its caller gets the error).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from noderun.persistence.errors import StoreError, StoreUnavailable, WriteRejected
from noderun.persistence.health import Health
from noderun.persistence.options import StoreOptions
from noderun.protocol.records import RunRecord

__all__ = ["Append", "Create", "Finish", "GroupCommitter", "Item", "Refusals"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Append:
    """One message of a run, as queued by ``RunStore.append``."""

    job_id: str
    seq: int
    frame: bytes


@dataclass(slots=True)
class Finish:
    """The terminal message and status of a run; ``done`` resolves once committed."""

    job_id: str
    status: str
    seq: int
    frame: bytes
    error: str | None
    finished_at: float
    done: asyncio.Future[None]


@dataclass(slots=True, eq=False)
class Create:
    """A new run row, as queued by ``RunStore.create_run``; ``done`` resolves once
    committed, or fails with the refusal (``RunExists``). Hashable by identity."""

    record: RunRecord
    done: asyncio.Future[None]
    #: Set by the writer: the caller gave up, yet the row was committed.
    abandoned: bool = field(default=False)

    @property
    def job_id(self) -> str:
        return self.record.job_id


Item = Create | Append | Finish
#: What a backend's commit returns: the creates it refused, and why.
Refusals = Mapping[Create, StoreError]


class GroupCommitter:
    """Queue of items and the single task that commits them in batches.

    The queue is bounded by ``options.max_pending`` with the "drop-newest" overflow
    policy for appends (see :class:`StoreOptions`); finishes are always queued.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[Item]], Awaitable[Refusals | None]],
        *,
        health: Health,
        options: StoreOptions,
        on_committed: Callable[[Sequence[Item]], None],
    ) -> None:
        self._commit = commit
        self._health = health
        self._options = options
        self._on_committed = on_committed
        self._queue: deque[Item] = deque()
        self._inflight: Sequence[Item] = ()
        self._wakeup = asyncio.Event()
        self._queued = 0  # items ever queued
        self._processed = 0  # items ever committed or rejected
        self.transactions = 0  # batches ever committed (for tests and metrics)
        self._failing: StoreUnavailable | None = None  # while a batch is being retried
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._dropping: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._inflight)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="noderun-store-writer")

    def put(self, item: Item) -> bool:
        """Queue ``item``; ``False`` when an append was dropped because the queue is full,
        or when a create was failed at once because the store is down."""
        if isinstance(item, Create) and self._failing is not None:
            item.done.set_exception(self._failing)
            return False
        if isinstance(item, Append) and len(self._queue) >= self._options.max_pending:
            if item.job_id not in self._dropping:
                self._dropping.add(item.job_id)
                log.warning(
                    "store.append_dropped",
                    job_id=item.job_id,
                    seq=item.seq,
                    max_pending=self._options.max_pending,
                )
            return False
        if isinstance(item, Finish):
            self._dropping.discard(item.job_id)
        self._queue.append(item)
        self._queued += 1
        self._wakeup.set()
        return True

    async def flush(self) -> None:
        """Wait until every item queued before this call is committed or rejected."""
        target = self._queued
        if self._processed >= target:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes.append((target, waiter))
        await waiter

    async def close(self, grace: float) -> None:
        """Flush for at most ``grace`` seconds, then stop; unfinished finishes fail."""
        try:
            await asyncio.wait_for(self.flush(), grace)
        except TimeoutError:
            log.warning("store.close_dropped_pending", pending=self.pending)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # does not swallow a cancel of close() itself
            self._task = None
        closed = StoreUnavailable(self._health.backend, "store closed")
        for item in (*self._inflight, *self._queue):
            if isinstance(item, Finish | Create) and not item.done.done():
                item.done.set_exception(closed)
        self._queue.clear()
        self._inflight = ()
        for _, waiter in self._flushes:
            if not waiter.done():
                waiter.set_result(None)
        self._flushes.clear()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # One more turn of the loop before forming a batch: the tasks woken with
            # this item (a durable run executing while its row commits) queue their
            # writes too, so a trivial run's row and terminal state share one commit.
            await asyncio.sleep(0)
            while self._queue:
                self._inflight = self._take_batch()
                await self._commit_batch(self._inflight)
                self._processed += len(self._inflight)
                self._inflight = ()
                self._release_flushes()

    def _take_batch(self) -> list[Item]:
        batch: list[Item] = []
        written: set[str] = set()  # job ids with an append or finish in ``batch``
        queue = self._queue
        while queue and len(batch) < self._options.batch_max:
            item = queue[0]
            if isinstance(item, Create):
                if item.job_id in written:
                    break  # applied before the batch's writes, it would overtake them
            else:
                written.add(item.job_id)
            batch.append(queue.popleft())
        return batch

    def _release_flushes(self) -> None:
        still_waiting = []
        for target, waiter in self._flushes:
            if target <= self._processed:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still_waiting.append((target, waiter))
        self._flushes = still_waiting

    async def _commit_batch(self, items: Sequence[Item]) -> None:
        delay = self._options.retry_initial
        while True:
            # Creates whose caller gave up are left out of every new attempt.
            batch = [i for i in items if not (isinstance(i, Create) and i.done.done())]
            if not batch:
                return
            try:
                refusals = await self._commit(batch) or {}
            except StoreUnavailable as exc:
                self._health.failed(exc, during="group commit")
                # Creates are not retried: their callers learn at once that the store
                # is down, as they would from a transaction of their own.
                self._failing = exc
                for pending in (*batch, *self._queue):
                    if isinstance(pending, Create) and not pending.done.done():
                        pending.done.set_exception(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._options.retry_max)
                continue
            except WriteRejected as exc:
                await self._isolate(batch, exc)
                return
            except Exception as exc:
                # A backend bug must not kill the only writer: handle it like a rejection.
                log.exception("store.commit_bug", items=len(batch))
                await self._isolate(batch, WriteRejected(self._health.backend, repr(exc)))
                return
            self._health.succeeded()
            self._failing = None
            self.transactions += 1
            committed: list[Item] = []
            for item in batch:
                if isinstance(item, Create):
                    refusal = refusals.get(item)
                    if refusal is not None:
                        if not item.done.done():
                            item.done.set_exception(refusal)
                        continue
                    if item.done.done():
                        item.abandoned = True
                    else:
                        item.done.set_result(None)
                elif isinstance(item, Finish) and not item.done.done():
                    item.done.set_result(None)
                committed.append(item)
            self._on_committed(committed)
            return

    async def _isolate(self, batch: Sequence[Item], error: WriteRejected) -> None:
        if len(batch) > 1:
            for item in batch:
                await self._commit_batch([item])
            return
        (item,) = batch
        if isinstance(item, Finish | Create):
            if not item.done.done():
                item.done.set_exception(error)
        else:
            log.warning(
                "store.append_rejected", job_id=item.job_id, seq=item.seq, reason=error.reason
            )
