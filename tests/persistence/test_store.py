"""The Store over a backend of the test's own: what it does with the signals a backend
reports through its Owner, and with a backend that must be polled for cancels.

The contract tests run the store on the real backends; these reach the paths that a real
database makes hard to provoke on purpose (a notification connection coming back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

from noderun.contract import RunRecord, StoredFrame
from noderun.persistence import Store
from noderun.persistence.backend import Owner, Written
from noderun.persistence.groupcommit import Append, Create, Finish, Item
from tests.support.timing import SECOND
from tests.support.waiting import eventually

from .helpers import fast_options, frame, record, terminal


class MemoryBackend:
    """A backend keeping runs in dicts; cancels are flagged by the test."""

    name = "memory"
    follow_poll: float | None = None

    def __init__(self, *, cancel_poll: float | None = None) -> None:
        self.options = fast_options()
        self.cancel_poll = cancel_poll
        self.runs: dict[str, RunRecord] = {}
        self.frames: dict[str, list[StoredFrame]] = {}
        #: Job ids with a cancel request not delivered yet.
        self.requested: list[str] = []
        self.polls = 0
        self.owner: Owner | None = None

    async def open(self, owner: Owner) -> None:
        self.owner = owner

    async def close(self) -> None:
        pass

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return []

    async def sweep(self, *, starting: bool) -> list[str]:
        return []

    async def interrupt_runs(self, job_ids: Sequence[str]) -> list[str]:
        return []

    async def retire(self) -> list[str]:
        return []

    async def commit(self, batch: Sequence[Item]) -> Written:
        for item in batch:
            if isinstance(item, Create):
                self.runs[item.job_id] = item.record
                self.frames[item.job_id] = []
            elif isinstance(item, Append):
                self.frames[item.job_id].append(StoredFrame(item.seq, item.frame))
            elif isinstance(item, Finish):
                self.frames[item.job_id].append(StoredFrame(item.seq, item.frame))
                run = self.runs[item.job_id]
                self.runs[item.job_id] = RunRecord(
                    job_id=run.job_id,
                    workflow_id=run.workflow_id,
                    user_id=run.user_id,
                    status=item.status,
                    server_id=run.server_id,
                    created_at=run.created_at,
                    finished_at=item.finished_at,
                    last_seq=item.seq,
                )
        return {}, ()

    async def not_running_here(self, job_ids: Sequence[str]) -> list[str]:
        return []

    async def terminals(self, job_ids: Sequence[str]) -> dict[str, StoredFrame]:
        return {}

    async def get_run(self, job_id: str) -> RunRecord | None:
        return self.runs.get(job_id)

    async def read_frames(self, job_id: str, after_seq: int) -> list[StoredFrame]:
        return [stored for stored in self.frames.get(job_id, []) if stored.seq > after_seq]

    async def read_tail(
        self, job_id: str, after_seq: int
    ) -> tuple[RunRecord | None, list[StoredFrame]]:
        return await self.get_run(job_id), await self.read_frames(job_id, after_seq)

    async def request_cancel(self, job_id: str) -> str | None:
        run = self.runs.get(job_id)
        return None if run is None else run.server_id

    async def pending_cancels(self) -> list[str]:
        self.polls += 1
        requested, self.requested = self.requested, []
        return requested

    async def delete_finished_before(self, cutoff: float) -> int:
        return 0


async def test_signals_of_the_backend_wake_followers_and_deliver_cancels() -> None:
    """A frame another process committed wakes this store's followers (``wake``); a
    cancel is delivered (``cancel``); after a lost connection, ``catch_up`` wakes every
    follower and delivers the cancel requests that are still pending."""
    backend = MemoryBackend()
    store = Store(backend, server_id="srv")
    cancelled: list[str] = []
    store.on_cancel_request(cancelled.append)
    await store.start()
    try:
        assert backend.owner is not None and backend.owner.server_id == "srv"
        owner = backend.owner
        await store.create_run(record("j1"))
        seen: list[int] = []

        async def follow() -> None:
            async for stored in store.follow("j1", 0):
                seen.append(stored.seq)

        follower = asyncio.create_task(follow())
        backend.frames["j1"].append(StoredFrame(1, frame("j1", 1)))  # another process
        owner.wake(["j1"])
        await eventually(lambda: seen == [1])
        owner.cancel("j1")
        assert cancelled == ["j1"]
        backend.frames["j1"].append(StoredFrame(2, frame("j1", 2)))
        backend.requested.append("j1")
        await owner.catch_up()  # no wake for frame 2: its notification was lost
        assert cancelled == ["j1", "j1"]
        await eventually(lambda: seen == [1, 2])
        await store.finish("j1", "completed", 3, terminal("j1", 3), None)
        await asyncio.wait_for(follower, SECOND * 5)
        assert seen == [1, 2, 3]
    finally:
        await store.close()


async def test_a_backend_that_cannot_push_cancels_is_polled_while_runs_run_here() -> None:
    backend = MemoryBackend(cancel_poll=SECOND / 50)
    store = Store(backend)
    cancelled: list[str] = []
    store.on_cancel_request(cancelled.append)
    await store.start()
    try:
        assert backend.polls == 0  # nothing runs here: nothing to ask for
        await store.create_run(record("j1"))
        backend.requested.append("j1")
        await eventually(lambda: cancelled == ["j1"])
    finally:
        await store.close()
