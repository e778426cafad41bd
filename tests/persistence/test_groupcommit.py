"""The group-commit writer, against a fake backend: batching, ordering, failure handling."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from noderun.persistence import StoreOptions, StoreUnavailable, WriteRejected
from noderun.persistence.groupcommit import Append, Create, Finish, GroupCommitter, Item
from noderun.persistence.health import Health

from .helpers import WAIT


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
    values = {"retry_initial": WAIT / 100, "retry_max": WAIT / 50, **options}
    return GroupCommitter(
        backend.commit,
        health=Health("fake"),
        options=StoreOptions(**values),  # type: ignore[arg-type]
        on_committed=lambda batch: None,
    )


def _finish(job_id: str, seq: int) -> Finish:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    return Finish(job_id, "completed", seq, b"end", None, 0.0, done)


async def test_appends_queued_together_share_transactions_and_keep_order() -> None:
    backend = FakeBackend()
    committer = _committer(backend, batch_max=100)
    committer.start()
    for seq in range(1, 1001):
        committer.put(Append("j1", seq, b"x"))
    end = _finish("j1", 1001)
    committer.put(end)
    await asyncio.wait_for(end.done, WAIT)
    assert backend.committed == [("j1", seq) for seq in range(1, 1002)]
    assert len(backend.batches) == 11  # 1001 items, at most 100 per transaction
    await committer.close(WAIT)


async def test_unavailable_store_is_retried_without_losing_or_reordering() -> None:
    backend = FakeBackend()
    backend.down = True
    committer = _committer(backend)
    committer.start()
    for seq in (1, 2):
        committer.put(Append("j1", seq, b"x"))
    end = _finish("j1", 3)
    committer.put(end)
    await asyncio.sleep(WAIT / 10)
    assert backend.attempts > 2 and not end.done.done()
    backend.down = False
    await asyncio.wait_for(end.done, WAIT)
    assert backend.committed == [("j1", 1), ("j1", 2), ("j1", 3)]
    await committer.close(WAIT)


async def test_a_rejected_item_is_dropped_and_the_rest_commits() -> None:
    backend = FakeBackend()
    backend.reject_seq = 2
    committer = _committer(backend)
    committer.start()
    for seq in (1, 2, 3):
        committer.put(Append("j1", seq, b"x"))
    end = _finish("j1", 4)
    committer.put(end)
    await asyncio.wait_for(end.done, WAIT)
    assert backend.committed == [("j1", 1), ("j1", 3), ("j1", 4)]
    await committer.close(WAIT)


async def test_a_rejected_finish_fails_its_caller() -> None:
    backend = FakeBackend()
    backend.reject_seq = 1
    committer = _committer(backend)
    committer.start()
    end = _finish("j1", 1)
    committer.put(end)
    with pytest.raises(WriteRejected):
        await asyncio.wait_for(end.done, WAIT)
    await committer.close(WAIT)


async def test_full_queue_drops_appends_but_never_finishes() -> None:
    backend = FakeBackend()
    committer = _committer(backend, max_pending=2)
    assert committer.put(Append("j1", 1, b"x"))
    assert committer.put(Append("j1", 2, b"x"))
    assert not committer.put(Append("j1", 3, b"x"))
    end = _finish("j1", 4)
    assert committer.put(end)
    committer.start()
    await asyncio.wait_for(end.done, WAIT)
    assert backend.committed == [("j1", 1), ("j1", 2), ("j1", 4)]
    await committer.close(WAIT)


async def test_close_fails_finishes_it_could_not_commit() -> None:
    backend = FakeBackend()
    backend.down = True
    committer = _committer(backend)
    committer.start()
    end = _finish("j1", 1)
    committer.put(end)
    await committer.close(WAIT / 10)
    with pytest.raises(StoreUnavailable):
        await end.done
