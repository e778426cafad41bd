"""Group commit: one writer task turns the creates, appends and finishes of every run
into few transactions.

``append`` only queues; the writer takes whatever accumulated while earlier
transactions were in flight (up to ``batch_max`` items) and hands it to the backend's
``commit`` as one transaction. Under load a batch holds many messages, so the cost of
a durable commit (one fsync) is shared instead of paid per message.

Up to ``commit_concurrency`` batches are in flight at once (default one: on a local
database, smaller batches cost more CPU per run than the overlap saves; with a distant
one, a run arriving while a commit is under way need not wait for its end). With one,
the writer commits each batch itself and takes one turn of the loop between batches, so
the frames that arrived meanwhile join the next batch. Order is kept per run,
which is all a run's readers can observe: a run's items are queued in ``job_seq``
order, and a batch takes no item of a run that has items in a batch still in flight
(those wait in the queue, in order), so a ``Finish`` is committed in the same
transaction as its run's earlier appends or in a later one. A backend applies a
batch's creates before its appends and finishes (a run may be created and finished
in one batch); so that this never reorders a run's items, a ``Create`` of a job id
that already has an append or finish in the batch being formed waits for a later
batch, and so does every later item of that run.

A create that is refused (``RunExists``) fails only its own caller: the backend
returns the refusals instead of raising, and the rest of the batch commits. A create
already queued when the store becomes unavailable is retried with its batch until its
deadline; a create queued while the store is failing fails at once with
``StoreUnavailable``, until a commit succeeds again. A create whose future is done
(it failed, or its caller timed out or was cancelled) is left out of
the batches formed after that; if it was already in the transaction that committed,
``on_committed`` sees it with ``abandoned`` true, so the store can fail that orphan run.

Failures never stop the writer:

* ``StoreUnavailable`` (down, locked, disk full): the same batch is retried with
  exponential backoff; newer items of its runs wait in the queue behind it.
* ``WriteRejected`` (or an unexpected exception, which is a bug): the batch is split
  and retried item by item so one bad item cannot block the others; the bad item is
  dropped (an append, logged) or failed (a finish, its caller gets the error).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from noderun.contract import RunRecord, StoredFrame
from noderun.persistence.errors import StoreError, StoreUnavailable, WriteRejected
from noderun.persistence.health import Health
from noderun.persistence.options import StoreOptions
from noderun.persistence.stats import CommitStats

__all__ = ["Append", "Create", "Finish", "GroupCommitter", "Item", "Outcome"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Append:
    """One message of a run, as queued by ``RunStore.append``."""

    job_id: str
    seq: int
    frame: bytes


@dataclass(slots=True)
class Finish:
    """The terminal message and status of a run; ``done`` resolves once committed: to
    ``None`` when this terminal is the run's, or to the terminal the store holds when
    the run no longer ran here (its lease lapsed and another server failed it).

    Past ``expires`` (loop time) ``done`` fails with ``StoreUnavailable``; the finish
    stays queued all the same.
    """

    job_id: str
    status: str
    seq: int
    frame: bytes
    error: str | None
    finished_at: float
    done: asyncio.Future[StoredFrame | None]
    expires: float = math.inf


@dataclass(slots=True, eq=False)
class Create:
    """A new run row, as queued by ``RunStore.create_run``; ``done`` resolves once
    committed, or fails with the refusal (``RunExists``). Hashable by identity."""

    record: RunRecord
    done: asyncio.Future[None]
    #: Loop time past which ``done`` fails with ``StoreUnavailable``: the create is
    #: withdrawn.
    expires: float = math.inf
    #: Set by the writer: the caller gave up, yet the row was committed.
    abandoned: bool = field(default=False)

    @property
    def job_id(self) -> str:
        return self.record.job_id


Item = Create | Append | Finish


@dataclass(slots=True)
class Outcome:
    """What a backend's commit reports besides "committed"; empty in the common case."""

    #: Creates refused, and why (the rest of the batch committed).
    refused: Mapping[Create, StoreError] = field(default_factory=dict)
    #: Finishes that did not apply because their run no longer ran here, by job id,
    #: with the terminal the store holds: what the run must publish instead.
    fenced: Mapping[str, StoredFrame] = field(default_factory=dict)


