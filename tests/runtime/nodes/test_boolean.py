"""nodetool.boolean: each node against NodeTool's semantics, and a real server."""

from __future__ import annotations

import pytest

from noderun.runtime.nodes import boolean
from tests.runtime.nodes.support import failure, outputs, run_graph
from tests.server.helpers import ServerHandle
from tests.support.graphs import edge, nd


@pytest.mark.parametrize(
    ("operation", "table"),
    [
        ("and", (False, False, False, True)),
        ("or", (False, True, True, True)),
        ("xor", (False, True, True, False)),
        ("nand", (True, True, True, False)),
        ("nor", (True, False, False, False)),
    ],
)
def test_logical_operator_truth_tables(operation: str, table: tuple[bool, ...]) -> None:
    pairs = [(False, False), (False, True), (True, False), (True, True)]
    got = tuple(boolean.logical_operator(a=a, b=b, operation=operation) for a, b in pairs)  # type: ignore[arg-type]
    assert got == table


def test_not() -> None:
    assert boolean.not_(value=True) is False
    assert boolean.not_() is True


def test_compare_operators() -> None:
    assert boolean.compare() is True
    assert boolean.compare(a=1, b=1.0, comparison="==") is True
    assert boolean.compare(a=1, b=2, comparison="!=") is True
    assert boolean.compare(a=2, b=1.5, comparison=">") is True
    assert boolean.compare(a=2, b=2, comparison="<") is False
    assert boolean.compare(a=2, b=2, comparison=">=") is True
    assert boolean.compare(a=3, b=2, comparison="<=") is False


def test_conditional_switch_returns_either_value() -> None:
    assert boolean.conditional_switch(condition=True, if_true="yes", if_false="no") == "yes"
    assert boolean.conditional_switch(condition=False, if_true="yes", if_false={"n": 1}) == {"n": 1}
    assert boolean.conditional_switch(condition=True, if_true=None) is None


def test_is_none() -> None:
    assert boolean.is_none(value=None) is True
    assert boolean.is_none(value=0) is False
    assert boolean.is_none() is False


def test_is_in_uses_equality() -> None:
    assert boolean.is_in(value=2, options=[1, 2, 3]) is True
    assert boolean.is_in(value=2.0, options=[1, 2]) is True
    assert boolean.is_in(value="a", options=[]) is False
    assert boolean.is_in(value=[1], options=[[1], [2]]) is True


def test_all_and_some() -> None:
    assert boolean.all_(values=[True, True]) is True
    assert boolean.all_(values=[True, False]) is False
    assert boolean.all_(values=[]) is True
    assert boolean.some(values=[False, True]) is True
    assert boolean.some(values=[False]) is False
    assert boolean.some(values=[]) is False


async def test_boolean_graph_over_websocket(server: ServerHandle) -> None:
    """Compare(3 > 2) → ConditionalSwitch picks if_true; Not, All, IsIn alongside."""
    terminal = await run_graph(
        server,
        nd("cmp", "nodetool.boolean.Compare", a=3, b=2, comparison=">"),
        nd("switch", "nodetool.boolean.ConditionalSwitch", if_true="big", if_false="small"),
        nd("not", "nodetool.boolean.Not"),
        nd("all", "nodetool.boolean.All", values=[True, True]),
        nd("in", "nodetool.boolean.IsIn", value="b", options=["a", "b"]),
        edges=[edge("cmp", "switch", "condition"), edge("cmp", "not", "value")],
    )
    assert outputs(terminal) == {
        "switch": {"output": "big"},
        "not": {"output": False},
        "all": {"output": True},
        "in": {"output": True},
    }


async def test_wrong_type_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    terminal = await run_graph(server, nd("all", "nodetool.boolean.All", values=["yes"]))
    failure(terminal, "all", "nodetool.boolean.All")
    terminal = await run_graph(
        server, nd("op", "nodetool.boolean.LogicalOperator", operation="xnor")
    )
    failure(terminal, "op", "nodetool.boolean.LogicalOperator")
