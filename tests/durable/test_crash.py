"""``kill -9`` of a server: a new server on the same store reports what the store holds
(PROTOCOL.md §5): runs in flight end ``failed`` ``interrupted: server stopped``, finished
runs keep their result."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.durable.helpers import INTERRUPTED, ServerProcess, StoreDb, serving
from tests.support.client import connect
from tests.support.frames import Received, as_stored, run_messages, seqs
from tests.support.graphs import progress_graph
from tests.support.timing import LONG_TIMEOUT, SECOND
from tests.support.waiting import eventually


def _check_replay(replayed: list[Received], seen: list[Received]) -> None:
    """Replayed messages are numbered 1..n, and each is byte for byte the message of
    that ``job_seq`` the first server sent (when the client got that far)."""
    assert seqs(replayed) == list(range(1, len(replayed) + 1))
    sent = {item.frame["job_seq"]: item.raw for item in seen}
    for item in replayed[:-1]:
        seq = item.frame["job_seq"]
        if seq in sent:
            assert item.raw == sent[seq], f"job_seq {seq} differs from what the client saw"


async def test_run_killed_mid_run_is_reported_interrupted_by_the_next_server(
    store: StoreDb, tmp_path: Path
) -> None:
    async with serving(store.url, tmp_path) as first, connect(first) as client:
        job_id = await client.run_job(progress_graph(1000, SECOND / 10), durable=True)
        seen = await client.receive_until(
            lambda frame: frame.get("type") == "node_progress" and frame["progress"] >= 3
        )

        async def some_committed() -> bool:
            return len(await store.frames(job_id)) >= 4

        await eventually(some_committed, LONG_TIMEOUT)
        await first.kill()
    seen = run_messages(seen, job_id)
    committed = await store.frames(job_id)
    run = await store.run(job_id)
    assert run is not None and run.status == "running"

    async with serving(store.url, tmp_path) as second, connect(second) as client:
        await client.reconnect(job_id)
        # The killed server's lease must expire before the new one fails its run.
        received = await client.receive_until_terminal(job_id, SECOND * 15)
        # A client that got messages the killed server never committed (so its position
        # is past the interrupted terminal's job_seq) still gets the terminal message.
        async with connect(second) as late:
            await late.reconnect(job_id, after_seq=received[-1].frame["job_seq"] + 10)
            caught_up = await late.receive_until_terminal(job_id)

    resumed = received[0].frame
    assert resumed["type"] == "job_resumed"
    assert (resumed["job_id"], resumed["workflow_id"]) == (job_id, "wf")
    assert resumed["status"] in ("running", "failed")
    replayed = run_messages(received, job_id)
    assert len(replayed) == len(received) - 1
    _check_replay(replayed, seen)
    assert as_stored(replayed[:-1]) == committed
    terminal = replayed[-1].frame
    assert (terminal["type"], terminal["status"]) == ("job_update", "failed")
    assert terminal["error"] == INTERRUPTED
    run = await store.run(job_id)
    assert run is not None
    assert (run.status, run.error, run.last_seq) == ("failed", INTERRUPTED, len(replayed))
    assert await store.frames(job_id) == as_stored(replayed)
    assert caught_up[0].frame["type"] == "job_resumed"
    assert [item.raw for item in caught_up[1:]] == [replayed[-1].raw]


async def test_run_finished_before_a_kill_keeps_its_result(store: StoreDb, tmp_path: Path) -> None:
    async with serving(store.url, tmp_path) as first, connect(first) as client:
        job_id = await client.run_job(progress_graph(3, 0), durable=True)
        seen = run_messages(await client.receive_until_terminal(job_id), job_id)
        assert seen[-1].frame["status"] == "completed"
        await first.kill()

    async with serving(store.url, tmp_path) as second, connect(second) as client:
        await client.reconnect(job_id)
        received = await client.receive_until_terminal(job_id)
        # Asked again on the same connection, it answers again (PROTOCOL.md §4).
        await client.reconnect(job_id)
        again = await client.receive_until_terminal(job_id)
        assert [item.raw for item in again] == [item.raw for item in received]

    resumed = received[0].frame
    assert resumed["type"] == "job_resumed"
    assert (resumed["status"], resumed["last_seq"]) == ("completed", len(seen))
    assert resumed["replay_count"] == len(seen)
    assert resumed["replay_incomplete"] is False
    replayed = run_messages(received, job_id)
    assert as_stored(replayed) == as_stored(seen)
    terminal = replayed[-1].frame
    assert terminal["status"] == "completed"
    assert terminal["result"] == {"outputs": {"steps": [3]}}


async def test_graceful_stop_cancels_durable_runs_and_stores_that(
    store: StoreDb, tmp_path: Path
) -> None:
    """SIGTERM is the designed shutdown: runs end ``cancelled`` with a reason, committed,
    so the next server replays that terminal message."""
    async with serving(store.url, tmp_path) as first, connect(first) as client:
        job_id = await client.run_job(progress_graph(1000, SECOND / 10), durable=True)
        await client.receive_until(lambda frame: frame.get("type") == "node_progress")
        await first.stop()
    run = await store.run(job_id)
    assert run is not None and run.status == "cancelled"

    async with serving(store.url, tmp_path) as second, connect(second) as client:
        await client.reconnect(job_id)
        received = await client.receive_until_terminal(job_id)
    replayed = run_messages(received, job_id)
    assert seqs(replayed) == list(range(1, len(replayed) + 1))
    terminal = replayed[-1].frame
    assert (terminal["status"], terminal["message"]) == ("cancelled", "server shutting down")
    assert await store.frames(job_id) == as_stored(replayed)


#: Leases far longer than any test: a run failed soon after a restart was failed by the
#: restarted server's own recovery, not by a lease expiring.
_NO_LEASE_EXPIRY = {
    "NODERUN_STORE_HEARTBEAT": str(SECOND * 300),
    "NODERUN_STORE_LEASE_TIMEOUT": str(SECOND * 600),
}


@pytest.mark.parametrize("identity", ["same port", "same --server-id"])
async def test_a_restarted_server_fails_its_runs_before_it_reports_ready(
    store: StoreDb, tmp_path: Path, identity: str
) -> None:
    """A server restarted after ``kill -9`` on the same store, with the same identity (by
    default host, directory and port; or an explicit server id on another port), reports
    its runs that were in flight ``failed: interrupted`` as soon as it is ready."""
    args = ("--server-id", "worker-7") if identity == "same --server-id" else ()
    async with serving(store.url, tmp_path, env=_NO_LEASE_EXPIRY, args=args) as first:
        async with connect(first) as client:
            job_id = await client.run_job(progress_graph(1000, SECOND / 10), durable=True)
            await client.receive_until(lambda frame: frame.get("type") == "node_progress")
        await first.kill()
    run = await store.run(job_id)
    assert run is not None and run.status == "running"
    port = first.port if identity == "same port" else None
    async with serving(store.url, tmp_path, env=_NO_LEASE_EXPIRY, args=args, port=port) as second:
        # Ready: the run was failed during start-up, no lease had to expire.
        run = await store.run(job_id)
        assert run is not None
        assert (run.status, run.error) == ("failed", INTERRUPTED)
        async with connect(second) as client:
            await client.reconnect(job_id)
            received = await client.receive_until_terminal(job_id)
    assert received[0].frame["status"] == "failed"
    terminal = received[-1].frame
    assert (terminal["status"], terminal["error"]) == ("failed", INTERRUPTED)


async def test_a_restart_under_another_identity_leaves_the_run_to_its_lease(
    store: StoreDb, tmp_path: Path
) -> None:
    """The control of the test above: on another port, without a server id, the new
    server is not the killed one and must wait for its lease (here: never)."""
    async with serving(store.url, tmp_path, env=_NO_LEASE_EXPIRY) as first:
        async with connect(first) as client:
            job_id = await client.run_job(progress_graph(1000, SECOND / 10), durable=True)
            await client.receive_until(lambda frame: frame.get("type") == "node_progress")
        await first.kill()
    async with serving(store.url, tmp_path, env=_NO_LEASE_EXPIRY):
        run = await store.run(job_id)
        assert run is not None and run.status == "running"


async def test_a_second_live_server_with_the_same_id_refuses_to_start(
    store: StoreDb, tmp_path: Path
) -> None:
    args = ("--server-id", "twin")
    async with serving(store.url, tmp_path, args=args) as live, connect(live) as client:
        job_id = await client.run_job(progress_graph(1000, SECOND / 10), durable=True)
        await client.receive_until(lambda frame: frame.get("type") == "node_progress")
        twin = ServerProcess(store.url, tmp_path, args=args)
        twin.spawn()
        try:
            code = await twin.wait_exit(SECOND * 15)
        finally:
            await twin.kill()
        assert code != 0
        assert "server id 'twin' is in use by another live server" in twin.log()
        # The live server's run was not touched, and it goes on.
        run = await store.run(job_id)
        assert run is not None and run.status == "running"
        await client.receive_until(lambda frame: frame.get("type") == "node_progress")
