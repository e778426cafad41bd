"""The run timeout (``--run-timeout``) on a durable run: the terminal ``failed`` with
``timeout`` is committed before the client sees it, like any other terminal."""

from __future__ import annotations

from pathlib import Path

from tests.durable.helpers import StoreDb, serving
from tests.support.client import connect
from tests.support.frames import is_ack, run_messages
from tests.support.graphs import sleep_graph


async def test_a_durable_run_past_the_run_timeout_commits_failed_timeout_first(
    store: StoreDb, tmp_path: Path
) -> None:
    async with (
        serving(store.url, tmp_path, args=["--run-timeout", "0.3"]) as server,
        connect(server) as client,
    ):
        job_id = await client.run_job(sleep_graph(3600.0), durable=True)
        received = [await client.receive()]
        assert is_ack(received[0].frame), received[0].frame
        received += await client.receive_until_terminal(job_id)
        terminal = run_messages(received, job_id)[-1]
        assert terminal.frame["status"] == "failed"
        assert terminal.frame["error"] == "timeout: the run did not finish within 0.3 s"

        run = await store.run(job_id)
        assert run is not None
        assert (run.status, run.error) == ("failed", terminal.frame["error"])
        assert run.terminal_frame == terminal.raw  # the exact bytes the client got
        assert run.last_seq == terminal.frame["job_seq"]
