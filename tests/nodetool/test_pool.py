"""The worker pool against real ``nodetool.worker`` processes running the test package."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import structlog.testing

from noderun.nodetool import (
    PoolClosed,
    QueueFull,
    RemoteNodeError,
    WorkerLost,
    WorkerPool,
    WorkerStartError,
)
from noderun.nodetool.catalog import log_load_errors, node_specs
from noderun.nodetool.startup import server_secrets
from noderun.nodetool.wire import WorkerFrame
from tests.nodetool.support import options, require_nodetool
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)

DEMO = "noderuntest.demo."


@pytest.fixture(autouse=True)
def _nodetool() -> None:
    require_nodetool()


@asynccontextmanager
async def started(**overrides: object) -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(options(**overrides))
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


def progress_seen() -> tuple[asyncio.Event, Callable[[WorkerFrame], None]]:
    """An event set by the request's first ``progress`` frame (the node is running)."""
    event = asyncio.Event()

    def on_event(frame: WorkerFrame) -> None:
        if frame.type == "progress":
            event.set()

    return event, on_event


async def test_start_answers_discover_with_the_test_package() -> None:
    pool = WorkerPool(options())
    discovery = await pool.start()
    try:
        types = {node["node_type"] for node in discovery.nodes}
        assert {DEMO + name for name in ("Shout", "Count", "Wait", "Die", "Pixel")} <= types
        assert discovery.protocol_version >= 6
        assert discovery.load_errors == []
        assert pool.alive == 1
    finally:
        await pool.close()
    assert pool.alive == 0
    with pytest.raises(PoolClosed):
        await pool.execute(DEMO + "Shout", {})


async def test_execute_returns_outputs_and_the_node_defaults_apply() -> None:
    async with started() as pool:
        assert await pool.execute(DEMO + "Shout", {"text": "hi"}) == {
            "outputs": {"output": "HI!"},
            "blobs": {},
        }
        result = await pool.execute(DEMO + "Pixel", {"level": 7})
        assert result["blobs"]["output"].startswith(b"\x89PNG")
        assert result["outputs"]["output"]["type"] == "image"


async def test_a_node_that_raises_is_a_remote_node_error_and_the_worker_lives_on() -> None:
    async with started() as pool:
        pid = pool.worker_pids()
        with pytest.raises(RemoteNodeError, match="kaput") as caught:
            await pool.execute(DEMO + "Fail", {"message": "kaput"})
        assert "ValueError" in caught.value.traceback
        with pytest.raises(RemoteNodeError, match="Invalid value for property"):
            await pool.execute(DEMO + "Shout", {"text": 5})
        with pytest.raises(RemoteNodeError, match="Unknown node type"):
            await pool.execute(DEMO + "Nope", {})
        assert pool.worker_pids() == pid


async def test_a_streaming_execute_reports_chunks_progress_and_updates() -> None:
    async with started() as pool:
        events: list[WorkerFrame] = []
        result = await pool.execute(
            DEMO + "Count", {"text": "a b c"}, stream=True, on_event=events.append
        )
        assert result == {"outputs": {}, "blobs": {}}
        chunks = [event.data["outputs"] for event in events if event.type == "chunk"]
        assert chunks == [{"word": w, "index": i} for i, w in enumerate("abc")]
        progress = [(e.data["progress"], e.data["total"]) for e in events if e.type == "progress"]
        assert progress == [(1, 3), (2, 3), (3, 3)]
        updates = [event.data for event in events if event.type == "update"]
        assert [(u["type"], u["content"]) for u in updates] == [("log_update", "counting")]


async def test_secrets_travel_in_the_execute_frame() -> None:
    assert "NODERUN_TEST_SECRET" not in os.environ
    async with started() as pool:
        without = await pool.execute(DEMO + "Secret", {})
        given = await pool.execute(DEMO + "Secret", {}, secrets={"NODERUN_TEST_SECRET": "s3"})
    assert without["outputs"] == {"output": ""}
    assert given["outputs"] == {"output": "s3"}


async def test_a_cancelled_call_cancels_cooperatively_and_keeps_the_worker() -> None:
    async with started(cancel_grace=30.0) as pool:
        progressed, on_event = progress_seen()
        call = asyncio.create_task(pool.execute(DEMO + "Wait", {}, on_event=on_event))
        await progressed.wait()
        pid = pool.worker_pids()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # The slot comes back when the worker answers the cancel, well before the grace.
        assert (await pool.execute(DEMO + "Shout", {"text": "x"}))["outputs"] == {"output": "X!"}
        assert pool.worker_pids() == pid
        assert pool.restarts == 0


