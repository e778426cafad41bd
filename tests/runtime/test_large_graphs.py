"""Large graphs in the runtime: memory linear in the graph and let go after the run,
validation and execution in slices, the node limit, and the run timeout."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from noderun.protocol.client import Edge, Node
from noderun.protocol.server import JobUpdate, NodeUpdate
from noderun.runtime.hub import PLAN_AT_ONCE, RuntimeConfig
from noderun.runtime.run import RunState
from tests.support.hub import Collector, edge, node, request, running_hub, start

#: A chain that is validated and executed in several slices, not in one step.
_LONG = 20 * PLAN_AT_ONCE


def chain(length: int, *, grow: str = "x") -> tuple[list[Node], list[Edge]]:
    """``length`` Concat nodes, each feeding the next on ``a``. With ``grow`` each value
    is one character longer than the last: what flows through the whole chain is the
    square of its length, what is in flight at once only linear."""
    nodes = [node(f"n{i}", "nodetool.text.Concat", b=grow) for i in range(length)]
    edges = [edge(f"n{i - 1}", f"n{i}", "a") for i in range(1, length)]
    return nodes, edges


async def run_chain(length: int) -> tuple[int, int]:
    """Run a growing chain under tracemalloc: (its peak, what is still held once the
    run's task has ended and the finished run is kept for replay), both counted from
    before the graph was built."""
    async with running_hub(config=RuntimeConfig(max_graph_nodes=length)) as hub:
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            nodes, edges = chain(length)
            frame = request(nodes, edges, detail="terminal", job_id=f"chain-{length}")
            del nodes, edges
            collector = Collector()
            run = start(hub, frame, collector)
            del frame
            task = run.task
            assert task is not None
            terminal = await asyncio.wait_for(collector.done, 60)
            assert terminal.status == "completed", terminal.error
            assert terminal.result == {"outputs": {f"n{length - 1}": {"output": "x" * length}}}
            del terminal
            await task
            del task
            # No gc.collect(): a finished run breaks its cycles, so what it lets go is
            # freed by reference counting, as in the server.
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert hub.get(run.job_id, run.user_id) is run and run.finished  # kept for replay
        return peak - before, held - before


async def test_a_chain_peaks_linearly_in_its_length_and_is_let_go_after_the_run() -> None:
    """Each node keeps its latest inputs until it is retired; a chain that retired its
    nodes only at the end held every value that flowed (memory the square of the
    chain). And the finished run kept for replay holds neither plan nor states."""
    peak_10k, held_10k = await run_chain(10_000)
    peak_20k, held_20k = await run_chain(20_000)
    again_20k, held_again = await run_chain(20_000)
    assert peak_20k < 3 * peak_10k, (peak_10k, peak_20k)
    assert again_20k < 1.5 * peak_20k, (peak_20k, again_20k)
    # What is left is the finished run and its replay buffer (the terminal): no more
    # than a sliver of what the run needed while it ran.
    for peak, held in ((peak_10k, held_10k), (peak_20k, held_20k), (again_20k, held_again)):
        assert held < peak / 20, (peak, held)


async def test_a_long_chain_lets_the_event_loop_run_while_it_is_validated_and_executed() -> None:
    """Other work gets the loop between slices: a task that only counts loop turns
    sees the run prepared... and running, many times, before its terminal."""
    async with running_hub() as hub:
        nodes, edges = chain(_LONG, grow="")
        collector = Collector()
        run = start(hub, request(nodes, edges, detail="full"), collector)
        assert run.execution is not None and not run.execution.planned
        turns_while_running = 0
        while not collector.done.done():
            await asyncio.sleep(0)
            if run.state is RunState.RUNNING:
                turns_while_running += 1
        terminal = await collector.terminal()
        assert terminal.status == "completed", terminal.error
        assert turns_while_running > 10
        updates = collector.of_type(NodeUpdate)
        assert [u.node_id for u in updates if u.status == "completed"] == [
            f"n{i}" for i in range(_LONG)
        ]


async def test_a_large_invalid_graph_fails_with_the_validation_error_and_runs_nothing() -> None:
    async with running_hub() as hub:
        nodes, edges = chain(_LONG, grow="")
        edges.append(edge(f"n{_LONG - 1}", "n0", "a"))  # a cycle: found at the very end
        collector = Collector()
        run = start(hub, request(nodes, edges, detail="full"), collector)
        assert run.execution is not None and not run.execution.planned
        terminal = await collector.terminal()
        assert terminal.status == "failed"
        assert terminal.error is not None
        assert terminal.error.startswith("invalid graph: the graph has a cycle through")
        # Nothing before the terminal, not even job_update running.
        assert collector.messages == [terminal]


async def test_a_command_while_a_large_graph_is_validated_is_answered_as_if_it_were_planned() -> (
    None
):
    """stream_input right after the ack: the validation finishes at once for it."""
    async with running_hub() as hub:
        nodes, edges = chain(_LONG, grow="")
        nodes.append(node("in", "nodetool.input.StringInput", name="text"))
        edges.append(edge("in", "n0", "a"))
        collector = Collector()
        run = start(hub, request(nodes, edges, detail="terminal"), collector)
        execution = run.execution
        assert execution is not None and not execution.planned
        assert execution.push_input("text", "hello") is None
        assert execution.planned
        assert execution.push_input("nope", "hello") == "no input named 'nope'"
        assert execution.update_properties("n1", {"b": "!"}) is None
        assert execution.end_input("text") is None
        terminal = await collector.terminal()
        assert terminal.status == "completed", terminal.error
        assert terminal.result == {"outputs": {f"n{_LONG - 1}": {"output": "hello!"}}}


async def test_a_command_finds_a_large_invalid_graph_invalid_and_the_run_fails() -> None:
    async with running_hub() as hub:
        nodes, edges = chain(_LONG, grow="")
        nodes.append(node("bad", "no.such.Node"))
        collector = Collector()
        run = start(hub, request(nodes, edges, detail="full"), collector)
        assert run.execution is not None
        answer = run.execution.update_properties("n1", {"b": "!"})
        assert answer == "the run's graph is invalid: node 'bad': unknown node type 'no.such.Node'"
        terminal = await collector.terminal()
        assert terminal.status == "failed"
        assert terminal.error == "invalid graph: node 'bad': unknown node type 'no.such.Node'"


async def test_cancelling_a_large_graph_while_it_is_validated_ends_it_cancelled() -> None:
    async with running_hub() as hub:
        nodes, edges = chain(_LONG, grow="")
        collector = Collector()
        run = start(hub, request(nodes, edges, detail="full"), collector)
        await asyncio.sleep(0)  # the task's first step: it validates for one slice
        assert run.state is RunState.RUNNING
        assert run.execution is not None and not run.execution.planned
        assert run.cancel()
        terminal = await collector.terminal()
        assert terminal.status == "cancelled"
        assert collector.messages == [terminal]


async def test_a_graph_over_max_graph_nodes_fails_before_anything_runs() -> None:
    async with running_hub(config=RuntimeConfig(max_graph_nodes=3)) as hub:
        nodes, edges = chain(4)
        collector = Collector()
        run = start(hub, request(nodes, edges, detail="full"), collector)
        assert run.task is None  # refused in the frame handler, nothing to wait for
        terminal = await collector.terminal()
        assert terminal.status == "failed"
        assert terminal.error == (
            "invalid graph: the graph has 4 nodes; this server runs graphs of at most 3 "
            "(max_graph_nodes)"
        )
        assert collector.messages == [terminal]

        nodes, edges = chain(3)  # at the limit: runs
        collector = Collector()
        start(hub, request(nodes, edges, detail="full"), collector)
        assert (await collector.terminal()).status == "completed"


async def test_a_large_graph_over_max_graph_nodes_fails_the_same_way() -> None:
    async with running_hub(config=RuntimeConfig(max_graph_nodes=_LONG - 1)) as hub:
        nodes, edges = chain(_LONG, grow="")
        collector = Collector()
        start(hub, request(nodes, edges, detail="full"), collector)
        terminal = await collector.terminal()
        assert terminal.status == "failed"
        assert terminal.error is not None and "(max_graph_nodes)" in terminal.error
        assert collector.messages == [terminal]


async def test_a_run_past_its_timeout_fails_with_timeout() -> None:
    async with running_hub(config=RuntimeConfig(run_timeout=0.05)) as hub:
        collector = Collector()
        run = start(hub, request([node("s", "noderun.debug.Sleep", seconds=3600.0)]), collector)
        terminal = await collector.terminal()
        assert terminal.status == "failed"
        assert terminal.error == "timeout: the run did not finish within 0.05 s"
        assert run.status == "failed"
        # The sleeping node never completed; nothing follows the terminal.
        statuses = [u.status for u in collector.of_type(NodeUpdate)]
        assert statuses == ["running"]
        assert collector.items[-1].message is terminal
        assert not run.cancel()  # finished: nothing to cancel


async def test_a_run_that_ends_before_its_timeout_is_not_touched_by_it() -> None:
    async with running_hub(config=RuntimeConfig(run_timeout=0.05)) as hub:
        collector = Collector()
        start(hub, request([node("s", "noderun.debug.Sleep", seconds=0.0)]), collector)
        assert (await collector.terminal()).status == "completed"
        await asyncio.sleep(0.1)  # past the timeout: nothing more may arrive
        terminals = [m for m in collector.of_type(JobUpdate) if m.status != "running"]
        assert len(terminals) == 1


async def test_a_cancel_before_the_timeout_wins_and_the_timeout_then_does_nothing() -> None:
    async with running_hub(config=RuntimeConfig(run_timeout=0.05)) as hub:
        collector = Collector()
        run = start(hub, request([node("s", "noderun.debug.Sleep", seconds=3600.0)]), collector)
        assert run.cancel("cancelled by client")
        terminal = await collector.terminal()
        assert terminal.status == "cancelled"
        await asyncio.sleep(0.1)
        assert [m for m in collector.of_type(JobUpdate) if m.status != "running"] == [terminal]
