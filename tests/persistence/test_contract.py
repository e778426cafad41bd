"""The RunStore contract, run against every store (sqlite and PostgreSQL).

Several store instances on one database stand for several server processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import msgspec
import pytest

from noderun.contract import RunStore, StoredFrame
from noderun.persistence import (
    INTERRUPTED_ERROR,
    RunExists,
    ServerIdInUse,
    StoreUnavailable,
    open_store,
    run_retention,
)
from noderun.persistence.store import Store
from tests.support.timing import SECOND
from tests.support.waiting import eventually

from .helpers import Follower, fast_options, frame, record, started, terminal


async def _committed(store: RunStore, job_id: str, count: int) -> None:
    async def check() -> bool:
        return len(await store.read_frames(job_id, 0)) >= count

    await eventually(check)


async def test_start_creates_schema_once_even_when_servers_start_together(store_url: str) -> None:
    """Concurrent starts on an empty database, a repeated start and a restart all work,
    and every instance sees the same data."""
    first = open_store(store_url, options=fast_options())
    second = open_store(store_url, options=fast_options())
    await asyncio.gather(first.start(), second.start())
    try:
        await first.start()  # a second start of a started store is a no-op
        await first.create_run(record("j1"))
        assert (await second.get_run("j1")) is not None
    finally:
        await asyncio.gather(first.close(), second.close())
    async with started(store_url) as third:
        run = await third.get_run("j1")
        assert run is not None
        assert run.status == "failed"  # its owner closed while it was running


async def test_create_run_rejects_an_id_that_is_still_running(store_url: str) -> None:
    async with started(store_url) as a, started(store_url) as b:
        await a.create_run(record("j1"))
        with pytest.raises(RunExists) as caught:
            await b.create_run(record("j1"))
        assert caught.value.job_id == "j1"
        assert caught.value.status == "running"
        run = await a.get_run("j1")
        assert run is not None
        assert run.server_id == a.server_id


async def test_create_run_replaces_a_finished_run_and_its_frames(store_url: str) -> None:
    async with started(store_url) as store:
        await store.create_run(record("j1", workflow_id="old"))
        store.append("j1", 1, frame("j1", 1))
        await store.finish("j1", "completed", 2, terminal("j1", 2), None)
        await store.create_run(record("j1", workflow_id="new"))
        run = await store.get_run("j1")
        assert run is not None
        assert (run.workflow_id, run.status, run.last_seq) == ("new", "running", 0)
        assert await store.read_frames("j1", 0) == []


async def test_appends_and_finish_are_stored_in_order_with_exact_bytes(store_url: str) -> None:
    async with started(store_url) as store:
        await store.create_run(record("j1"))
        await store.create_run(record("j2"))
        expected: dict[str, list[StoredFrame]] = {"j1": [], "j2": []}
        for seq in range(1, 501):
            for job_id in ("j1", "j2"):
                data = frame(job_id, seq, size=seq % 7 * 100)
                store.append(job_id, seq, data)
                expected[job_id].append(StoredFrame(seq, data))
        end = terminal("j1", 501)
        before = time.time()
        await store.finish("j1", "completed", 501, end, None)
        expected["j1"].append(StoredFrame(501, end))

        assert await store.read_frames("j1", 0) == expected["j1"]
        run = await store.get_run("j1")
        assert run is not None
        assert (run.status, run.last_seq, run.error, run.terminal_frame) == (
            "completed",
            501,
            None,
            end,
        )
        assert run.finished_at is not None and run.finished_at >= before - 1
        await _committed(store, "j2", 500)
        assert await store.read_frames("j2", 0) == expected["j2"]


async def test_finish_records_error_and_status(store_url: str) -> None:
    async with started(store_url) as store:
        await store.create_run(record("j1"))
        await store.finish("j1", "failed", 1, terminal("j1", 1, "failed"), "boom")
        run = await store.get_run("j1")
        assert run is not None
        assert (run.status, run.error, run.finished) == ("failed", "boom", True)


async def test_read_frames_returns_only_frames_after_the_position(store_url: str) -> None:
    async with started(store_url) as store:
        await store.create_run(record("j1"))
        for seq in range(1, 11):
            store.append("j1", seq, frame("j1", seq))
        await store.finish("j1", "completed", 11, terminal("j1", 11), None)
        assert [f.seq for f in await store.read_frames("j1", 7)] == [8, 9, 10, 11]
        assert await store.read_frames("j1", 11) == []
        assert await store.read_frames("unknown", 0) == []
        assert await store.get_run("unknown") is None


async def _collect(store: RunStore, job_id: str, after_seq: int) -> list[StoredFrame]:
    return [stored async for stored in store.follow(job_id, after_seq)]


async def _follow_while_writing(writer: RunStore, reader: RunStore) -> None:
    await writer.create_run(record("j1"))
    for seq in range(1, 4):
        writer.append("j1", seq, frame("j1", seq))
    await _committed(writer, "j1", 3)
    follower = Follower(reader, "j1", 1)
    await eventually(lambda: follower.seqs == [2, 3])  # replayed; now it waits
    assert not follower.task.done()
    for seq in range(4, 7):  # each live frame reaches it once committed
        writer.append("j1", seq, frame("j1", seq))
        await eventually(lambda: follower.seqs[-1] == seq)  # noqa: B023 (awaited here)
    await writer.finish("j1", "completed", 7, terminal("j1", 7), None)
    got = await asyncio.wait_for(follower.task, SECOND * 5)
    assert [f.seq for f in got] == [2, 3, 4, 5, 6, 7]
    assert got[-1].frame == terminal("j1", 7)
    assert got[0].frame == frame("j1", 2)


async def test_follow_replays_then_streams_live_frames_until_the_terminal(store_url: str) -> None:
    async with started(store_url) as store:
        await _follow_while_writing(store, store)


async def test_follow_works_from_another_server(store_url: str) -> None:
    async with started(store_url) as owner, started(store_url) as other:
        await _follow_while_writing(owner, other)


async def test_follow_of_unknown_or_finished_run_ends(store_url: str) -> None:
    async with started(store_url) as store:
        assert await asyncio.wait_for(_collect(store, "nope", 0), SECOND) == []
        await store.create_run(record("j1"))
        store.append("j1", 1, frame("j1", 1))
        await store.finish("j1", "cancelled", 2, terminal("j1", 2, "cancelled"), None)
        got = await asyncio.wait_for(_collect(store, "j1", 0), SECOND)
        assert [f.seq for f in got] == [1, 2]


async def test_start_fails_runs_of_dead_servers_but_not_of_live_ones(store_url: str) -> None:
    """A server that stopped heartbeating (crashed) loses its runs to the next start;
    a live server's runs are left alone."""
    # "dead" never heartbeats again within the test, like a killed process.
    async with (
        started(store_url, heartbeat_interval=SECOND * 60, lease_timeout=SECOND * 120) as dead,
        started(store_url, heartbeat_interval=SECOND / 20, lease_timeout=SECOND * 120) as live,
    ):
        await dead.create_run(record("crashed", workflow_id="wf-c"))
        for seq in (1, 2):
            dead.append("crashed", seq, frame("crashed", seq))
        await _committed(dead, "crashed", 2)
        await live.create_run(record("alive"))
        await asyncio.sleep(SECOND * 0.7)

        async with started(
            store_url, heartbeat_interval=SECOND / 10, lease_timeout=SECOND / 2
        ) as new:
            run = await new.get_run("crashed")
            assert run is not None
            assert (run.status, run.error, run.last_seq) == ("failed", INTERRUPTED_ERROR, 3)
            frames = await new.read_frames("crashed", 2)
            assert [f.seq for f in frames] == [3]
            assert run.terminal_frame == frames[0].frame
            assert msgspec.msgpack.decode(frames[0].frame) == {
                "type": "job_update",
                "status": "failed",
                "job_id": "crashed",
                "workflow_id": "wf-c",
                "error": INTERRUPTED_ERROR,
                "job_seq": 3,
                "message": None,
                "result": None,
                "duration": None,
                "run_state": None,
            }
            alive = await new.get_run("alive")
            assert alive is not None and alive.status == "running"
            # A follower of the interrupted run gets the terminal frame and ends.
            got = await asyncio.wait_for(_collect(new, "crashed", 0), SECOND)
            assert [f.seq for f in got] == [1, 2, 3]


