"""The run store: :class:`Store` implements :class:`noderun.contract.RunStore` over
a :class:`~noderun.persistence.backend.Backend`, one per database.

Everything that does not depend on the database is here: the lifecycle (start fails
fast, close drains then releases), the group-commit writer, fencing of writes of runs
lost to another server, the heartbeat and its recovery sweeps, followers, and cancel
delivery (pushed by the backend, or polled when the database cannot push).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Sequence,
)
from typing import Any, TypeVar

import msgspec
import structlog

from noderun.contract import TERMINAL_STATUSES, RunRecord, StoredFrame
from noderun.persistence.backend import Backend, Owner
from noderun.persistence.errors import StoreError, StoreUnavailable
from noderun.persistence.groupcommit import Append, Create, Finish, GroupCommitter, Item, Outcome
from noderun.persistence.health import Health
from noderun.persistence.identity import check_server_id
from noderun.persistence.options import StoreOptions
from noderun.persistence.recovery import interrupted_frame
from noderun.persistence.stats import CommitStats
from noderun.persistence.waiters import Waiters

__all__ = ["Store"]

log = structlog.get_logger(__name__)

T = TypeVar("T")


class _Workflow(msgspec.Struct):
    workflow_id: str = ""


_workflow_of = msgspec.msgpack.Decoder(_Workflow)


def _consume(future: asyncio.Future[Any]) -> None:
    # A caller may stop awaiting its future (a deadline, a cancel, a run abandoned);
    # read the outcome so asyncio does not report "exception was never retrieved".
    if not future.cancelled():
        future.exception()


_NO_OUTCOME = Outcome()


class Store:
    """A run store on ``backend`` (its options are the store's).

    Lifecycle: ``start()`` once, then any operation, then ``close()``. Calling an
    operation outside that window raises :class:`StoreUnavailable`.
    """

    def __init__(self, backend: Backend, *, server_id: str | None = None) -> None:
        self.backend = backend
        self._name = backend.name
        self._server_id = check_server_id(server_id) if server_id else uuid.uuid4().hex
        self._options = backend.options
        self._health = Health(backend.name)
        self._waiters = Waiters()
        self._owner = Owner(
            server_id=self._server_id,
            epoch=secrets.randbits(62),
            health=self._health,
            wake=self._waiters.wake,
            cancel=self._deliver_cancel,
            catch_up=self._catch_up,
        )
        self._cancel_callbacks: list[Callable[[str], None]] = []
        #: Runs created here and not finished yet: the ones cancels can target.
        self._active: set[str] = set()
        #: Set when a run is created here: the cancel poll (if any) wakes up.
        self._cancel_kick = asyncio.Event()
        self._committer = GroupCommitter(
            self._commit_fenced,
            health=self._health,
            options=self._options,
            on_committed=self._committed,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._state = "new"

    # -- RunStore -----------------------------------------------------------------

    @property
    def server_id(self) -> str:
        return self._server_id

    @property
    def options(self) -> StoreOptions:
        return self._options

    @property
    def up(self) -> bool:
        """Whether the last store operation succeeded (for metrics)."""
        return self._health.up

    @property
    def commit_stats(self) -> CommitStats:
        """The group commit's latency and batch size counts (for metrics)."""
        return self._committer.stats

    async def start(self) -> None:
        """Connect, migrate, register this server and fail the runs of dead servers.

        Idempotent on a started store. Raises :class:`StoreUnavailable` when the database
        cannot be reached within ``options.connect_timeout``.
        """
        if self._state == "started":
            return
        if self._state != "new":
            raise StoreUnavailable(self._name, "store closed")
        backend = self.backend
        await backend.open(self._owner)
        try:
            recovered = await backend.sweep(starting=True)
        except BaseException:
            await backend.close()
            raise
        self._state = "started"
        if recovered:
            log.warning("store.runs_interrupted", count=len(recovered), job_ids=recovered[:20])
            self._waiters.wake(recovered)
        self._committer.start()
        self._spawn(self._heartbeat_loop(), "heartbeat")
        if backend.cancel_poll is not None:
            self._spawn(self._cancel_poll_loop(backend.cancel_poll), "cancel-poll")
        for name, coro in backend.background():
            self._spawn(coro, name)
        log.info("store.started", backend=self._name, server_id=self._server_id)

    async def close(self) -> None:
        """Commit pending items (within ``finish_timeout``), fail this server's runs that
        are still running as interrupted, unregister, then release connections."""
        if self._state == "new":
            self._state = "closed"
        if self._state != "started":
            return
        self._state = "closing"
        await self._committer.close(self._options.finish_timeout)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # asyncio.wait, not `await task`: a cancellation of close() itself must
            # propagate instead of being mistaken for the task's own.
            await asyncio.wait(self._tasks)
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("store.task_failed", task=task.get_name(), error=repr(task.exception()))
        self._tasks.clear()
        try:
            interrupted = await self.backend.retire()
            if interrupted:
                log.warning("store.runs_interrupted", count=len(interrupted), at="close")
        except StoreError as exc:
            log.warning("store.retire_failed", error=str(exc))
        finally:
            await self.backend.close()
            self._state = "closed"
        self._waiters.wake_all()
        log.info("store.closed", backend=self._name, server_id=self._server_id)

    def create_run(self, record: RunRecord) -> asyncio.Future[None]:
        """Queue the run row for the next group commit; the future resolves once committed.

        A future, not a coroutine: a durable start on the hot path costs no task. It
        fails with ``RunExists`` when the id's run is running (of two creates of one id
        in one batch, the first wins), and with :class:`StoreUnavailable` when the row
        is not committed within ``options.connect_timeout``. A future that is done
        before its commit (it failed, or its awaiting caller was cancelled) withdraws
        the create; if it commits all the same, the orphan run is finished as
        interrupted.
        """
        self._check_open()
        row = record
        if not (
            record.status == "running"
            and record.server_id == self._server_id
            and record.created_at
            and record.last_seq == 0
            and record.finished_at is None
            and record.error is None
            and record.terminal_frame is None
        ):  # the hub's records are new rows already: no copy on the hot path
            row = msgspec.structs.replace(
                record,
                status="running",
                server_id=self._server_id,
                created_at=record.created_at or time.time(),
                finished_at=None,
                last_seq=0,
                error=None,
                terminal_frame=None,
            )
        loop = asyncio.get_running_loop()
        # The caller consumes the outcome (the hub always does): no _consume callback.
        done: asyncio.Future[None] = loop.create_future()
        expires = loop.time() + self._options.connect_timeout
        self._committer.put(Create(row, done, expires))
        return done

    def append(self, job_id: str, seq: int, frame: bytes) -> None:
        """Queue one frame; never blocks. Dropped (and logged) if the queue is full.

        Raises :class:`StoreUnavailable` only when the store is not started or closed.
        """
        self._check_open()
        self._committer.put(Append(job_id, seq, frame))

    def finish(
        self,
        job_id: str,
        status: str,
        seq: int,
        frame: bytes,
        error: str | None,
        *,
        patient: bool = False,
    ) -> asyncio.Future[StoredFrame | None]:
        """Queue the terminal frame and status, committed after every earlier append of
        the run; the future resolves once committed.

        It resolves to ``None`` when this terminal is the run's, or to the terminal the
        store holds when the run was no longer this server's to finish (its lease lapsed
        and another server failed it as interrupted): the one to publish instead, so a
        client is never told a different outcome than the store's (PROTOCOL.md §5).

        The future fails with :class:`StoreUnavailable` if that is not done within
        ``options.finish_timeout`` (with ``patient``, it waits however long it takes).
        Either way the finish stays queued, and is committed when the store comes back
        even if nobody awaits it any more, so the run does not stay ``running`` forever.
        """
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"finish() needs a terminal status, got {status!r}")
        self._check_open()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[StoredFrame | None] = loop.create_future()
        if not patient:  # a caller may stop waiting after its deadline
            done.add_done_callback(_consume)
        expires = math.inf if patient else loop.time() + self._options.finish_timeout
        self._committer.put(Finish(job_id, status, seq, frame, error, time.time(), done, expires))
        return done

    async def get_run(self, job_id: str) -> RunRecord | None:
        self._check_open()
        return await self._guard("get_run", self.backend.get_run(job_id))

    async def read_frames(self, job_id: str, after_seq: int) -> list[StoredFrame]:
        self._check_open()
        return await self._guard("read_frames", self.backend.read_frames(job_id, after_seq))

    async def follow(self, job_id: str, after_seq: int) -> AsyncIterator[StoredFrame]:
        """Committed frames after ``after_seq``, then live ones until the terminal frame.

        Ends when the run is finished (after its terminal frame) or unknown; raises
        :class:`StoreUnavailable` when a read fails or the store is closed meanwhile.
        """
        self._check_open()
        backend = self.backend
        poll = backend.follow_poll
        event = self._waiters.register(job_id)
        try:
            position = after_seq
            while True:
                self._check_open()
                event.clear()
                run, frames = await self._guard("follow", backend.read_tail(job_id, position))
                for stored in frames:
                    position = stored.seq
                    yield stored
                # read_tail reads the run before its frames, so a finished run's
                # terminal frame was among them.
                if run is None or run.finished:
                    return
                if poll is None:
                    await event.wait()
                else:
                    # Commits of other processes are invisible to ``event``: look
                    # again after a while.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), poll)
        finally:
            self._waiters.unregister(job_id, event)

    async def request_cancel(self, job_id: str) -> bool:
        self._check_open()
        owner = await self._guard("request_cancel", self.backend.request_cancel(job_id))
        if owner is None:
            return False
        if owner == self._server_id:
            asyncio.get_running_loop().call_soon(self._deliver_cancel, job_id)
        return True

    def on_cancel_request(self, callback: Callable[[str], None]) -> None:
        """Register ``callback(job_id)``; called on the event loop, at least once per
        cancel request for a run this server owns."""
        self._cancel_callbacks.append(callback)

    async def delete_finished_before(self, cutoff: float) -> int:
        self._check_open()
        return await self._guard(
            "delete_finished_before", self.backend.delete_finished_before(cutoff)
        )

    @property
    def group_commits(self) -> int:
        """Group-commit transactions committed so far (not part of RunStore; for tests)."""
        return self._committer.transactions

    # -- shared machinery ---------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "started":
            raise StoreUnavailable(self._name, f"store {self._state}")

    async def _guard(self, during: str, operation: Awaitable[T]) -> T:
        try:
            result = await operation
        except StoreUnavailable as exc:
            self._health.failed(exc, during=during)
            raise
        self._health.succeeded()
        return result

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str, *, short: bool = False) -> None:
        """A background task, cancelled by close(); a ``short`` one leaves the list when
        it ends (long-lived ones stay until close() collects their outcome)."""
        task = asyncio.create_task(coro, name=f"noderun-store-{name}")
        self._tasks.append(task)
        if short:
            task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks and self._state == "started":
            self._tasks.remove(task)

    def _committed(self, batch: Sequence[Item]) -> None:
        added = False
        for item in batch:
            if isinstance(item, Finish):
                self._active.discard(item.job_id)
            elif isinstance(item, Create):
                if item.abandoned:
                    self._finish_orphan(item.record)
                else:
                    # Before the creator's future callbacks run: a cancel request
                    # may target the run as soon as its creator learns of the commit.
                    self._active.add(item.job_id)
                    added = True
        if added:
            self._cancel_kick.set()
        if self._waiters:
            self._waiters.wake({item.job_id for item in batch})

    async def _commit_fenced(self, batch: Sequence[Item]) -> Outcome:
        """The backend's commit, and what to do about writes of runs lost meanwhile.

        A run stops running here behind its owner's back only when the owner's lease
        lapsed (it could not reach the store) and another server failed the run as
        interrupted. Its finish gets the stored terminal to publish instead of its own;
        a run still executing has its node work cancelled (its terminal then takes the
        same path). Both are rare, so the extra read costs the hot path nothing.
        """
        refused, not_here = await self.backend.commit(batch)
        if not not_here:
            return Outcome(refused) if refused else _NO_OUTCOME
        finishes = {
            item.job_id: item
            for item in batch
            if isinstance(item, Finish) and item.job_id in not_here
        }
        fenced: dict[str, StoredFrame] = {}
        if finishes:
            stored = await self._stored_terminals(list(finishes))
            for job_id, finish in finishes.items():
                held = stored.get(job_id)
                if held is None:
                    # No terminal of this run any more (deleted, or its id reused by a
                    # newer run): it was failed as interrupted, or it would still run.
                    workflow_id = _workflow_of.decode(finish.frame).workflow_id
                    held = StoredFrame(
                        finish.seq, interrupted_frame(job_id, workflow_id, finish.seq)
                    )
                fenced[job_id] = held
                log.warning("store.finish_fenced", job_id=job_id, server_id=self._server_id)
        lost = [job_id for job_id in not_here if job_id in self._active and job_id not in finishes]
        if lost:
            self._lose(lost)
        return Outcome(refused, fenced)

    async def _stored_terminals(self, job_ids: Sequence[str]) -> dict[str, StoredFrame]:
        """The backend's ``terminals``, retried until it succeeds: the batch is committed
        already, and committing it again would refuse its creates (their rows exist now)."""
        delay = self._options.retry_initial
        while True:
            try:
                return await self._guard("fenced finish", self.backend.terminals(job_ids))
            except StoreUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._options.retry_max)

    def _lose(self, job_ids: Collection[str]) -> None:
        """Runs of this server that another server failed: stop their node work."""
        lost = [job_id for job_id in job_ids if job_id in self._active]
        if not lost:
            return
        log.warning(
            "store.runs_lost", count=len(lost), job_ids=lost[:20], server_id=self._server_id
        )
        self._active.difference_update(lost)
        loop = asyncio.get_running_loop()
        for job_id in lost:
            loop.call_soon(self._deliver_cancel, job_id)

    def _finish_orphan(self, record: RunRecord) -> None:
        """A run whose creator gave up was committed anyway: nobody will run it, so
        fail it as interrupted, like a run of a server that stopped.

        Through the recovery path rather than a queued finish: it numbers the terminal
        after the frames the run committed meanwhile, and frames of it still queued
        are dropped once it no longer runs. Rare (a commit slower than the create's
        deadline), so a task of its own.
        """
        log.warning("store.create_withdrawn_after_commit", job_id=record.job_id)
        self._spawn(self._fail_orphan(record.job_id), "orphan", short=True)

    async def _fail_orphan(self, job_id: str) -> None:
        try:
            failed = await self._guard("orphan", self.backend.interrupt_runs([job_id]))
        except StoreError as exc:
            # Crash recovery fails it at the latest when this server stops.
            log.warning("store.orphan_not_failed", job_id=job_id, error=str(exc))
            return
        self._waiters.wake(failed)

    def _deliver_cancel(self, job_id: str) -> None:
        for callback in list(self._cancel_callbacks):
            try:
                callback(job_id)
            except Exception:
                log.exception("store.cancel_callback_failed", job_id=job_id)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._options.heartbeat_interval)
            try:
                swept = await self._guard("heartbeat", self.backend.sweep(starting=False))
            except StoreUnavailable:
                continue  # logged by Health; the next beat retries
            except StoreError:
                log.exception("store.heartbeat_failed")
                continue
            if swept:
                log.warning("store.runs_interrupted", count=len(swept), job_ids=swept[:20])
                self._waiters.wake(swept)
            if self._active:
                # A run that emits nothing for a while learns here, not at its next
                # write, that another server failed it while this one was cut off.
                try:
                    lost = await self._guard(
                        "heartbeat", self.backend.not_running_here(list(self._active))
                    )
                except StoreError:
                    continue
                self._lose(lost)

    async def _cancel_poll_loop(self, interval: float) -> None:
        """Deliver cancel requests of a backend that cannot push them; it looks only
        while this server owns running runs."""
        while True:
            if not self._active:
                self._cancel_kick.clear()
                await self._cancel_kick.wait()
            await asyncio.sleep(interval)
            try:
                job_ids = await self._guard("cancel poll", self.backend.pending_cancels())
            except StoreError:
                continue  # StoreUnavailable is logged by Health; try again next round
            for job_id in job_ids:
                self._deliver_cancel(job_id)

    async def _catch_up(self) -> None:
        """The backend's signals may have been lost (its listener reconnected): wake
        every follower and deliver the pending cancel requests again."""
        self._waiters.wake_all()
        with contextlib.suppress(StoreError):
            for job_id in await self.backend.pending_cancels():
                self._deliver_cancel(job_id)
