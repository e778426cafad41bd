"""Two server processes on one store (PROTOCOL.md §4: durable runs can be reconnected
from any process that shares the store): following, cancelling and job-id clashes
across processes. PostgreSQL notifies the other process; sqlite is polled."""

from __future__ import annotations

from pathlib import Path

from tests.durable.helpers import INTERRUPTED, StoreDb, serving
from tests.support.client import connect
from tests.support.frames import as_stored, run_messages, seqs
from tests.support.graphs import progress_graph
from tests.support.timing import LONG_TIMEOUT, SECOND
from tests.support.waiting import eventually


async def test_reconnect_on_another_server_replays_then_follows_live(
    store: StoreDb, tmp_path: Path
) -> None:
    async with (
        serving(store.url, tmp_path) as owner,
        serving(store.url, tmp_path) as other,
        connect(owner) as on_owner,
        connect(other) as on_other,
    ):
        job_id = await on_owner.run_job(progress_graph(10, SECOND / 10), durable=True)
        seen = await on_owner.receive_until(lambda frame: frame.get("type") == "node_progress")
        # The same id on the other server while the run goes on: refused by the store.
        await on_other.run_job(progress_graph(1, 0), job_id=job_id, durable=True)
        refusal = await on_other.recv()
        assert refusal["error"] == "job_already_running", refusal
        assert refusal["job_id"] == job_id

        # The SDK repeats reconnect_job every 2 s; here the repeat comes before the
        # first one is answered, which must not start a second stream either.
        await on_other.reconnect(job_id)
        await on_other.reconnect(job_id)
        followed = await on_other.receive_until_terminal(job_id)
        seen += await on_owner.receive_until_terminal(job_id)

    sent = run_messages(seen, job_id)
    assert sent[-1].frame["status"] == "completed"
    resumed = [item.frame for item in followed if item.frame.get("type") == "job_resumed"]
    assert len(resumed) == 2
    # The run was still going: some messages came live, after the replay. The repeat
    # replays nothing (its answer may come first: both read the store).
    assert [frame["status"] for frame in resumed] == ["running", "running"]
    replay_counts = sorted(frame["replay_count"] for frame in resumed)
    assert replay_counts[0] == 0
    assert replay_counts[1] < len(sent)
    assert [frame["workflow_id"] for frame in resumed] == ["wf", "wf"]
    messages = run_messages(followed, job_id)
    assert len(messages) == len(followed) - 2
    assert seqs(messages) == list(range(1, len(sent) + 1))
    assert as_stored(messages) == as_stored(sent)
    assert await store.frames(job_id) == as_stored(sent)


async def test_cancel_sent_to_another_server_cancels_the_run(
    store: StoreDb, tmp_path: Path
) -> None:
    async with (
        serving(store.url, tmp_path) as owner,
        serving(store.url, tmp_path) as other,
        connect(owner) as on_owner,
        connect(other) as on_other,
    ):
        job_id = await on_owner.run_job(progress_graph(1000, SECOND / 10), durable=True)
        seen = await on_owner.receive_until(lambda frame: frame.get("type") == "node_progress")
        await on_other.reconnect(job_id)
        followed = await on_other.receive_until(lambda frame: frame.get("type") == "node_progress")

        await on_other.cancel(job_id)
        followed += await on_other.receive_until(
            lambda frame: frame.get("message") == "Job cancellation requested"
        )
        assert followed[-1].frame == {
            "message": "Job cancellation requested",
            "job_id": job_id,
            "workflow_id": "wf",
        }
        followed += await on_other.receive_until_terminal(job_id)
        seen += await on_owner.receive_until_terminal(job_id)
        # Finished now: a second cancel finds nothing to cancel, on either server.
        for client in (on_other, on_owner):
            await client.cancel(job_id)
            answer = await client.recv()
            assert answer == {"error": "Job not found or already completed", "job_id": job_id}

    sent = run_messages(seen, job_id)
    assert sent[-1].frame["status"] == "cancelled"
    assert sent[-1].frame["message"] == "cancelled by client"
    messages = run_messages(followed, job_id)
    assert seqs(messages) == list(range(1, len(sent) + 1))
    assert as_stored(messages) == as_stored(sent)
    run = await store.run(job_id)
    assert run is not None and run.status == "cancelled"


async def test_follower_on_another_server_sees_the_owner_killed_as_interrupted(
    store: StoreDb, tmp_path: Path
) -> None:
    """The surviving server fails the dead server's run once its lease expires, and its
    own follower of that run gets the terminal message."""
    async with (
        serving(store.url, tmp_path) as owner,
        serving(store.url, tmp_path) as other,
        connect(other) as on_other,
    ):
        async with connect(owner) as on_owner:
            job_id = await on_owner.run_job(progress_graph(1000, SECOND / 10), durable=True)
            await on_owner.receive_until(lambda frame: frame.get("type") == "node_progress")
            await on_other.reconnect(job_id)
            followed = await on_other.receive_until(
                lambda frame: frame.get("type") == "node_progress"
            )
            await owner.kill()
        followed += await on_other.receive_until_terminal(job_id, SECOND * 15)

        async def stored_as_failed() -> bool:
            run = await store.run(job_id)
            return run is not None and run.status == "failed"

        await eventually(stored_as_failed, LONG_TIMEOUT)

    messages = run_messages(followed, job_id)
    assert seqs(messages) == list(range(1, len(messages) + 1))
    assert messages[-1].frame["status"] == "failed"
    assert messages[-1].frame["error"] == INTERRUPTED
    assert await store.frames(job_id) == as_stored(messages)