async def test_heartbeat_sweep_fails_runs_of_a_server_that_dies_later(store_url: str) -> None:
    async with started(
        store_url, heartbeat_interval=SECOND * 60, lease_timeout=SECOND * 120
    ) as dead:
        await dead.create_run(record("crashed"))
        async with started(
            store_url, heartbeat_interval=SECOND / 20, lease_timeout=SECOND / 2
        ) as b:
            follower = asyncio.create_task(_collect(b, "crashed", 0))
            got = await asyncio.wait_for(follower, SECOND * 5)
            assert [f.seq for f in got] == [1]
            run = await b.get_run("crashed")
            assert run is not None and run.error == INTERRUPTED_ERROR


async def test_a_second_live_store_with_the_same_server_id_refuses_to_start(
    store_url: str,
) -> None:
    """A server fails the runs its id left running when it starts, so a second live one
    with that id must not start: it fails, touching nothing. (A restart after a crash,
    which must fail them, is tested with real processes in tests/durable/test_crash.py.)"""
    async with started(
        store_url, server_id="srv-1", heartbeat_interval=SECOND * 60, lease_timeout=SECOND * 120
    ) as live:
        await live.create_run(record("j1"))
        twin = open_store(store_url, server_id="srv-1", options=fast_options())
        with pytest.raises(ServerIdInUse) as raised:
            await twin.start()
        assert raised.value.server_id == "srv-1"
        assert "srv-1" in str(raised.value)
        with pytest.raises(StoreUnavailable):
            twin.create_run(record("j2"))
        run = await live.get_run("j1")
        assert run is not None and run.status == "running"
        assert await live.finish("j1", "completed", 1, terminal("j1", 1), None) is None
    async with started(store_url, server_id="srv-1") as after:  # free again once closed
        run = await after.get_run("j1")
        assert run is not None and run.status == "completed"


