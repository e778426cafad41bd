"""The hub's in-flight limits and per-user queue (``runtime/admission.py``), driven
directly: what the real-server tests of ``tests/server/test_limits.py`` cannot reach
cheaply (a deep queue, shutdown)."""

from __future__ import annotations

from noderun.protocol.server import JobQueued, JobUpdate
from noderun.runtime.hub import RuntimeConfig, StartRefused
from noderun.runtime.run import Run
from tests.support.hub import Collector, node, request, running_hub


async def test_a_deep_queue_of_inline_runs_drains_in_order_in_one_release() -> None:
    """Each started inline run finishes inside its start and frees its slot again: the
    queue drains in FIFO order without recursing once per queued run."""
    depth = 3000  # deeper than the interpreter's recursion limit
    async with running_hub(
        config=RuntimeConfig(max_runs_per_user=1, max_queued_runs_per_user=depth)
    ) as hub:
        sink = Collector()
        blocker = hub.create(
            request([node("s", "noderun.debug.Sleep", seconds=30)], job_id="blocker"), "1", sink
        )
        assert blocker.admitted
        blocker.start()
        queued: list[Run] = []
        for index in range(depth):
            frame = request(
                [node("c", "nodetool.text.Concat", a="x", b=str(index))], job_id=f"q{index}"
            )
            run = hub.create(frame, "1", sink)
            assert not run.admitted
            hub.enqueue(run)
            queued.append(run)
        positions = [m.queue_position for m in sink.messages if isinstance(m, JobQueued)]
        assert positions == list(range(1, depth + 1))
        try:
            hub.create(request([node("c", "nodetool.text.Concat")], job_id="over"), "1", sink)
        except StartRefused as exc:
            assert exc.code == "too_many_runs" and "max_queued_runs_per_user" in exc.message
        else:
            raise AssertionError("the run past the queue bound was not refused")
        # Another user is not held by this user's queue.
        other = hub.create(request([node("c", "nodetool.text.Concat")], job_id="q0"), "2", None)
        assert other.admitted
        other.start()

        blocker.cancel()
        await sink.terminal()
        # The whole queue drained inside the blocker's end (inline runs, no awaits).
        ended = [
            m.job_id for m in sink.messages if isinstance(m, JobUpdate) and m.status == "completed"
        ]
        assert ended == [f"q{index}" for index in range(depth)]
        assert all(run.finished for run in queued)


async def test_shutdown_cancels_queued_runs_and_starts_none() -> None:
    async with running_hub(config=RuntimeConfig(max_runs_per_user=1)) as hub:
        sink = Collector()
        blocker = hub.create(
            request([node("s", "noderun.debug.Sleep", seconds=30)], job_id="b"), "1", sink
        )
        blocker.start()
        waiting = hub.create(request([node("c", "nodetool.text.Concat")], job_id="w"), "1", sink)
        hub.enqueue(waiting)
        await hub.close()
        statuses = {
            m.job_id: m.status
            for m in sink.messages
            if isinstance(m, JobUpdate) and m.status != "running"
        }
        assert statuses == {"b": "cancelled", "w": "cancelled"}
        assert waiting.state.name == "FINISHED"