async def test_a_node_that_ignores_cancel_gets_its_worker_killed_and_replaced() -> None:
    async with started(cancel_grace=0.2, hang_timeout=0) as pool:
        (pid,) = pool.worker_pids()
        progressed, on_event = progress_seen()
        call = asyncio.create_task(pool.execute(DEMO + "Block", {"seconds": 60}, on_event=on_event))
        await progressed.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        result = await pool.execute(DEMO + "Shout", {"text": "after"})
        assert result["outputs"] == {"output": "AFTER!"}
        (new_pid,) = pool.worker_pids()
        assert new_pid != pid
        assert pool.restarts == 1


async def test_a_crash_fails_the_request_naming_node_and_worker_and_restarts() -> None:
    async with started() as pool:
        (pid,) = pool.worker_pids()
        with pytest.raises(WorkerLost) as caught:
            await pool.execute(DEMO + "Die", {"code": 3})
        assert caught.value.node_type == DEMO + "Die"
        assert caught.value.worker == "nodetool-0"
        assert "exited with code 3" in str(caught.value)
        # Queued while the worker restarts, then served by the new one.
        result = await pool.execute(DEMO + "Shout", {"text": "again"})
        assert result["outputs"] == {"output": "AGAIN!"}
        assert pool.worker_pids() != [pid]


async def test_a_worker_whose_loop_is_blocked_is_killed_as_unresponsive() -> None:
    async with started(hang_timeout=0.3, cancel_grace=60.0) as pool:
        with pytest.raises(WorkerLost, match=r"unresponsive for 0\.3s"):
            await pool.execute(DEMO + "Block", {"seconds": 60})
        assert (await pool.execute(DEMO + "Shout", {}))["outputs"] == {"output": "!"}


async def test_beyond_the_queue_limit_a_request_fails_at_once() -> None:
    async with started(concurrency=1, queue_limit=1) as pool:
        progressed, on_event = progress_seen()
        busy = asyncio.create_task(pool.execute(DEMO + "Wait", {}, on_event=on_event))
        await progressed.wait()
        queued = asyncio.create_task(pool.execute(DEMO + "Shout", {"text": "q"}))
        await eventually(lambda: pool.queued == 1)  # the task waits in the queue
        with pytest.raises(QueueFull, match=r"queue full \(1 waiting\)"):
            await pool.execute(DEMO + "Shout", {})
        busy.cancel()
        # The cooperative cancel frees the worker; the queued request runs.
        assert (await queued)["outputs"] == {"output": "Q!"}
        with pytest.raises(asyncio.CancelledError):
            await busy


async def test_a_queued_request_whose_caller_leaves_is_never_sent() -> None:
    """The queue holds what to send: a caller gone before a slot frees sends nothing, a
    value msgpack cannot carry fails only its own request, and the next one is sent
    the moment the worker answers."""
    async with started(concurrency=1, queue_limit=4) as pool:
        progressed, on_event = progress_seen()
        busy = asyncio.create_task(pool.execute(DEMO + "Wait", {}, on_event=on_event))
        await progressed.wait()
        leaving = asyncio.create_task(pool.execute(DEMO + "Shout", {"text": "gone"}))
        unsendable = asyncio.create_task(pool.execute(DEMO + "Shout", {"text": object()}))
        queued = asyncio.create_task(pool.execute(DEMO + "Shout", {"text": "q"}))
        await eventually(lambda: pool.queued == 3)  # the three wait in the queue
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert pool.queued == 2
        busy.cancel()
        with pytest.raises(TypeError):
            await unsendable
        assert (await queued)["outputs"] == {"output": "Q!"}
        with pytest.raises(asyncio.CancelledError):
            await busy
        assert pool.busy == 0
        assert pool.queued == 0


async def test_two_workers_run_two_nodes_at_once() -> None:
    async with started(workers=2) as pool:
        assert len(set(pool.worker_pids())) == 2
        progressed, on_event = progress_seen()
        first = asyncio.create_task(pool.execute(DEMO + "Wait", {}, on_event=on_event))
        await progressed.wait()
        # The second worker answers while the first is busy.
        assert (await pool.execute(DEMO + "Shout", {"text": "b"}))["outputs"]["output"] == "B!"
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first


def _fake_python(tmp_path: Path, body: str) -> str:
    path = tmp_path / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


