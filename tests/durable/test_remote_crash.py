"""``kill -9`` of a server running durable runs with NodeTool worker nodes: like any other
run (``test_crash.py``), and the server's worker processes die with it.

A remote node in flight at the kill: the next server on the same store reports the run
``failed: interrupted`` as soon as it is ready, and ``reconnect_job`` replays what the
store holds and that terminal. A remote run that finished before the kill is replayed
intact: byte for byte to a binary client, with its image as a ``data:`` URI to a text one.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path

import pytest

from tests.durable.helpers import INTERRUPTED, ServerProcess, StoreDb, serving
from tests.nodetool.support import NODEPACK, require_nodetool
from tests.support.client import connect
from tests.support.frames import as_stored, run_messages
from tests.support.graphs import edge, nd
from tests.support.timing import LONG_TIMEOUT, SECOND, START_TIMEOUT
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(300)

DEMO = "noderuntest.demo."

#: One worker loading the test package; its start-up can take long on a loaded machine.
_NODETOOL_ARGS = ("--nodetool-workers", "1", "--nodetool-namespace", "noderuntest")
#: Leases far longer than the test (as in ``test_crash.py``): a run failed right after the
#: restart was failed by the restarted server's own recovery, not by a lease expiring.
_ENV = {
    "PYTHONPATH": str(NODEPACK),
    "NODERUN_NODETOOL_START_TIMEOUT": str(START_TIMEOUT),
    "NODERUN_STORE_HEARTBEAT": str(SECOND * 300),
    "NODERUN_STORE_LEASE_TIMEOUT": str(SECOND * 600),
}


def _serving(
    store: StoreDb, tmp_path: Path, port: int | None = None
) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    return serving(
        store.url,
        tmp_path,
        args=_NODETOOL_ARGS,
        env=_ENV,
        port=port,
        start_within=START_TIMEOUT,
    )


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name; ``None`` once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def _alive(pid: int) -> bool:
    """Running or sleeping: an exited process nobody reaped yet (a zombie) is not."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _worker_pids(server: ServerProcess) -> list[int]:
    """The server's NodeTool worker processes (its children that run ``nodetool.worker``)."""
    assert server.process is not None
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None or int(fields[1]) != server.process.pid:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"nodetool.worker" in cmdline:
            pids.append(int(entry))
    return pids


def _pixel_graph() -> dict[str, object]:
    return {
        "nodes": [
            nd("p", DEMO + "Pixel", level=9),
            nd("out", "nodetool.output.Output", name="pixel"),
        ],
        "edges": [edge("p", "out", "value")],
    }


def _wait_graph() -> dict[str, object]:
    """A cooperative long node: in flight at the kill, checking its cancel flag."""
    return {"nodes": [nd("w", DEMO + "Wait", seconds=600)], "edges": []}


async def test_a_durable_run_with_a_remote_node_survives_a_kill_like_any_other(
    store: StoreDb, tmp_path: Path
) -> None:
    require_nodetool()
    async with _serving(store, tmp_path) as first:
        workers = _worker_pids(first)
        assert len(workers) == 1, first.log()
        async with connect(first) as client:
            done_id = await client.run_job(_pixel_graph(), durable=True)
            done = run_messages(await client.receive_until_terminal(done_id, LONG_TIMEOUT), done_id)
            assert done[-1].frame["status"] == "completed", done[-1].frame
            job_id = await client.run_job(_wait_graph(), durable=True)
            await client.receive_until(
                lambda frame: frame.get("type") == "node_progress", LONG_TIMEOUT
            )

            async def progress_committed() -> bool:
                return len(await store.frames(job_id)) >= 3

            await eventually(progress_committed, LONG_TIMEOUT)
        await first.kill()

        # The workers die with the server: none is left running its node as an orphan.
        async def workers_gone() -> bool:
            return not any(_alive(pid) for pid in workers)

        await eventually(workers_gone, LONG_TIMEOUT)
    run = await store.run(job_id)
    assert run is not None and run.status == "running"
    committed = await store.frames(job_id)

    async with _serving(store, tmp_path, port=first.port) as second:
        # Ready: the run was failed during start-up, no lease had to expire.
        run = await store.run(job_id)
        assert run is not None
        assert (run.status, run.error) == ("failed", INTERRUPTED)
        assert len(_worker_pids(second)) == 1
        async with connect(second) as client:
            await client.reconnect(job_id)
            interrupted = await client.receive_until_terminal(job_id)
            await client.reconnect(done_id)
            replayed = await client.receive_until_terminal(done_id)
        async with connect(second) as reader:
            await reader.reconnect(done_id, text=True)
            as_text = await reader.receive_until_terminal(done_id)
            assert all(item.text for item in as_text)  # mirrored: JSON frames

    # The interrupted run: what was committed, then the terminal the new server stored.
    assert interrupted[0].frame["type"] == "job_resumed"
    messages = run_messages(interrupted, job_id)
    assert as_stored(messages[:-1]) == committed
    assert [f.frame.get("node_id") for f in messages if f.frame["type"] == "node_update"] == ["w"]
    terminal = messages[-1].frame
    assert (terminal["type"], terminal["status"], terminal["error"]) == (
        "job_update",
        "failed",
        INTERRUPTED,
    )
    assert await store.frames(job_id) == as_stored(messages)

    # The finished run: byte for byte what its client got, its image bytes included.
    assert as_stored(run_messages(replayed, done_id)) == as_stored(done)
    image = done[-1].frame["result"]["outputs"]["pixel"][0]
    assert image["data"].startswith(b"\x89PNG")
    # To a text client the same stored frames carry the image as a data: URI.
    text_messages = run_messages(as_text, done_id)
    assert [m.frame["job_seq"] for m in text_messages] == [m.frame["job_seq"] for m in done]
    text_image = text_messages[-1].frame["result"]["outputs"]["pixel"][0]
    uri = "data:image/png;base64," + base64.b64encode(image["data"]).decode()
    assert text_image == {**image, "uri": uri, "data": None}
