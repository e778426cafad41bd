"""The group-commit writer, against a fake backend: batching, ordering, failure handling."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from noderun.contract import StoredFrame
from noderun.persistence import StoreOptions, StoreUnavailable, WriteRejected
from noderun.persistence.groupcommit import Append, Create, Finish, GroupCommitter, Item
from noderun.persistence.health import Health
from tests.support.timing import SECOND
from tests.support.waiting import eventually

from .helpers import record


class FakeBackend:
    """Records committed batches; can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[Item]] = []
        self.down = False
        self.reject_seq: int | None = None
        self.attempts = 0

    async def commit(self, batch: Sequence[Item]) -> None:
        self.attempts += 1
        await asyncio.sleep(0)  # a real commit yields; appends pile up meanwhile
        if self.down:
            raise StoreUnavailable("fake", "down")
        if self.reject_seq is not None and any(
            not isinstance(i, Create) and i.seq == self.reject_seq for i in batch
        ):
            raise WriteRejected("fake", "bad row")
        self.batches.append(list(batch))

    @property
    def committed(self) -> list[tuple[str, int]]:
        return [
            (i.job_id, i.seq) for batch in self.batches for i in batch if not isinstance(i, Create)
        ]


def _committer(backend: FakeBackend, **options: float) -> GroupCommitter:
    values = {"retry_initial": SECOND / 100, "retry_max": SECOND / 50, **options}
    return GroupCommitter(
        backend.commit,
        health=Health("fake"),
        options=StoreOptions(**values),  # type: ignore[arg-type]
        on_committed=lambda batch: None,
    )


def _finish(job_id: str, seq: int) -> Finish:
    done: asyncio.Future[StoredFrame | None] = asyncio.get_running_loop().create_future()
    return Finish(job_id, "completed", seq, b"end", None, 0.0, done)


async def test_appends_queued_together_share_transactions_and_keep_order() -> None:
    backend = FakeBackend()
    committer = _committer(backend, batch_max=100)
    committer.start()
    for seq in range(1, 1001):
        committer.put(Append("j1", seq, b"x"))
    end = _finish("j1", 1001)
    committer.put(end)
    await asyncio.wait_for(end.done, SECOND)
    assert backend.committed == [("j1", seq) for seq in range(1, 1002)]
    assert len(backend.batches) == 11  # 1001 items, at most 100 per transaction
    await committer.close(SECOND)


async def test_unavailable_store_is_retried_without_losing_or_reordering() -> None:
    backend = FakeBackend()
    backend.down = True
    committer = _committer(backend)
    committer.start()
    for seq in (1, 2):
        committer.put(Append("j1", seq, b"x"))
    end = _finish("j1", 3)
    committer.put(end)
    await eventually(lambda: backend.attempts > 2)
    assert not end.done.done()
    backend.down = False
    await asyncio.wait_for(end.done, SECOND)
    assert backend.committed == [("j1", 1), ("j1", 2), ("j1", 3)]
    await committer.close(SECOND)


async def test_a_rejected_item_is_dropped_and_the_rest_commits() -> None:
    backend = FakeBackend()
    backend.reject_seq = 2
    committer = _committer(backend)
    committer.start()
    for seq in (1, 2, 3):
        committer.put(Append("j1", seq, b"x"))
    end = _finish("j1", 4)
    committer.put(end)
    await asyncio.wait_for(end.done, SECOND)
    assert backend.committed == [("j1", 1), ("j1", 3), ("j1", 4)]
    await committer.close(SECOND)


async def test_a_rejected_finish_fails_its_caller() -> None:
    backend = FakeBackend()
    backend.reject_seq = 1
    committer = _committer(backend)
    committer.start()
    end = _finish("j1", 1)
    committer.put(end)
    with pytest.raises(WriteRejected):
        await asyncio.wait_for(end.done, SECOND)
    await committer.close(SECOND)


async def test_full_queue_drops_appends_but_never_finishes() -> None:
    backend = FakeBackend()
    committer = _committer(backend, max_pending=2)
    assert committer.put(Append("j1", 1, b"x"))
    assert committer.put(Append("j1", 2, b"x"))
    assert not committer.put(Append("j1", 3, b"x"))
    end = _finish("j1", 4)
    assert committer.put(end)
    committer.start()
    await asyncio.wait_for(end.done, SECOND)
    assert backend.committed == [("j1", 1), ("j1", 2), ("j1", 4)]
    await committer.close(SECOND)


async def test_close_fails_finishes_it_could_not_commit() -> None:
    backend = FakeBackend()
    backend.down = True
    committer = _committer(backend)
    committer.start()
    end = _finish("j1", 1)
    committer.put(end)
    await committer.close(SECOND / 10)
    with pytest.raises(StoreUnavailable):
        await end.done


