"""One truth per durable run (PROTOCOL.md §5): a server whose lease lapsed, and whose run
another server failed as interrupted meanwhile, cannot finish that run differently; its
finish resolves to the terminal the store holds, and the run's node work is cancelled.

Two store instances on one database stand for two servers. The owner's lease lapses
because it does not beat within the sweeper's lease (as when its database link is cut).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from noderun.contract import RunStore, StoredFrame
from noderun.persistence import INTERRUPTED_ERROR, open_store
from noderun.persistence.postgres import PostgresBackend
from noderun.persistence.postgres_listener import Listener
from tests.support.timing import SECOND
from tests.support.waiting import eventually

from .helpers import fast_options, frame, record, started, terminal

#: The owner never beats within the test; the sweeper's short lease judges it dead.
_OWNER: dict[str, Any] = {"heartbeat_interval": SECOND * 60, "lease_timeout": SECOND * 120}
_SWEEPER: dict[str, Any] = {"heartbeat_interval": SECOND / 20, "lease_timeout": SECOND / 2}


async def _failed_by_sweep(store: RunStore, job_id: str) -> None:
    async def failed() -> bool:
        run = await store.get_run(job_id)
        return run is not None and run.status == "failed"

    await eventually(failed)


async def test_a_finish_after_the_run_was_failed_elsewhere_resolves_to_the_stored_one(
    store_url: str,
) -> None:
    async with started(store_url, **_OWNER) as owner:
        await owner.create_run(record("kept"))
        # A run still owned commits its own terminal: nothing to publish instead.
        assert await owner.finish("kept", "completed", 1, terminal("kept", 1), None) is None
        await owner.create_run(record("j1"))
        owner.append("j1", 1, frame("j1", 1))
        async with started(store_url, **_SWEEPER) as sweeper:
            await _failed_by_sweep(sweeper, "j1")
            stored = await owner.finish("j1", "completed", 2, terminal("j1", 2), None)
            assert isinstance(stored, StoredFrame)
            assert stored.seq == 2
            message = msgspec.msgpack.decode(stored.frame)
            assert (message["status"], message["error"]) == ("failed", INTERRUPTED_ERROR)
            assert (message["job_id"], message["workflow_id"]) == ("j1", "wf")
            for store in (owner, sweeper):
                run = await store.get_run("j1")
                assert run is not None
                assert (run.status, run.error) == ("failed", INTERRUPTED_ERROR)
                assert await store.read_frames("j1", 1) == [stored]
            kept = await sweeper.get_run("kept")
            assert kept is not None and kept.status == "completed"


async def test_a_write_of_a_run_failed_elsewhere_cancels_its_node_work(store_url: str) -> None:
    async with started(store_url, **_OWNER) as owner:
        cancels: asyncio.Queue[str] = asyncio.Queue()
        owner.on_cancel_request(cancels.put_nowait)
        await owner.create_run(record("j1"))
        await owner.create_run(record("other"))
        async with started(store_url, **_SWEEPER) as sweeper:
            await _failed_by_sweep(sweeper, "j1")
            await _failed_by_sweep(sweeper, "other")
            owner.append("j1", 1, frame("j1", 1))
            assert await asyncio.wait_for(cancels.get(), SECOND * 5) == "j1"
            # Its frame was not stored after the interrupted terminal.
            assert [f.seq for f in await sweeper.read_frames("j1", 0)] == [1]
            stored = msgspec.msgpack.decode((await sweeper.read_frames("j1", 0))[0].frame)
            assert stored["error"] == INTERRUPTED_ERROR
            # The run that wrote nothing is not cancelled by that commit.
            assert cancels.empty()


async def test_a_finish_of_a_run_whose_row_is_gone_gets_an_interrupted_terminal(
    store_url: str,
) -> None:
    """A finish of a run whose row was failed and then deleted (retention) or replaced
    by a newer run cannot be the outcome: it resolves to ``interrupted``."""
    async with started(store_url, **_OWNER) as owner:
        await owner.create_run(record("j1", workflow_id="wf-1"))
        async with started(store_url, **_SWEEPER) as sweeper:
            await _failed_by_sweep(sweeper, "j1")
            await sweeper.create_run(record("j1", workflow_id="newer"))
            end = msgspec.msgpack.encode(
                {"type": "job_update", "job_id": "j1", "workflow_id": "wf-1", "job_seq": 4}
            )
            stored = await owner.finish("j1", "completed", 4, end, None)
            assert isinstance(stored, StoredFrame)
            message = msgspec.msgpack.decode(stored.frame)
            assert (stored.seq, message["job_seq"]) == (4, 4)
            assert (message["status"], message["error"]) == ("failed", INTERRUPTED_ERROR)
            assert message["workflow_id"] == "wf-1"
            newer = await sweeper.get_run("j1")
            assert newer is not None
            assert (newer.status, newer.workflow_id) == ("running", "newer")


async def test_an_earlier_start_of_the_same_server_id_cannot_touch_the_new_ones_runs(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each start of a server id is an owner of its own (an epoch). An earlier start
    still alive, e.g. cut off from the store while its id was started again elsewhere,
    cannot finish its runs the new start failed, nor fail the new start's runs when it
    stops."""
    async with started(store_url, server_id="srv-1", **_OWNER) as before:
        await before.create_run(record("old"))
        after = open_store(store_url, server_id="srv-1", options=fast_options(**_OWNER))
        # As if the earlier start had lost its claim on the id with its link.
        backend = after.backend
        if isinstance(backend, PostgresBackend):

            async def no_claim(*args: object, **kwargs: object) -> None:
                pass

            # The listener is made when the store opens; the earlier start's has
            # claimed the id already.
            monkeypatch.setattr(Listener, "_claim", no_claim)
        else:
            monkeypatch.setattr(backend, "_claim_server_id", lambda: None)
        await after.start()
        try:
            old = await after.get_run("old")
            assert old is not None and (old.status, old.error) == ("failed", INTERRUPTED_ERROR)
            await after.create_run(record("new"))
            stored = await before.finish("old", "completed", 1, terminal("old", 1), None)
            assert isinstance(stored, StoredFrame)
            assert msgspec.msgpack.decode(stored.frame)["error"] == INTERRUPTED_ERROR
            before.append("new", 1, frame("new", 1))  # not its run, though of its id
            await before.close()
            new = await after.get_run("new")
            assert new is not None and new.status == "running"
            assert await after.read_frames("new", 0) == []
            assert await after.finish("new", "completed", 1, terminal("new", 1), None) is None
        finally:
            await after.close()
