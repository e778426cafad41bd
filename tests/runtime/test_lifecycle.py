"""The run state machine: the states a run passes, who moves it, and impossible moves
refused loudly."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from noderun.contract import RunStatus, RunStore
from noderun.protocol.client import ExecutionOptions
from noderun.protocol.codec import Outbound
from noderun.protocol.server import JobUpdate
from noderun.runtime.hub import Hub
from noderun.runtime.registry import default_registry
from noderun.runtime.run import Run, RunState
from tests.runtime.test_durable_start import HeldFinishStore
from tests.support.hub import Collector, node, request, running_hub, start
from tests.support.timing import TIMEOUT


def state(run: Run) -> RunState:
    """The run's state now (a call, so the type checker does not carry it over awaits)."""
    return run.state


class StateRecorder(Collector):
    """Records the run's state and status as each message reaches the subscriber."""

    def __init__(self) -> None:
        super().__init__()
        self.run: Run | None = None
        self.seen: list[tuple[str, RunState, RunStatus]] = []

    def deliver(self, item: Outbound) -> None:
        assert self.run is not None
        self.seen.append((type(item.message).__name__, self.run.state, self.run.status))
        super().deliver(item)


async def test_a_single_inline_node_runs_inside_start_and_publishes_finished() -> None:
    async with running_hub() as hub:
        sink = StateRecorder()
        run = hub.create(request([node("n", "nodetool.text.Concat", a="a", b="b")]), "1", sink)
        sink.run = run
        assert (state(run), run.status) == (RunState.PREPARED, RunStatus.QUEUED)
        run.start()
        # No await since start(): it ran inline, no task.
        assert run.task is None and state(run) is RunState.FINISHED
        assert sink.seen == [
            ("JobUpdate", RunState.RUNNING, RunStatus.RUNNING),
            ("NodeUpdate", RunState.RUNNING, RunStatus.RUNNING),
            ("OutputUpdate", RunState.RUNNING, RunStatus.RUNNING),
            ("NodeUpdate", RunState.RUNNING, RunStatus.RUNNING),
            ("JobUpdate", RunState.FINISHED, RunStatus.COMPLETED),
        ]
        assert run.finished and run.status == "completed"


async def test_a_task_run_is_starting_until_its_first_step() -> None:
    async with running_hub() as hub:
        sink = Collector()
        run = start(hub, request([node("s", "noderun.debug.Sleep", seconds=30)]), sink)
        assert state(run) is RunState.STARTING and run.status == "running"
        await asyncio.sleep(0)
        assert state(run) is RunState.RUNNING
        assert run.cancel("enough")
        assert state(run) is RunState.CANCELLING and not run.cancel()  # once
        terminal = await sink.terminal()
        assert (terminal.status, terminal.message) == ("cancelled", "enough")
        assert state(run) is RunState.FINISHED and run.status is RunStatus.CANCELLED


async def test_a_cancel_before_the_first_step_still_ends_with_one_terminal() -> None:
    async with running_hub() as hub:
        sink = Collector()
        run = start(hub, request([node("s", "noderun.debug.Sleep", seconds=30)]), sink)
        assert run.cancel("before it began")
        terminal = await sink.terminal()
        assert (terminal.status, terminal.message) == ("cancelled", "before it began")
        assert [type(m).__name__ for m in sink.messages] == ["JobUpdate"]


async def test_impossible_moves_are_refused_loudly() -> None:
    async with running_hub() as hub:
        sink = Collector()
        run = start(hub, request([node("n", "nodetool.text.Concat", a="a", b="b")]), sink)
        assert state(run) is RunState.FINISHED
        with pytest.raises(RuntimeError, match="no move from FINISHED to RUNNING"):
            run.start()
        terminal = run.terminal
        assert terminal is not None
        with pytest.raises(RuntimeError, match="no move from FINISHED to FINISHED"):
            run.publish(terminal)  # a second terminal would be a bug
        assert not run.cancel()  # a request, not a move: "nothing to cancel"
        assert len(sink.of_type(JobUpdate)) == 2  # running + the one terminal


async def test_a_durable_terminal_is_committed_before_anyone_sees_it() -> None:
    store = HeldFinishStore()
    hub = Hub(default_registry(), None, store=cast(RunStore, store))
    frame = request([node("n", "nodetool.text.Concat", a="a", b="b")], job_id="d")
    frame.execution_options = ExecutionOptions(persistence="job", event_detail="full")
    created: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    run = hub.create_durable(frame, "1", lambda _run, _refusal: created.set_result(None))
    await asyncio.wait_for(created, TIMEOUT)
    sink = Collector()
    run.attach(sink)
    # One inline node: executed inside create_durable, its terminal now committing.
    assert state(run) is RunState.FINISHING and run.status == "running"
    assert not run.cancel() and run.terminal is None and not sink.items
    store.held[0].set_result(None)
    terminal = await sink.terminal()
    assert terminal.status == "completed" and state(run) is RunState.FINISHED
    assert "1/d" not in hub.active and hub.get("d", "1") is run


async def test_a_run_abandoned_while_its_terminal_commits_publishes_nothing() -> None:
    store = HeldFinishStore()
    hub = Hub(default_registry(), None, store=cast(RunStore, store))
    frame = request([node("n", "nodetool.text.Concat", a="a", b="b")], job_id="gone")
    frame.execution_options = ExecutionOptions(persistence="job", event_detail="terminal")
    run = hub.create_durable(frame, "1", lambda _run, _refusal: None)
    sink = Collector()
    run.attach(sink)
    assert state(run) is RunState.FINISHING
    run.abandon()
    assert state(run) is RunState.ABANDONED and run.finished
    store.held[0].set_result(None)
    await asyncio.sleep(0)  # the commit's callback
    assert state(run) is RunState.ABANDONED and run.terminal is None and not sink.items
    assert run.status is RunStatus.FAILED  # its terminal (completed) was never published
    with pytest.raises(RuntimeError, match="no move from ABANDONED"):
        run.abandon()