async def test_close_fails_runs_still_running(store_url: str) -> None:
    async with started(store_url) as store:
        await store.create_run(record("j1"))
        store.append("j1", 1, frame("j1", 1))
    async with started(store_url) as other:
        run = await other.get_run("j1")
        assert run is not None
        assert (run.status, run.error, run.last_seq) == ("failed", INTERRUPTED_ERROR, 2)


async def test_request_cancel_reaches_the_owning_server(store_url: str) -> None:
    async with started(store_url) as owner, started(store_url) as other:
        cancelled: asyncio.Queue[str] = asyncio.Queue()
        owner.on_cancel_request(cancelled.put_nowait)
        other_calls: list[str] = []
        other.on_cancel_request(other_calls.append)
        await owner.create_run(record("j1"))

        assert await other.request_cancel("j1") is True
        assert await asyncio.wait_for(cancelled.get(), SECOND * 2) == "j1"

        assert await owner.request_cancel("j1") is True  # the owner itself asks too
        assert await asyncio.wait_for(cancelled.get(), SECOND * 2) == "j1"
        assert other_calls == []

        await owner.finish("j1", "cancelled", 1, terminal("j1", 1, "cancelled"), None)
        assert await other.request_cancel("j1") is False
        assert await other.request_cancel("unknown") is False


async def test_delete_finished_before_removes_old_finished_runs_only(store_url: str) -> None:
    async with started(store_url) as store:
        for job_id in ("old1", "old2", "running"):
            await store.create_run(record(job_id))
            store.append(job_id, 1, frame(job_id, 1))
        for job_id in ("old1", "old2"):
            await store.finish(job_id, "completed", 2, terminal(job_id, 2), None)
        assert await store.delete_finished_before(time.time() - 3600) == 0
        assert await store.delete_finished_before(time.time() + 1) == 2
        assert await store.get_run("old1") is None
        assert await store.read_frames("old1", 0) == []
        assert await store.get_run("running") is not None
        await _committed(store, "running", 1)


async def test_group_commit_handles_many_runs_at_once(store_url: str) -> None:
    async with started(store_url) as store:
        job_ids = [f"j{i}" for i in range(40)]
        for job_id in job_ids:
            await store.create_run(record(job_id))
        for seq in range(1, 101):
            for job_id in job_ids:
                store.append(job_id, seq, frame(job_id, seq))
        await asyncio.gather(
            *(store.finish(j, "completed", 101, terminal(j, 101), None) for j in job_ids)
        )
        for job_id in job_ids:
            stored = await store.read_frames(job_id, 0)
            assert [f.seq for f in stored] == list(range(1, 102))


async def test_unreachable_store_fails_start_fast(store_kind: str, tmp_path: Path) -> None:
    url = {
        "postgres": "postgresql://postgres@127.0.0.1:1/postgres",
        "sqlite": f"sqlite:///{tmp_path}/missing-dir/runs.db",
    }[store_kind]
    store = open_store(url, options=fast_options())
    began = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await store.start()
    assert time.monotonic() - began < SECOND * 2
    assert caught.value.backend == store_kind
    with pytest.raises(StoreUnavailable):
        await store.create_run(record("j1"))
    await store.close()


async def test_run_retention_deletes_old_runs_periodically(store_url: str) -> None:
    async with started(store_url) as store:
        await store.create_run(record("j1"))
        await store.finish("j1", "completed", 1, terminal("j1", 1), None)
        await store.create_run(record("j2"))
        task = asyncio.create_task(run_retention(store, 0.0, SECOND / 20))
        try:

            async def deleted() -> bool:
                return await store.get_run("j1") is None

            await eventually(deleted)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert await store.get_run("j2") is not None


