"""``nodetool.control.*`` with NodeTool's streaming semantics, through a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from noderun.runtime.node import spec_of
from noderun.runtime.nodes import control
from tests.runtime.nodes.support import failure, outputs, run
from tests.server.helpers import ServerHandle
from tests.support.frames import Frame
from tests.support.graphs import edge, graph, nd


def drain(stream: AsyncIterator[Any]) -> list[Any]:
    async def collect() -> list[Any]:
        return [item async for item in stream]

    return asyncio.run(collect())


def ran(frames: list[Frame], node_id: str) -> bool:
    return any(f.get("type") == "node_update" and f["node_id"] == node_id for f in frames)


def test_if_sends_only_to_the_taken_branch() -> None:
    assert drain(control.if_(condition=True, value=1)) == [{"if_true": 1}]
    assert drain(control.if_(condition=False, value=1)) == [{"if_false": 1}]
    assert drain(control.if_()) == [{"if_false": ()}]


def test_for_each_streams_items_with_their_index() -> None:
    assert drain(control.for_each(input_list=["a", "b"])) == [
        {"output": "a", "index": 0},
        {"output": "b", "index": 1},
    ]
    assert drain(control.for_each()) == []


def test_collect_and_reroute_as_functions() -> None:
    assert control.collect(input_item=[1, 2]) == [1, 2]
    assert control.collect() == []
    assert drain(control.reroute(input_value={"x": 1})) == [{"x": 1}]
    assert spec_of(control.collect).gather == frozenset({"input_item"})


def test_streaming_declarations_match_nodetool() -> None:
    streaming = {fn.__name__: spec_of(fn).metadata()["is_streaming_output"] for fn in control.NODES}
    assert streaming == {"if_": True, "for_each": True, "collect": False, "reroute": True}


# -- through a real server ---------------------------------------------------------------------


def branches(condition: object) -> Frame:
    return graph(
        nd("cond", "nodetool.input.BooleanInput", name="cond", value=condition),
        nd("if", "nodetool.control.If", value="v"),
        nd("yes", "nodetool.text.ToUppercase"),
        nd("no", "nodetool.text.ToUppercase"),
        nd("yes_out", "nodetool.output.Output", name="yes"),
        nd("no_out", "nodetool.output.Output", name="no"),
        edges=[
            edge("cond", "if", "condition"),
            edge("if", "yes", "text", source_handle="if_true"),
            edge("if", "no", "text", source_handle="if_false"),
            edge("yes", "yes_out", "value"),
            edge("no", "no_out", "value"),
        ],
    )


@pytest.mark.parametrize("condition", [True, False])
async def test_if_runs_only_the_taken_branch(server: ServerHandle, condition: bool) -> None:
    frames = await run(server, branches(condition))
    taken, skipped = ("yes", "no") if condition else ("no", "yes")
    assert outputs(frames) == {taken: ["V"], skipped: []}
    assert ran(frames, taken) and not ran(frames, skipped)


async def test_if_routes_each_streamed_value(server: ServerHandle) -> None:
    """ForEach → If (static condition) → Collect: every item goes the one way."""
    nodes = graph(
        nd("each", "nodetool.control.ForEach", input_list=[1, 2, 3]),
        nd("if", "nodetool.control.If", condition=True),
        nd("c", "nodetool.control.Collect"),
        nd("out", "nodetool.output.Output", name="true"),
        edges=[
            edge("each", "if", "value"),
            edge("if", "c", "input_item", source_handle="if_true"),
            edge("c", "out", "value"),
        ],
    )
    assert outputs(await run(server, nodes)) == {"true": [[1, 2, 3]]}


async def test_for_each_streams_items_and_indices(server: ServerHandle) -> None:
    nodes = graph(
        nd("each", "nodetool.control.ForEach", input_list=["a", "b", "c"]),
        nd("item", "nodetool.output.Output", name="item"),
        nd("index", "nodetool.output.Output", name="index"),
        edges=[
            edge("each", "item", "value"),
            edge("each", "index", "value", source_handle="index"),
        ],
    )
    frames = await run(server, nodes)
    assert outputs(frames) == {"item": ["a", "b", "c"], "index": [0, 1, 2]}
    updates = [(f["output_name"], f["value"]) for f in frames if f.get("type") == "output_update"]
    assert updates == [
        ("item", "a"),
        ("index", 0),
        ("item", "b"),
        ("index", 1),
        ("item", "c"),
        ("index", 2),
    ]


async def test_collect_waits_for_the_end_of_the_stream(server: ServerHandle) -> None:
    """ForEach → ToUppercase → Reroute → Collect → Output: one list, sent once, after the
    last item went through every node before it."""
    nodes = graph(
        nd("each", "nodetool.control.ForEach", input_list=["x", "y", "z"]),
        nd("up", "nodetool.text.ToUppercase"),
        nd("re", "nodetool.control.Reroute"),
        nd("c", "nodetool.control.Collect"),
        nd("out", "nodetool.output.Output", name="all"),
        edges=[
            edge("each", "up", "text"),
            edge("up", "re", "input_value"),
            edge("re", "c", "input_item"),
            edge("c", "out", "value"),
        ],
    )
    frames = await run(server, nodes)
    assert outputs(frames) == {"all": [["X", "Y", "Z"]]}
    collect_runs = [f for f in frames if f.get("type") == "node_update" and f["node_id"] == "c"]
    assert [f["status"] for f in collect_runs] == ["running", "completed"]
    last_reroute = max(
        i for i, f in enumerate(frames) if f.get("type") == "node_update" and f["node_id"] == "re"
    )
    assert frames.index(collect_runs[0]) > last_reroute


async def test_collect_of_an_empty_stream_is_an_empty_list(server: ServerHandle) -> None:
    nodes = graph(
        nd("each", "nodetool.control.ForEach", input_list=[]),
        nd("c", "nodetool.control.Collect"),
        nd("out", "nodetool.output.Output", name="all"),
        edges=[edge("each", "c", "input_item"), edge("c", "out", "value")],
    )
    assert outputs(await run(server, nodes)) == {"all": [[]]}


async def test_lone_collect_outputs_an_empty_list(server: ServerHandle) -> None:
    frames = await run(server, graph(nd("c", "nodetool.control.Collect", input_item=[5])))
    assert outputs(frames) == {"c": {"output": []}}


async def test_for_each_of_a_non_list_fails_the_run_naming_the_node(
    server: ServerHandle,
) -> None:
    nodes = graph(
        nd("s", "nodetool.input.StringInput", name="s", value="abc"),
        nd("each", "nodetool.control.ForEach"),
        edges=[edge("s", "each", "input_list")],
    )
    error = failure(await run(server, nodes))
    assert "each" in error and "nodetool.control.ForEach" in error
