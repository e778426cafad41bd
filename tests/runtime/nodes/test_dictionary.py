"""``nodetool.dictionary.*``: each node against NodeTool's semantics, and through a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from noderun.runtime.node import spec_of
from noderun.runtime.nodes import dictionary as d
from tests.runtime.nodes.support import failure, outputs, run
from tests.server.helpers import ServerHandle
from tests.support.graphs import edge, graph, nd


def passed(stream: AsyncIterator[Any]) -> list[Any]:
    async def drain() -> list[Any]:
        return [item async for item in stream]

    return asyncio.run(drain())


def test_get_value() -> None:
    assert d.get_value(dictionary={"a": 1}, key="a") == 1
    assert d.get_value(dictionary={"a": 1}, key="b", default="none") == "none"
    assert d.get_value(dictionary={}, key="b") == ()  # NodeTool's default: an empty tuple


def test_update_combine_remove_filter_leave_inputs_alone() -> None:
    base = {"a": 1, "b": 2}
    assert d.update(dictionary=base, new_pairs={"b": 3, "c": 4}) == {"a": 1, "b": 3, "c": 4}
    assert d.combine(dict_a=base, dict_b={"a": 0}) == {"a": 0, "b": 2}
    assert d.remove(dictionary=base, key="a") == {"b": 2}
    assert d.remove(dictionary=base, key="zz") == base
    assert d.filter_keys(dictionary=base, keys=["b", "missing"]) == {"b": 2}
    assert base == {"a": 1, "b": 2}


def test_parse_json() -> None:
    assert d.parse_json(json_string='{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(ValueError, match="not a dictionary"):
        d.parse_json(json_string="[1]")
    with pytest.raises(ValueError):
        d.parse_json(json_string="{nope")
    with pytest.raises(ValueError):
        d.parse_json(json_string="")


def test_zip_drops_the_longer_lists_extra_items() -> None:
    assert d.zip_lists(keys=["a", "b", "c"], values=[1, 2]) == {"a": 1, "b": 2}
    assert d.zip_lists() == {}


def test_reduce_dictionaries() -> None:
    rows = [
        {"id": "x", "v": 1, "w": 9},
        {"id": "y", "v": 2},
        {"id": "x", "v": 3},
    ]
    assert d.reduce_dictionaries(dictionaries=rows, key_field="id", value_field="v") == {
        "x": 1,
        "y": 2,
    }
    assert d.reduce_dictionaries(
        dictionaries=rows, key_field="id", value_field="v", conflict_resolution="last"
    ) == {"x": 3, "y": 2}
    assert d.reduce_dictionaries(dictionaries=rows[:2], key_field="id") == {
        "x": {"v": 1, "w": 9},
        "y": {"v": 2},
    }
    with pytest.raises(ValueError, match="Duplicate key found: x"):
        d.reduce_dictionaries(
            dictionaries=rows, key_field="id", value_field="v", conflict_resolution="error"
        )
    with pytest.raises(ValueError, match="Key field 'nope'"):
        d.reduce_dictionaries(dictionaries=rows, key_field="nope")
    with pytest.raises(ValueError, match="Value field 'w'"):
        d.reduce_dictionaries(dictionaries=rows, key_field="id", value_field="w")
    assert d.reduce_dictionaries() == {}


def test_arg_max() -> None:
    assert d.arg_max(scores={"cat": 0.2, "dog": 0.7, "eel": 0.7}) == "dog"
    with pytest.raises(ValueError, match="empty"):
        d.arg_max(scores={})


def test_to_json() -> None:
    assert d.to_json(dictionary={"a": [1, None], "b": b"raw"}) == '{"a": [1, null], "b": "raw"}'
    assert d.to_json() == "{}"


def test_filter_dict_by_value() -> None:
    row = {"name": "alpha", "tags": [1, 2, 3]}
    assert passed(d.filter_dict_by_value(value=row, key="name", criteria="ph")) == [row]
    assert passed(d.filter_dict_by_value(value=row, key="name", criteria="zz")) == []
    assert passed(d.filter_dict_by_value(value=row, key="missing", criteria="")) == []
    cases: list[tuple[d.ValueFilter, str]] = [
        ("starts_with", "al"),
        ("ends_with", "ha"),
        ("equals", "alpha"),
        ("type_is", "str"),
    ]
    for filter_type, criteria in cases:
        assert passed(
            d.filter_dict_by_value(
                value=row, key="name", filter_type=filter_type, criteria=criteria
            )
        ) == [row], filter_type
    assert passed(
        d.filter_dict_by_value(value=row, key="tags", filter_type="length_greater", criteria="2")
    ) == [row]
    assert (
        passed(
            d.filter_dict_by_value(value=row, key="tags", filter_type="exact_length", criteria="x")
        )
        == []
    )
    assert spec_of(d.filter_dict_by_value).kind == "stream"


def test_filter_dict_by_range_and_number() -> None:
    row = {"n": 5}
    assert passed(d.filter_dict_by_range(value=row, key="n", min_value=5, max_value=6)) == [row]
    assert (
        passed(
            d.filter_dict_by_range(value=row, key="n", min_value=5, max_value=6, inclusive=False)
        )
        == []
    )
    assert passed(d.filter_dict_by_range(value={"n": "5"}, key="n", max_value=9)) == []
    assert passed(d.filter_dict_by_number(value=row, key="n", compare_value=4)) == [row]
    assert passed(d.filter_dict_by_number(value=row, key="n", filter_type="odd")) == [row]
    assert passed(d.filter_dict_by_number(value=row, key="n", filter_type="even")) == []
    assert passed(d.filter_dict_by_number(value={"n": 4.0}, key="n", filter_type="even")) == []
    assert passed(d.filter_dict_by_number(value=row, key="n", filter_type="negative")) == []
    assert passed(d.filter_dict_by_number(value={"n": True}, key="n", compare_value=0)) == []


def test_filter_dict_regex() -> None:
    row = {"mail": "ada@example.org"}
    assert passed(d.filter_dict_regex(value=row, key="mail", pattern=r"@example\.")) == [row]
    assert (
        passed(d.filter_dict_regex(value=row, key="mail", pattern=r"@example\.", full_match=True))
        == []
    )
    assert passed(d.filter_dict_regex(value=row, key="mail", pattern="(")) == []


# -- through a real server ---------------------------------------------------------------------


async def test_dictionary_nodes_in_a_graph(server: ServerHandle) -> None:
    nodes = graph(
        nd("p", "nodetool.dictionary.ParseJSON", json_string='{"a": 1, "b": 2}'),
        nd("u", "nodetool.dictionary.Update", new_pairs={"c": 3}),
        nd("r", "nodetool.dictionary.Remove", key="a"),
        nd("out", "nodetool.output.Output", name="d"),
        edges=[
            edge("p", "u", "dictionary"),
            edge("u", "r", "dictionary"),
            edge("r", "out", "value"),
        ],
    )
    assert outputs(await run(server, nodes)) == {"d": [{"b": 2, "c": 3}]}


async def test_filter_passes_only_matching_dictionaries_of_a_stream(
    server: ServerHandle,
) -> None:
    """ForEach streams rows; FilterDictByNumber passes the matching ones; Collect lists them."""
    rows = [{"n": 1}, {"n": 7}, {"n": 3}, {"n": 9}]
    nodes = graph(
        nd("each", "nodetool.control.ForEach", input_list=rows),
        nd("f", "nodetool.dictionary.FilterDictByNumber", key="n", compare_value=5),
        nd("c", "nodetool.control.Collect"),
        nd("out", "nodetool.output.Output", name="big"),
        edges=[
            edge("each", "f", "value"),
            edge("f", "c", "input_item"),
            edge("c", "out", "value"),
        ],
    )
    assert outputs(await run(server, nodes)) == {"big": [[{"n": 7}, {"n": 9}]]}


async def test_invalid_json_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    nodes = graph(
        nd("bad", "nodetool.dictionary.ParseJSON", json_string="{not json"),
        nd("out", "nodetool.output.Output", name="d"),
        edges=[edge("bad", "out", "value")],
    )
    error = failure(await run(server, nodes))
    assert "bad" in error and "nodetool.dictionary.ParseJSON" in error
