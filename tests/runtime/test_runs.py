"""Runs through the hub without a socket: messages, outputs, failures, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest

from noderun.protocol.server import JobUpdate, NodeProgress, NodeUpdate, OutputUpdate
from noderun.runtime.context import NodeContext
from noderun.runtime.hub import MAX_JOB_ID, RuntimeConfig, StartRefused
from noderun.runtime.node import node as define
from noderun.runtime.node import spec_of
from noderun.runtime.nodes import BUILTIN_NODES, DEBUG_NODES
from noderun.runtime.registry import Registry
from tests.support.hub import Collector, edge, node, request, running_hub, start
from tests.support.timing import TIMEOUT


async def test_single_node_full_profile_message_order_and_outputs() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request([node("n1", "nodetool.text.Concat", a="hello ", b="world")], job_id="j1")
        run = start(hub, frame, sink)
        terminal = await sink.terminal()
        kinds = [(type(m).__name__, getattr(m, "status", None)) for m in sink.messages]
        assert kinds == [
            ("JobUpdate", "running"),
            ("NodeUpdate", "running"),
            ("OutputUpdate", None),  # §3.2: the sink's output, before its completed
            ("NodeUpdate", "completed"),
            ("JobUpdate", "completed"),
        ]
        output = sink.messages[2]
        assert isinstance(output, OutputUpdate)
        assert (output.node_id, output.output_name, output.value) == ("n1", "output", "hello world")
        assert [item.seq for item in sink.items] == [1, 2, 3, 4, 5]
        assert [m.job_seq for m in sink.messages] == [1, 2, 3, 4, 5]
        assert terminal.result == {"outputs": {"n1": {"output": "hello world"}}}
        assert terminal.duration is not None and terminal.duration >= 0
        assert sink.finished == ["j1"]
        assert run.finished and hub.get("j1", "1") is run and "1/j1" not in hub.active


async def test_terminal_profile_sends_only_the_terminal() -> None:
    async with running_hub() as hub:
        sink = Collector()
        start(hub, request([node("n1", "lib.math.Add", a=1, b=2)], detail="terminal"), sink)
        terminal = await sink.terminal()
        assert len(sink.items) == 1
        assert terminal.result == {"outputs": {"n1": {"output": 3}}}


async def test_explicit_types_and_result_without_outputs_wrapper() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request(
            [node("n1", "nodetool.text.Length", text="abcd")],
            explicit_types=True,
            require_terminal_result=False,
        )
        start(hub, frame, sink)
        terminal = await sink.terminal()
        assert terminal.result == {"n1": {"output": {"type": "integer", "value": 4}}}
        completed = [m for m in sink.of_type(NodeUpdate) if m.status == "completed"]
        assert completed[0].result == {"output": {"type": "integer", "value": 4}}


async def test_dag_with_params_output_node_and_outputs_profile() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request(
            [
                node("i", "nodetool.input.StringInput", name="who"),
                node("u", "nodetool.text.ToUppercase"),
                node("o", "nodetool.output.Output", name="shout"),
            ],
            [edge("i", "u", "text"), edge("u", "o", "value")],
            params={"who": "ada"},
            detail="outputs",
        )
        start(hub, frame, sink)
        terminal = await sink.terminal()
        outputs = sink.of_type(OutputUpdate)
        assert [(o.output_name, o.value, o.output_type) for o in outputs] == [
            ("shout", "ADA", "string")
        ]
        assert not sink.of_type(NodeUpdate)
        assert terminal.result == {"outputs": {"shout": ["ADA"]}}


async def test_streaming_node_sends_each_item_downstream() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request(
            [
                node("c", "noderun.debug.Count", count=3),
                node("o", "nodetool.output.Output", name="n"),
            ],
            [edge("c", "o", "value")],
        )
        start(hub, frame, sink)
        terminal = await sink.terminal()
        assert [o.value for o in sink.of_type(OutputUpdate)] == [1, 2, 3]
        assert terminal.result == {"outputs": {"n": [1, 2, 3]}}


async def test_node_fires_once_per_arrival_with_latest_other_inputs() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request(
            [
                node("c", "noderun.debug.Count", count=2),
                node("k", "nodetool.constant.Integer", value=10),
                node("add", "lib.math.Add"),
                node("o", "nodetool.output.Output", name="sum"),
            ],
            [edge("c", "add", "a"), edge("k", "add", "b"), edge("add", "o", "value")],
        )
        start(hub, frame, sink)
        terminal = await sink.terminal()
        assert terminal.result == {"outputs": {"sum": [11, 12]}}


async def test_independent_branches_run_concurrently() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request(
            [
                node("a", "noderun.debug.Sleep", seconds=0.05),
                node("b", "noderun.debug.Sleep", seconds=0.05),
            ]
        )
        start(hub, frame, sink)
        await sink.terminal()
        statuses = [(m.node_id, m.status) for m in sink.of_type(NodeUpdate)]
        # Both started before either completed.
        assert statuses[:2] == [("a", "running"), ("b", "running")]


async def test_failing_node_fails_the_run_naming_the_node() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request([node("d", "lib.math.Divide", a=1, b=0)], detail="terminal")
        start(hub, frame, sink)
        terminal = await sink.terminal()
        assert terminal.status == "failed"
        assert terminal.error is not None
        assert "'Divide'" in terminal.error and "ZeroDivisionError" in terminal.error
        errors = [m for m in sink.of_type(NodeUpdate) if m.status == "error"]
        assert [m.node_id for m in errors] == ["d"]
        assert terminal.result is None


async def test_failure_in_a_dag_cancels_the_rest() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request(
            [
                node("f", "noderun.debug.Fail", message="boom"),
                node("s", "noderun.debug.Sleep", seconds=30),
            ]
        )
        run = start(hub, frame, sink)
        terminal = await sink.terminal()
        assert (
            terminal.status == "failed" and terminal.error is not None and "boom" in terminal.error
        )
        assert run.task is None and not hub.active


async def test_invalid_graph_fails_at_once_with_nothing_executed() -> None:
    async with running_hub() as hub:
        sink = Collector()
        start(hub, request([node("x", "no.Such")]), sink)
        terminal = await sink.terminal()
        assert len(sink.items) == 1
        assert terminal.status == "failed" and terminal.error is not None
        assert "unknown node type" in terminal.error


async def test_no_graph_fails_with_a_clear_error() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request([node("x", "nodetool.constant.String")])
        frame.graph = None
        start(hub, frame, sink)
        terminal = await sink.terminal()
        assert terminal.error is not None and "no graph" in terminal.error


async def test_cancel_a_running_run() -> None:
    async with running_hub() as hub:
        sink = Collector()
        run = start(hub, request([node("s", "noderun.debug.Sleep", seconds=30)]), sink)
        await asyncio.sleep(0)
        assert run.cancel()
        terminal = await sink.terminal()
        assert terminal.status == "cancelled"
        assert not run.cancel()  # finished: nothing to cancel


async def test_duplicate_running_job_id_is_refused_and_server_busy_past_the_cap() -> None:
    async with running_hub(config=RuntimeConfig(max_active_runs=1)) as hub:
        sink = Collector()
        run = start(
            hub, request([node("s", "noderun.debug.Sleep", seconds=30)], job_id="same"), sink
        )
        for job_id, code in (("same", "job_already_running"), ("other", "server_busy")):
            try:
                hub.create(
                    request([node("n", "nodetool.constant.String")], job_id=job_id), "1", None
                )
            except StartRefused as exc:
                assert exc.code == code
            else:
                raise AssertionError(f"{job_id} was not refused")
        run.cancel()
        await sink.terminal()


async def test_an_overlong_job_id_is_refused() -> None:
    async with running_hub() as hub:
        job_id = "x" * (MAX_JOB_ID + 1)
        with pytest.raises(StartRefused) as refused:
            hub.create(request([node("n", "nodetool.constant.String")], job_id=job_id), "1", None)
        assert refused.value.code == "invalid_job_id"
        assert refused.value.job_id == job_id  # the client's own id, for its terminal
        assert hub.get(job_id, "1") is None


async def test_stream_inputs_push_values_then_end() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request(
            [
                node("i", "nodetool.input.StringInput", name="x"),
                node("u", "nodetool.text.ToUppercase"),
                node("o", "nodetool.output.Output", name="out"),
            ],
            [edge("i", "u", "text"), edge("u", "o", "value")],
        )
        run = start(hub, frame, sink)
        execution = run.execution
        assert execution is not None
        await asyncio.sleep(0)
        assert execution.push_input("x", "a") is None
        assert execution.push_input("x", "b") is None
        assert execution.push_input("x", 5) is not None  # wrong type
        assert execution.push_input("nope", "a") is not None
        assert execution.end_input("x") is None
        terminal = await sink.terminal()
        assert terminal.result == {"outputs": {"out": ["A", "B"]}}


async def test_update_properties_applies_to_a_node_not_yet_started() -> None:
    async with running_hub() as hub:
        sink = Collector()
        frame = request(
            [
                node("i", "nodetool.input.StringInput", name="x"),
                node("c", "nodetool.text.Concat", b="old"),
            ],
            [edge("i", "c", "a")],
        )
        run = start(hub, frame, sink)
        execution = run.execution
        assert execution is not None
        await asyncio.sleep(0)
        assert execution.update_properties("c", {"b": "new"}) is None
        assert execution.update_properties("c", {"b": 5}) is not None
        assert execution.update_properties("c", {"zzz": 5}) is not None
        assert execution.update_properties("ghost", {}) is not None
        execution.push_input("x", "v-")
        execution.end_input("x")
        terminal = await sink.terminal()
        assert terminal.result == {"outputs": {"c": {"output": "v-new"}}}


async def test_replay_buffer_is_bounded_and_reports_what_was_dropped() -> None:
    async with running_hub(config=RuntimeConfig(replay_limit=3)) as hub:
        sink = Collector()
        run = start(hub, request([node("p", "noderun.debug.Progress", steps=5)]), sink)
        await sink.terminal()
        items, incomplete = run.replay(0)
        assert [item.seq for item in items] == [run.seq - 2, run.seq - 1, run.seq]
        assert incomplete
        items, incomplete = run.replay(run.seq - 3)
        assert len(items) == 3 and not incomplete
        progress = sink.of_type(NodeProgress)
        assert [(p.progress, p.total) for p in progress] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


async def test_a_run_left_without_subscribers_is_cancelled_after_the_grace_period() -> None:
    async with running_hub(config=RuntimeConfig(detach_grace=0.05)) as hub:
        sink = Collector()
        run = start(hub, request([node("s", "noderun.debug.Sleep", seconds=30)]), sink)
        run.detach(sink)
        assert run.task is not None
        await asyncio.wait_for(asyncio.shield(run.task), TIMEOUT)
        assert run.status == "cancelled"


async def test_reattaching_within_the_grace_period_keeps_the_run() -> None:
    async with running_hub(config=RuntimeConfig(detach_grace=0.05)) as hub:
        first, second = Collector(), Collector()
        run = start(hub, request([node("s", "noderun.debug.Sleep", seconds=0.2)]), first)
        run.detach(first)
        assert run.attach(second)
        assert not run.attach(second)  # never twice
        terminal = await second.terminal()
        assert terminal.status == "completed"


async def test_finished_runs_are_kept_up_to_the_limit() -> None:
    async with running_hub(config=RuntimeConfig(finished_limit=2)) as hub:
        for index in range(3):
            sink = Collector()
            start(hub, request([node("n", "nodetool.constant.Bool")], job_id=f"j{index}"), sink)
            await sink.terminal()
        assert hub.get("j0", "1") is None
        assert hub.get("j1", "1") is not None and hub.get("j2", "1") is not None


async def test_blocking_nodes_run_off_the_loop() -> None:
    async with running_hub() as hub:
        sink = Collector()
        start(hub, request([node("b", "noderun.debug.BlockingSleep", seconds=0.3)]), sink)
        ticks = 0
        while not sink.done.done():
            ticks += 1  # the loop keeps turning while the node sleeps on a runner thread
            await asyncio.sleep(0.01)
        assert ticks > 1
        assert (await sink.terminal()).status == "completed"


async def test_authoring_api_multi_output_context_from_a_thread() -> None:
    seen_threads: list[str] = []

    @define("test.Split", outputs={"head": str, "tail": str})
    def split(ctx: NodeContext, text: str = "") -> dict[str, str]:
        seen_threads.append(threading.current_thread().name)
        ctx.progress(1, 2)
        ctx.log("splitting")
        time.sleep(0.01)
        return {"head": text[:1], "tail": text[1:]}

    @define("test.Echo")
    async def echo(ctx: NodeContext, value: str = "") -> AsyncIterator[str]:
        ctx.chunk(value)
        yield value

    registry = Registry([*BUILTIN_NODES, split, echo])
    assert spec_of(split).kind == "blocking" and spec_of(echo).kind == "stream"
    outputs = spec_of(split).metadata()["outputs"]
    assert isinstance(outputs, list)
    assert [o["name"] for o in outputs] == ["head", "tail"]
    async with running_hub(registry) as hub:
        sink = Collector()
        frame = request(
            [
                node("s", "test.Split", text="abc"),
                node("e", "test.Echo"),
                node("o", "nodetool.output.Output", name="t"),
            ],
            [edge("s", "e", "value", source_handle="tail"), edge("e", "o", "value")],
        )
        start(hub, frame, sink)
        terminal = await sink.terminal()
        assert terminal.result == {"outputs": {"t": ["bc"]}}  # "s" has an edge out: not a sink
        assert seen_threads and seen_threads[0].startswith("noderun-runner-")
        names = [type(m).__name__ for m in sink.messages]
        assert "NodeProgress" in names and "LogUpdate" in names and "Chunk" in names


async def test_terminal_job_update_is_the_last_message() -> None:
    async with running_hub() as hub:
        sink = Collector()
        start(hub, request([node("p", "noderun.debug.Progress", steps=3)]), sink)
        await sink.terminal()
        assert isinstance(sink.messages[-1], JobUpdate)
        assert sum(isinstance(m, JobUpdate) and m.status != "running" for m in sink.messages) == 1


async def test_cancelled_blocking_runs_do_not_hold_the_runners() -> None:
    """Issue 12.5: cancel four runs stuck in a blocking call on a pool of four; they
    end ``cancelled`` and the next blocking run does not wait for their threads."""
    release = threading.Event()
    loop = asyncio.get_running_loop()
    entered = asyncio.Semaphore(0)

    @define("test.Stuck")
    def stuck(seconds: float = 0.0) -> float:
        loop.call_soon_threadsafe(entered.release)
        release.wait(TIMEOUT * 4)  # a real blocking call, as a time.sleep(3600) would be
        return seconds

    async with running_hub(Registry([*BUILTIN_NODES, *DEBUG_NODES, stuck]), runners=4) as hub:
        pool = hub.pool
        assert pool is not None
        try:
            sinks = [Collector() for _ in range(4)]
            runs = [start(hub, request([node("b", "test.Stuck")]), sink) for sink in sinks]
            for _ in runs:
                await asyncio.wait_for(entered.acquire(), TIMEOUT)
            assert all(run.cancel() for run in runs)
            assert [(await sink.terminal()).status for sink in sinks] == ["cancelled"] * 4
            assert (pool.abandoned, pool.abandoned_alive, pool.busy) == (4, 4, 0)
            sink = Collector()
            start(hub, request([node("b", "noderun.debug.BlockingSleep", seconds=0)]), sink)
            assert (await sink.terminal()).status == "completed"
        finally:
            release.set()
