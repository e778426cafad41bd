"""Durable runs on one server process: what reaches the store, and what does not
(PROTOCOL.md §5), and the answers for unknown and duplicate job ids."""

from __future__ import annotations

from pathlib import Path

from tests.durable.helpers import StoreDb, serving
from tests.support.client import connect
from tests.support.frames import as_stored, is_ack, run_messages, seqs
from tests.support.graphs import progress_graph
from tests.support.timing import LONG_TIMEOUT, SECOND
from tests.support.waiting import eventually


async def test_ephemeral_run_writes_nothing_to_the_store(store: StoreDb, tmp_path: Path) -> None:
    async with serving(store.url, tmp_path) as server, connect(server) as client:
        ephemeral = await client.run_job(progress_graph(3, 0), durable=False)
        received = await client.receive_until_terminal(ephemeral)
        assert received[-1].frame["status"] == "completed"
        # A durable run after it: the store commits in order, so anything queued for
        # the ephemeral run would be committed by the time this one has finished.
        durable = await client.run_job(progress_graph(3, 0), durable=True)
        assert (await client.until_terminal(durable))[-1]["status"] == "completed"

        assert await store.run(ephemeral) is None
        assert await store.frames(ephemeral) == []
        assert await store.count("noderun_runs") == 1
        assert await store.count("noderun_frames") == len(await store.frame_rows(durable))


async def test_durable_run_stores_its_row_and_the_exact_bytes_of_every_frame(
    store: StoreDb, tmp_path: Path
) -> None:
    async with serving(store.url, tmp_path) as server, connect(server) as client:
        job_id = await client.run_job(progress_graph(3, 0), durable=True)
        received = [await client.receive()]
        assert is_ack(received[0].frame), received[0].frame
        assert await store.run(job_id) is not None  # committed before the ack
        received += await client.receive_until_terminal(job_id)

        messages = run_messages(received, job_id)
        assert len(messages) == len(received) - 1
        assert seqs(messages) == list(range(1, len(messages) + 1))
        terminal = messages[-1]
        assert terminal.frame["status"] == "completed"
        assert terminal.frame["result"] == {"outputs": {"steps": [3]}}
        kinds = {item.frame["type"] for item in messages}
        assert {"job_update", "node_update", "node_progress", "output_update"} <= kinds

        run = await store.run(job_id)
        assert run is not None
        assert (run.status, run.error, run.last_seq) == ("completed", None, len(messages))
        assert run.terminal_frame == terminal.raw
        assert await store.frames(job_id) == as_stored(messages)


async def test_reconnect_to_an_unknown_job_is_failed_job_not_found(
    store: StoreDb, tmp_path: Path
) -> None:
    async with serving(store.url, tmp_path) as server, connect(server) as client:
        await client.reconnect("no-such-job")
        answer = await client.recv()
        assert answer["type"] == "job_update"
        assert (answer["job_id"], answer["status"]) == ("no-such-job", "failed")
        assert answer["error"] == "job not found"


async def test_duplicate_durable_job_id_while_running_gets_an_error_ack(
    store: StoreDb, tmp_path: Path
) -> None:
    """The second run_job is refused; the first run goes on and is the one stored."""
    async with serving(store.url, tmp_path) as server, connect(server) as client:
        job_id = await client.run_job(progress_graph(100, SECOND / 10), durable=True)
        received = await client.receive_until(lambda frame: frame.get("type") == "node_progress")
        await client.run_job(progress_graph(1, 0), job_id=job_id, durable=True)
        received += await client.receive_until(
            lambda frame: "error" in frame and "job_seq" not in frame
        )
        refusal = received[-1].frame
        assert refusal["error"] == "job_already_running", refusal
        assert refusal["job_id"] == job_id

        await client.cancel(job_id)
        received += await client.receive_until_terminal(job_id)
        assert received[-1].frame["status"] == "cancelled"
        assert [item.frame for item in received if is_ack(item.frame)] == [
            {"message": "Job started", "job_id": job_id, "workflow_id": "wf"}
        ]
        messages = run_messages(received, job_id)
        assert seqs(messages) == list(range(1, len(messages) + 1))
        run = await store.run(job_id)
        assert run is not None and run.status == "cancelled"
        assert await store.frames(job_id) == as_stored(messages)
        # The refused run never ran: a run of 100 steps was cancelled, none reported 1/1.
        assert all(
            item.frame.get("total") != 1
            for item in messages
            if item.frame["type"] == "node_progress"
        )


async def test_job_id_of_a_finished_durable_run_can_be_used_again(
    store: StoreDb, tmp_path: Path
) -> None:
    """The new run replaces the old one in the store, frames included."""
    async with serving(store.url, tmp_path) as server, connect(server) as client:
        job_id = await client.run_job(progress_graph(5, 0), durable=True)
        first = run_messages(await client.receive_until_terminal(job_id), job_id)
        await client.run_job(progress_graph(1, 0), job_id=job_id, durable=True)
        received = await client.receive_until_terminal(job_id)
        assert is_ack(received[0].frame)
        second = run_messages(received, job_id)
        assert len(second) < len(first)
        assert second[-1].frame["result"] == {"outputs": {"steps": [1]}}
        assert await store.frames(job_id) == as_stored(second)

        await client.reconnect(job_id)
        replayed = run_messages(await client.receive_until_terminal(job_id), job_id)
        assert as_stored(replayed) == as_stored(second)


async def test_durable_run_goes_on_when_its_client_disconnects_right_after_run_job(
    store: StoreDb, tmp_path: Path
) -> None:
    """PROTOCOL.md §4: a run does not depend on its connection, even while its row is
    being committed; no row is left ``running`` with nothing running it."""
    async with serving(store.url, tmp_path) as server:
        job_ids = []
        for _ in range(30):
            async with connect(server) as client:
                job_ids.append(await client.run_job(progress_graph(1, 0), durable=True))

        async def all_completed() -> bool:
            runs = [await store.run(job_id) for job_id in job_ids]
            return all(run is not None and run.status == "completed" for run in runs)

        await eventually(all_completed, LONG_TIMEOUT)