class GatedBackend:
    """Holds every commit until the test opens its gate: batches pile up in flight."""

    def __init__(self) -> None:
        self.started: list[list[Item]] = []
        self.gates: list[asyncio.Event] = []

    async def commit(self, batch: Sequence[Item]) -> None:
        gate = asyncio.Event()
        self.started.append(list(batch))
        self.gates.append(gate)
        await gate.wait()


def _gated(**options: float) -> tuple[GatedBackend, GroupCommitter]:
    backend = GatedBackend()
    committer = GroupCommitter(
        backend.commit,
        health=Health("fake"),
        options=StoreOptions(**options),  # type: ignore[arg-type]
        on_committed=lambda batch: None,
    )
    committer.start()
    return backend, committer


def _keys(batch: Sequence[Item]) -> list[tuple[str, int]]:
    return [(i.job_id, 0 if isinstance(i, Create) else i.seq) for i in batch]


async def test_batches_in_flight_never_share_a_run_and_keep_each_runs_order() -> None:
    backend, committer = _gated(commit_concurrency=2)
    committer.put(Append("j1", 1, b"x"))
    await eventually(lambda: len(backend.started) >= 1)
    assert [_keys(b) for b in backend.started] == [[("j1", 1)]]
    # j1 is in flight: its next items wait; j2's go into a second transaction.
    committer.put(Append("j1", 2, b"x"))
    committer.put(Append("j2", 1, b"x"))
    end = _finish("j1", 3)
    committer.put(end)
    await eventually(lambda: len(backend.started) >= 2)
    assert [_keys(b) for b in backend.started] == [[("j1", 1)], [("j2", 1)]]
    # Both slots taken: nothing more starts until one ends.
    committer.put(Append("j3", 1, b"x"))
    await asyncio.sleep(SECOND / 20)
    assert len(backend.started) == 2
    backend.gates[1].set()  # j2's ends first: j1's items still wait for j1's batch
    await eventually(lambda: len(backend.started) >= 3)
    assert [_keys(b) for b in backend.started[2:]] == [[("j3", 1)]]
    flushed = asyncio.ensure_future(committer.flush())
    backend.gates[0].set()
    await eventually(lambda: len(backend.started) >= 4)
    assert [_keys(b) for b in backend.started[3:]] == [[("j1", 2), ("j1", 3)]]
    assert not flushed.done()  # j1's and j3's batches are still in flight
    backend.gates[2].set()
    backend.gates[3].set()
    await asyncio.wait_for(flushed, SECOND)
    assert end.done.done()
    await committer.close(SECOND)


async def test_a_create_behind_its_runs_writes_waits_with_the_rest_of_that_run() -> None:
    backend, committer = _gated(commit_concurrency=1)
    loop = asyncio.get_running_loop()
    committer.put(Finish("j1", "completed", 1, b"end", None, 0.0, loop.create_future()))
    committer.put(Create(record("j1"), loop.create_future()))  # a new run of that id
    committer.put(Append("j1", 1, b"x"))
    committer.put(Append("j2", 1, b"x"))
    await eventually(lambda: len(backend.started) >= 1)
    # The create would be applied before the finish of the old run: it waits, and
    # so does the new run's append; other runs go on.
    assert [_keys(b) for b in backend.started] == [[("j1", 1), ("j2", 1)]]
    backend.gates[0].set()
    await eventually(lambda: len(backend.started) >= 2)
    assert [_keys(b) for b in backend.started[1:]] == [[("j1", 0), ("j1", 1)]]
    backend.gates[1].set()
    await committer.close(SECOND)


async def test_a_create_past_its_deadline_fails_and_is_withdrawn() -> None:
    backend, committer = _gated(connect_timeout=SECOND / 10, finish_timeout=SECOND / 10)
    loop = asyncio.get_running_loop()
    committer.put(Append("j0", 1, b"x"))  # holds the only commit slot
    await eventually(lambda: len(backend.started) >= 1)
    create = Create(record("j1"), loop.create_future(), expires=loop.time() + SECOND / 10)
    committer.put(create)
    end = Finish("j2", "completed", 1, b"end", None, 0.0, loop.create_future(), loop.time())
    committer.put(end)
    with pytest.raises(StoreUnavailable, match="create not committed within"):
        await asyncio.wait_for(create.done, SECOND)
    with pytest.raises(StoreUnavailable, match="finish not committed within"):
        await asyncio.wait_for(end.done, SECOND)
    backend.gates[0].set()
    await eventually(lambda: len(backend.started) >= 2)
    # The create was withdrawn; the finish that missed its deadline still commits.
    assert [_keys(b) for b in backend.started[1:]] == [[("j2", 1)]]
    backend.gates[1].set()
    await committer.close(SECOND)