_NOTHING = Outcome()


class GroupCommitter:
    """Queue of items and the writer that commits them in batches, several at once.

    The queue is bounded by ``options.max_pending`` with the "drop-newest" overflow
    policy for appends (see :class:`StoreOptions`); finishes are always queued.
    ``commit`` may be called concurrently (at most ``options.commit_concurrency``
    calls), never with two batches holding items of one job id.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[Item]], Awaitable[Outcome | None]],
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
        #: Batches being committed, by the task committing them (the writer's own
        #: batch, with one commit at a time: by a token).
        self._inflight: dict[object, list[Item]] = {}
        #: Job ids with items in a batch in flight: their later items must wait.
        self._busy: set[str] = set()
        self._wakeup = asyncio.Event()
        self.transactions = 0  # batches ever committed (for tests and metrics)
        self.stats = CommitStats()
        self._failing: StoreUnavailable | None = None  # while a batch is being retried
        #: flush() waiters and the ids of the items each still waits for.
        self._flushes: list[tuple[set[int], asyncio.Future[None]]] = []
        self._dropping: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._queue) + sum(len(batch) for batch in self._inflight.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="noderun-store-writer")
        self._sweeper = asyncio.create_task(self._sweep(), name="noderun-store-deadlines")

    @property
    def deadline_tick(self) -> float:
        options = self._options
        return min(options.connect_timeout, options.finish_timeout) / 4

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.deadline_tick)
            now = loop.time()
            for batch in (*self._inflight.values(), self._queue):
                for item in batch:
                    if isinstance(item, Create | Finish) and item.expires <= now:
                        self._expire(item)

    def _expire(self, item: Create | Finish) -> None:
        if item.done.done():
            return
        last = self._health.last_error
        if last is not None:
            reason = last.reason
        elif isinstance(item, Create):
            reason = f"create not committed within {self._options.connect_timeout}s"
        else:
            reason = f"finish not committed within {self._options.finish_timeout}s"
        error = StoreUnavailable(self._health.backend, reason)
        error.__cause__ = last
        item.done.set_exception(error)

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
        self._wakeup.set()
        return True

    async def flush(self) -> None:
        """Wait until every item queued before this call is committed or rejected."""
        waiting = {id(item) for item in self._queue}
        for batch in self._inflight.values():
            waiting.update(id(item) for item in batch)
        if not waiting:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes.append((waiting, waiter))
        await waiter

    async def close(self, grace: float) -> None:
        """Flush for at most ``grace`` seconds, then stop; unfinished finishes fail."""
        try:
            await asyncio.wait_for(self.flush(), grace)
        except TimeoutError:
            log.warning("store.close_dropped_pending", pending=self.pending)
        inflight, self._inflight = self._inflight, {}  # _settle leaves them to us
        tasks = [key for key in inflight if isinstance(key, asyncio.Task)]
        for task in (self._task, self._sweeper):
            if task is not None:
                tasks.append(task)
        self._task = self._sweeper = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)  # does not swallow a cancel of close() itself
        closed = StoreUnavailable(self._health.backend, "store closed")
        for batch in (*inflight.values(), self._queue):
            for item in batch:
                if isinstance(item, Finish | Create) and not item.done.done():
                    item.done.set_exception(closed)
        self._queue.clear()
        self._busy.clear()
        for _, waiter in self._flushes:
            if not waiter.done():
                waiter.set_result(None)
        self._flushes.clear()

    async def _run(self) -> None:
        limit = self._options.commit_concurrency
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # One more turn of the loop before forming a batch: the tasks woken with
            # this item (a durable run executing while its row commits) queue their
            # writes too, so a trivial run's row and terminal state share one commit.
            await asyncio.sleep(0)
            # With every slot taken (or only items of runs in flight left), the end
            # of a batch sets the wakeup again.
            while self._queue and len(self._inflight) < limit:
                batch = self._take_batch()
                if not batch:
                    break
                if limit == 1:
                    # One batch at a time: the writer commits it itself, without a
                    # task (and its extra turn of the loop) per batch.
                    key = object()
                    self._inflight[key] = batch
                    try:
                        await self._commit_batch(batch)
                    except Exception:
                        log.exception("store.writer_failed")
                    self._settle(key)
                    # Back to the top, through its turn of the loop: the callbacks of
                    # this commit run and the frames that arrived meanwhile are read,
                    # so the next batch takes their items too (bigger batches under
                    # load, measured: fewer commits, less CPU per run).
                    if self._queue:
                        self._wakeup.set()
                    break
                task = asyncio.create_task(self._commit_batch(batch))
                self._inflight[task] = batch
                task.add_done_callback(self._batch_done)

    def _take_batch(self) -> list[Item]:
        """The next batch in queue order, leaving in the queue (in order) every item of a
        run that is in flight, or whose create would overtake its writes in this batch."""
        batch: list[Item] = []
        held: list[Item] = []
        written: set[str] = set()  # job ids with an append or finish in ``batch``
        busy = self._busy
        waiting: set[str] = set()  # job ids with an item held back by this call
        queue = self._queue
        batch_max = self._options.batch_max
        # Bound the scan: a long run of held items must not make every batch O(queue).
        budget = 4 * batch_max
        while queue and len(batch) < batch_max and budget:
            budget -= 1
            item = queue.popleft()
            job_id = item.job_id
            if job_id in busy or job_id in waiting:
                held.append(item)
                waiting.add(job_id)
            elif isinstance(item, Create):
                if job_id in written:  # applied before the batch's writes: it would overtake them
                    held.append(item)
                    waiting.add(job_id)
                else:
                    batch.append(item)
            else:
                written.add(job_id)
                batch.append(item)
        queue.extendleft(reversed(held))
        if self._options.commit_concurrency > 1:  # else no other batch is in flight
            for item in batch:
                busy.add(item.job_id)
        return batch

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("store.writer_failed", error=repr(task.exception()))
        if self._settle(task) and self._queue:
            self._wakeup.set()

    def _settle(self, key: object) -> bool:
        """A batch is over: its runs may be batched again; ``False`` if close() took over."""
        batch = self._inflight.pop(key, None)
        if batch is None:
            return False
        busy = self._busy
        if busy:
            for item in batch:
                busy.discard(item.job_id)
        if self._flushes:
            self._release_flushes(batch)
        return True

    def _release_flushes(self, batch: Sequence[Item]) -> None:
        done = {id(item) for item in batch}
        still_waiting = []
        for waiting, waiter in self._flushes:
            waiting -= done
            if waiting:
                still_waiting.append((waiting, waiter))
            elif not waiter.done():
                waiter.set_result(None)
        self._flushes = still_waiting

    async def _commit_batch(self, items: Sequence[Item]) -> None:
        delay = self._options.retry_initial
        while True:
            # Creates whose caller gave up are left out of every new attempt.
            batch = [i for i in items if not (isinstance(i, Create) and i.done.done())]
            if not batch:
                return
            started = time.perf_counter()
            try:
                outcome = await self._commit(batch) or _NOTHING
            except StoreUnavailable as exc:
                self._health.failed(exc, during="group commit")
                # The creates already queued are retried with the rest, within their
                # deadline (a blip must not refuse the runs that were starting); new
                # ones are refused at once until a commit succeeds again.
                self._failing = exc
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
            self.stats.committed(time.perf_counter() - started, batch)
            committed: list[Item] = []
            for item in batch:
                if isinstance(item, Create):
                    refusal = outcome.refused.get(item)
                    if refusal is not None:
                        if not item.done.done():
                            item.done.set_exception(refusal)
                        continue
                    if item.done.done():
                        item.abandoned = True
                    else:
                        item.done.set_result(None)
                elif isinstance(item, Finish) and not item.done.done():
                    item.done.set_result(outcome.fenced.get(item.job_id))
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