def _base(store: RunStore) -> Store:
    assert isinstance(store, Store)
    return store


async def test_concurrent_creates_share_few_transactions(store_url: str) -> None:
    """Creates ride the group commit: 200 at once cost a handful of transactions."""
    async with started(store_url) as store:
        before = _base(store).group_commits
        job_ids = [f"j{i}" for i in range(200)]
        await asyncio.gather(*(store.create_run(record(job_id)) for job_id in job_ids))
        assert 1 <= _base(store).group_commits - before <= 10
        for job_id in job_ids:
            run = await store.get_run(job_id)
            assert run is not None
            assert (run.status, run.server_id) == ("running", store.server_id)


async def test_creates_in_one_batch_fail_alone(store_url: str) -> None:
    """In one batch: the first of two creates of an id wins, a running id is refused,
    a finished run is replaced (its old frames gone), and the other creates commit."""
    async with started(store_url) as store:
        await store.create_run(record("running"))
        await store.create_run(record("done", workflow_id="old"))
        store.append("done", 1, frame("done", 1))
        await store.finish("done", "completed", 2, terminal("done", 2), None)
        before = _base(store).group_commits
        results = await asyncio.gather(
            store.create_run(record("dup", workflow_id="first")),
            store.create_run(record("dup", workflow_id="second")),
            store.create_run(record("running")),
            store.create_run(record("done", workflow_id="new")),
            store.create_run(record("fresh")),
            return_exceptions=True,
        )
        assert _base(store).group_commits - before == 1
        assert results[0] is None and results[3] is None and results[4] is None
        for refused, job_id in ((results[1], "dup"), (results[2], "running")):
            assert isinstance(refused, RunExists)
            assert (refused.job_id, refused.status) == (job_id, "running")
        dup = await store.get_run("dup")
        assert dup is not None and dup.workflow_id == "first"
        done = await store.get_run("done")
        assert done is not None
        assert (done.workflow_id, done.status, done.last_seq) == ("new", "running", 0)
        assert await store.read_frames("done", 0) == []
        assert await store.get_run("fresh") is not None


async def test_a_run_created_and_finished_in_one_batch_is_stored(store_url: str) -> None:
    async with started(store_url) as store:
        before = _base(store).group_commits
        create = store.create_run(record("j1"))  # queued; the writer has not run yet
        store.append("j1", 1, frame("j1", 1))
        await store.finish("j1", "completed", 2, terminal("j1", 2), None)
        await create
        assert _base(store).group_commits - before == 1
        run = await store.get_run("j1")
        assert run is not None
        assert (run.status, run.last_seq) == ("completed", 2)
        assert [f.seq for f in await store.read_frames("j1", 0)] == [1, 2]


async def test_a_run_with_an_empty_workflow_id_is_stored(store_url: str) -> None:
    """``workflow_id`` defaults to "" in PROTOCOL.md §2.1: a value, not a missing one."""
    async with started(store_url) as store:
        created = store.create_run(record("j1", workflow_id=""))
        await asyncio.gather(created, store.finish("j1", "completed", 1, terminal("j1", 1), None))
        run = await store.get_run("j1")
        assert run is not None
        assert (run.workflow_id, run.status, run.last_seq) == ("", "completed", 1)


async def test_an_orphan_row_is_failed_after_the_frames_it_committed(store_url: str) -> None:
    """A row committed after its creator gave up (``Create.abandoned``) is failed as
    interrupted, its terminal numbered after its frames, as crash recovery does."""
    async with started(store_url) as store:
        await store.create_run(record("j1"))
        for seq in (1, 2, 3):
            store.append("j1", seq, frame("j1", seq))
        await _base(store)._committer.flush()
        _base(store)._finish_orphan(record("j1"))

        async def failed() -> bool:
            run = await store.get_run("j1")
            return run is not None and run.finished

        await eventually(failed)

        async def forgotten() -> bool:  # the orphan's task leaves the store's task list
            return not any(t.get_name().endswith("orphan") for t in _base(store)._tasks)

        await eventually(forgotten)
        run = await store.get_run("j1")
        assert run is not None
        assert (run.status, run.error, run.last_seq) == ("failed", INTERRUPTED_ERROR, 4)
        stored = await store.read_frames("j1", 0)
        assert [f.seq for f in stored] == [1, 2, 3, 4]
        assert stored[-1].frame == run.terminal_frame
        store.append("j1", 5, frame("j1", 5))  # late frame of the abandoned run: dropped
        await _base(store)._committer.flush()
        assert [f.seq for f in await store.read_frames("j1", 0)] == [1, 2, 3, 4]
