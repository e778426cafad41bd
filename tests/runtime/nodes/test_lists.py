"""``nodetool.list.*``: each node against NodeTool's semantics, and through a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from noderun.runtime.node import spec_of
from noderun.runtime.nodes import lists
from tests.runtime.nodes.support import failure, outputs, run
from tests.server.helpers import ServerHandle
from tests.support.client import connect
from tests.support.graphs import edge, graph, nd


async def drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


def test_length() -> None:
    assert lists.length(values=[1, [2, 3], None]) == 3
    assert lists.length() == 0


def test_list_range() -> None:
    assert lists.list_range(start=1, stop=7, step=2) == [1, 3, 5]
    assert lists.list_range(start=3, stop=0, step=-1) == [3, 2, 1]
    assert lists.list_range() == []
    with pytest.raises(ValueError):
        lists.list_range(stop=3, step=0)


def test_generate_sequence_streams_each_number() -> None:
    assert asyncio.run(drain(lists.generate_sequence(start=0, stop=3))) == [0, 1, 2]
    assert asyncio.run(drain(lists.generate_sequence())) == []
    assert spec_of(lists.generate_sequence).kind == "stream"


def test_slice_stop_zero_means_to_the_end() -> None:
    values = [0, 1, 2, 3, 4, 5]
    assert lists.slice_list(values=values, start=2) == [2, 3, 4, 5]
    assert lists.slice_list(values=values, start=1, stop=4) == [1, 2, 3]
    assert lists.slice_list(values=values, start=-3) == [3, 4, 5]
    assert lists.slice_list(values=values, start=-1, step=-2) == [5, 3, 1]
    # As in NodeTool: start 0 is a real index even when stepping backwards.
    assert lists.slice_list(values=values, step=-2) == [0]
    assert lists.slice_list(values=values, start=10) == []
    with pytest.raises(ValueError):
        lists.slice_list(values=values, step=0)


def test_select_elements() -> None:
    assert lists.select_elements(values=["a", "b", "c"], indices=[2, 0, -1]) == ["c", "a", "c"]
    assert lists.select_elements(values=["a"], indices=[]) == []
    with pytest.raises(IndexError):
        lists.select_elements(values=["a"], indices=[1])


def test_get_element() -> None:
    assert lists.get_element(values=["a", "b"], index=1) == "b"
    assert lists.get_element(values=["a", "b"], index=-1) == "b"
    with pytest.raises(IndexError):
        lists.get_element(values=[], index=0)


def test_append_and_extend_return_new_lists() -> None:
    values = [1]
    assert lists.append(values=values, value=[2]) == [1, [2]]
    assert lists.extend(values=values, other_values=[2, 3]) == [1, 2, 3]
    assert values == [1]
    assert lists.append() == [()]  # NodeTool's default value is an empty tuple


def test_dedupe_keeps_first_occurrences() -> None:
    assert lists.dedupe(values=[3, 1, 3, 2, 1]) == [3, 1, 2]
    assert lists.dedupe() == []
    with pytest.raises(TypeError):
        lists.dedupe(values=[[1], [1]])


def test_reverse_and_randomize() -> None:
    assert lists.reverse(values=[1, 2, 3]) == [3, 2, 1]
    values = list(range(50))
    shuffled = lists.randomize(values=values)
    assert sorted(shuffled) == values and values == list(range(50))
    assert lists.randomize() == []


def test_sort() -> None:
    assert lists.sort(values=[3, 1, 2]) == [1, 2, 3]
    assert lists.sort(values=["b", "a"], order="descending") == ["b", "a"]
    with pytest.raises(TypeError):
        lists.sort(values=[1, "a"])


def test_set_operations_keep_first_order() -> None:
    assert lists.intersection(list1=[3, 1, 2, 1], list2=[1, 3]) == [3, 1]
    assert lists.union(list1=[2, 1], list2=[1, 3, 2]) == [2, 1, 3]
    assert lists.difference(list1=[3, 1, 2, 3], list2=[1]) == [3, 2]
    assert lists.intersection() == lists.union() == lists.difference() == []


def test_chunk() -> None:
    assert lists.chunk(values=[1, 2, 3, 4, 5], chunk_size=2) == [[1, 2], [3, 4], [5]]
    assert lists.chunk(values=[], chunk_size=3) == []
    assert spec_of(lists.chunk).properties["chunk_size"].min == 0


def test_numeric_aggregates() -> None:
    values = [2.0, 3.0, 4.0]
    assert lists.sum_list(values=values) == 9.0
    assert lists.average(values=values) == 3.0
    assert lists.minimum(values=values) == 2.0
    assert lists.maximum(values=values) == 4.0
    assert lists.product(values=values) == 24.0


@pytest.mark.parametrize(
    "fn", [lists.sum_list, lists.average, lists.minimum, lists.maximum, lists.product]
)
def test_numeric_aggregates_of_an_empty_list_fail(fn: Any) -> None:
    with pytest.raises(ValueError, match="empty list"):
        fn(values=[])


def test_flatten() -> None:
    nested = [[1, [2, 3]], [4, [5, [6]]], 7]
    assert lists.flatten(values=nested) == [1, 2, 3, 4, 5, 6, 7]
    assert lists.flatten(values=nested, max_depth=1) == [1, [2, 3], 4, [5, [6]], 7]
    assert lists.flatten(values=nested, max_depth=0) == nested
    assert lists.flatten() == []


# -- through a real server ---------------------------------------------------------------------


async def test_list_nodes_in_a_graph(server: ServerHandle) -> None:
    """ListRange → Reverse → Slice → Sum → Output, with ints converted to floats for Sum."""
    nodes = graph(
        nd("r", "nodetool.list.ListRange", start=1, stop=6),
        nd("rev", "nodetool.list.Reverse"),
        nd("s", "nodetool.list.Slice", stop=3),
        nd("sum", "nodetool.list.Sum"),
        nd("out", "nodetool.output.Output", name="sum"),
        edges=[
            edge("r", "rev", "values"),
            edge("rev", "s", "values"),
            edge("s", "sum", "values"),
            edge("sum", "out", "value"),
        ],
    )
    assert outputs(await run(server, nodes)) == {"sum": [12.0]}


async def test_generate_sequence_streams_into_the_output(server: ServerHandle) -> None:
    nodes = graph(
        nd("g", "nodetool.list.GenerateSequence", start=0, stop=6, step=2),
        nd("out", "nodetool.output.Output", name="n"),
        edges=[edge("g", "out", "value")],
    )
    frames = await run(server, nodes)
    assert [f["value"] for f in frames if f.get("type") == "output_update"] == [0, 2, 4]
    assert outputs(frames) == {"n": [0, 2, 4]}


async def test_out_of_range_index_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    nodes = graph(
        nd("get", "nodetool.list.GetElement", values=[1, 2], index=5),
        nd("out", "nodetool.output.Output", name="x"),
        edges=[edge("get", "out", "value")],
    )
    error = failure(await run(server, nodes))
    assert "get" in error and "nodetool.list.GetElement" in error and "IndexError" in error


async def test_non_numbers_for_sum_fail_the_run_naming_the_node(server: ServerHandle) -> None:
    nodes = graph(
        nd("l", "nodetool.input.StringListInput", name="l", value=["a"]),
        nd("sum", "nodetool.list.Sum"),
        edges=[edge("l", "sum", "values")],
    )
    error = failure(await run(server, nodes))
    assert "nodetool.list.Sum" in error


async def test_empty_list_average_fails_the_run(server: ServerHandle) -> None:
    error = failure(await run(server, graph(nd("a", "nodetool.list.Average"))))
    assert "nodetool.list.Average" in error and "empty list" in error


async def test_get_node_describes_sort_as_nodetool_does(server: ServerHandle) -> None:
    """get_node over the socket: NodeTool's title, property names, enum values, defaults."""
    async with connect(server) as client:
        await client.command("get_node", {"node_type": "nodetool.list.Sort"}, request_id="s")
        meta = (await client.recv())["result"]
    assert meta["title"] == "Sort" and meta["namespace"] == "nodetool.list"
    props = {p["name"]: p for p in meta["properties"]}
    assert list(props) == ["values", "order"]
    assert props["values"]["default"] == []
    assert props["values"]["type"]["type"] == "list"
    assert props["order"]["default"] == "ascending"
    assert props["order"]["type"]["values"] == ["ascending", "descending"]
    assert meta["outputs"] == [
        {
            "name": "output",
            "type": {
                "type": "list",
                "optional": False,
                "type_args": [{"type": "any", "optional": False, "type_args": []}],
            },
            "stream": False,
        }
    ]
