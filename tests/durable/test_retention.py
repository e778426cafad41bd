"""``noderun serve --retention S``: a background task deletes finished durable runs (row
and frames) older than S seconds, never running ones; ``--retention 0`` keeps them all."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.durable.helpers import StoreDb, serving
from tests.support.client import connect
from tests.support.graphs import progress_graph
from tests.support.timing import LONG_TIMEOUT, SECOND
from tests.support.waiting import eventually


async def test_finished_runs_older_than_the_retention_are_deleted(
    store: StoreDb, tmp_path: Path
) -> None:
    async with (
        serving(store.url, tmp_path, args=["--retention", "1"]) as server,
        connect(server) as client,
    ):
        running = await client.run_job(progress_graph(1000, SECOND / 10), durable=True)
        await client.receive_until(lambda frame: frame.get("type") == "node_progress")
        finished = await client.run_job(progress_graph(3, 0), durable=True)
        terminal = (await client.receive_until_terminal(finished)).pop().frame
        assert terminal["status"] == "completed"

        async def deleted() -> bool:
            return await store.run(finished) is None and await store.frames(finished) == []

        await eventually(deleted, LONG_TIMEOUT)
        run = await store.run(running)
        assert run is not None and run.status == "running"
        assert await store.frames(running) != []


async def test_retention_zero_keeps_finished_runs(sqlite_url: str, tmp_path: Path) -> None:
    """Zero turns the deletion task off, whatever the store (so one store kind is enough)."""
    store = StoreDb("sqlite", sqlite_url, None)
    async with (
        serving(store.url, tmp_path, args=["--retention", "0"]) as server,
        connect(server) as client,
    ):
        job_id = await client.run_job(progress_graph(3, 0), durable=True)
        received = await client.receive_until_terminal(job_id)
        # Longer than a 1 s retention takes to delete a run (its task looks every second).
        await asyncio.sleep(SECOND * 3)
        run = await store.run(job_id)
        assert run is not None and run.status == "completed"
        assert len(await store.frames(job_id)) == len(received) - 1