async def test_start_fails_in_one_line_without_the_interpreter(tmp_path: Path) -> None:
    pool = WorkerPool(options(python=str(tmp_path / "missing")))
    with pytest.raises(WorkerStartError, match=r"cannot run .*missing"):
        await pool.start()


async def test_start_fails_in_one_line_without_the_worker_module(tmp_path: Path) -> None:
    # -S: no site-packages, so no nodetool-core.
    python = _fake_python(tmp_path, f'exec {sys.executable} -S "$@"')
    pool = WorkerPool(options(python=python, workers=2))
    with pytest.raises(WorkerStartError, match="No module named nodetool") as caught:
        await pool.start()
    assert "\n" not in str(caught.value)
    assert pool.alive == 0


async def test_start_fails_after_its_deadline(tmp_path: Path) -> None:
    python = _fake_python(tmp_path, "exec sleep 60")
    pool = WorkerPool(options(python=python, start_timeout=0.5))
    with pytest.raises(WorkerStartError, match=r"no discover answer within 0.5s"):
        await pool.start()


async def test_discover_metadata_becomes_specs_with_the_protocol_metadata_shape() -> None:
    """Without a package metadata file, ``discover`` alone gives each node §6.2 metadata."""
    pool = WorkerPool(options())
    discovery = await pool.start()
    try:
        found = node_specs(pool, discovery.nodes, {}, server_secrets)
        specs = {spec.node_type: spec for spec in found}
    finally:
        await pool.close()
    shout = specs[DEMO + "Shout"].metadata()
    assert shout["namespace"] == "noderuntest.demo"
    assert shout["properties"] == [
        {
            "name": "text",
            "type": {"type": "str", "optional": False, "type_args": []},
            "default": "",
            "description": "The text to shout",
        },
        {
            "name": "suffix",
            "type": {"type": "str", "optional": False, "type_args": []},
            "default": "!",
            "description": "Appended after the text",
        },
    ]
    count = specs[DEMO + "Count"]
    assert count.kind == "stream" and set(count.outputs) == {"word", "index"}
    assert specs[DEMO + "Shout"].kind == "async" and specs[DEMO + "Shout"].single_output
    assert specs[DEMO + "Secret"].metadata()["required_settings"] == ["NODERUN_TEST_SECRET"]


async def test_load_errors_are_reported_and_logged_once_per_package() -> None:
    pool = WorkerPool(options(namespaces=("noderuntest", "noderunbroken")))
    discovery = await pool.start()
    await pool.close()
    (error,) = discovery.load_errors
    assert error["module"] == "nodetool.nodes.noderunbroken.broken"
    assert "noderun_no_such_dependency" in error["error"]
    with structlog.testing.capture_logs() as logs:
        log_load_errors([*discovery.load_errors, {**error, "module": error["module"] + "2"}])
    (entry,) = [log for log in logs if log["event"] == "nodetool.package_load_errors"]
    assert entry["package"] == "nodetool.nodes.noderunbroken"
    assert len(entry["errors"]) == 2


async def test_when_restarts_fail_the_waiting_requests_fail_too(tmp_path: Path) -> None:
    """A worker that cannot come back never leaves a request waiting forever."""
    marker = tmp_path / "started-once"
    python = _fake_python(
        tmp_path,
        f'[ -e {marker} ] && {{ echo "broken environment" >&2; exit 7; }}\n'
        f'touch {marker}\nexec {sys.executable} "$@"',
    )
    async with started(python=python) as pool:
        with pytest.raises(WorkerLost, match="exited with code 3"):
            await pool.execute(DEMO + "Die", {"code": 3})
        with pytest.raises(WorkerStartError, match="exited with code 7: broken environment"):
            await pool.execute(DEMO + "Shout", {})
        assert pool.alive == 0


async def test_close_ends_what_is_in_flight_and_refuses_what_waits() -> None:
    pool = WorkerPool(options(queue_limit=4))
    await pool.start()
    progressed, on_event = progress_seen()
    running = asyncio.create_task(pool.execute(DEMO + "Wait", {}, on_event=on_event))
    await progressed.wait()
    waiting = asyncio.create_task(pool.execute(DEMO + "Shout", {}))
    await eventually(lambda: pool.queued == 1)  # the task waits in the queue
    await pool.close(deadline=0.2)
    with pytest.raises(WorkerLost, match="did not exit after its input closed"):
        await running
    with pytest.raises(PoolClosed):
        await waiting
    assert pool.alive == 0
