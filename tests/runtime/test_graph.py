"""Graph validation: every invalid graph is refused before anything runs."""

from __future__ import annotations

import pytest

from noderun.protocol.client import Graph
from noderun.runtime.errors import GraphError
from noderun.runtime.graph import Plan, plan_graph
from noderun.runtime.node import node as define
from noderun.runtime.registry import Registry, default_registry
from tests.support.hub import edge, node

REGISTRY = default_registry(debug_nodes=True)


def plan(nodes: list, edges: list | None = None, params: dict[str, object] | None = None):  # type: ignore[no-untyped-def,type-arg]
    return plan_graph(Graph(nodes=nodes, edges=edges or []), params, REGISTRY)


def refused(nodes: list, edges: list | None = None, params: dict[str, object] | None = None) -> str:  # type: ignore[type-arg]
    with pytest.raises(GraphError) as info:
        plan(nodes, edges, params)
    return info.value.detail


def test_single_node_plan_is_the_hot_path() -> None:
    result = plan([node("n1", "nodetool.text.Concat", a="x", b="y")])
    assert result.single
    assert result.nodes[0].properties == {"a": "x", "b": "y"}


def test_defaults_fill_missing_properties_and_unknown_keys_are_ignored() -> None:
    result = plan([node("n1", "nodetool.text.Concat", a="x", ui_color="red")])
    assert result.nodes[0].properties == {"a": "x", "b": ""}


def test_empty_graph() -> None:
    assert "no nodes" in refused([])


def test_unknown_node_type() -> None:
    assert "unknown node type 'nope.Nope'" in refused([node("n1", "nope.Nope")])


def test_duplicate_node_id() -> None:
    assert "duplicate node id 'a'" in refused(
        [node("a", "nodetool.constant.String"), node("a", "nodetool.constant.String")]
    )


def test_wrong_property_type_names_node_and_property() -> None:
    detail = refused([node("n1", "nodetool.text.Concat", a=5)])
    assert "'n1'" in detail and "'a'" in detail and "str" in detail


def test_bool_is_not_an_integer() -> None:
    assert "int" in refused([node("n1", "nodetool.constant.Integer", value=True)])


def test_int_is_accepted_for_float() -> None:
    assert (
        plan([node("n1", "nodetool.constant.Float", value=2)]).nodes[0].properties["value"] == 2.0
    )


def test_edge_to_missing_node() -> None:
    assert "missing node 'ghost'" in refused(
        [node("a", "nodetool.constant.String")], [edge("a", "ghost", "text")]
    )


def test_edge_from_unknown_output_handle() -> None:
    detail = refused(
        [node("a", "nodetool.constant.String"), node("b", "nodetool.text.ToUppercase")],
        [edge("a", "b", "text", source_handle="nope")],
    )
    assert "no output 'nope'" in detail


def test_edge_to_unknown_input_handle() -> None:
    detail = refused(
        [node("a", "nodetool.constant.String"), node("b", "nodetool.text.ToUppercase")],
        [edge("a", "b", "nope")],
    )
    assert "no input 'nope'" in detail


def test_cycle_is_refused_naming_its_nodes() -> None:
    detail = refused(
        [node("a", "nodetool.text.ToUppercase"), node("b", "nodetool.text.ToUppercase")],
        [edge("a", "b", "text"), edge("b", "a", "text")],
    )
    assert "cycle" in detail and "'a'" in detail and "'b'" in detail


def test_required_property_without_value_or_edge() -> None:
    @define("test.Needs")
    def needs(x: int) -> int:
        return x

    registry = Registry([needs])
    with pytest.raises(GraphError) as info:
        plan_graph(Graph(nodes=[node("n", "test.Needs")]), None, registry)
    assert "required 'x'" in info.value.detail
    assert plan_graph(Graph(nodes=[node("n", "test.Needs", x=1)]), None, registry).single


def test_params_replace_input_values_and_are_type_checked() -> None:
    result = plan([node("i", "nodetool.input.IntegerInput", name="n", value=1)], params={"n": 7})
    assert result.nodes[0].properties["value"] == 7
    assert "param 'n'" in refused(
        [node("i", "nodetool.input.IntegerInput", name="n")], params={"n": "seven"}
    )


def test_plan_cache_reuses_single_inline_node_plans_only() -> None:
    from noderun.runtime.graph import PlanCache

    cache = PlanCache(REGISTRY, size=2)
    concat = Graph(nodes=[node("n1", "nodetool.text.Concat", a="x", b="y")])
    assert cache.plan(concat, None) is cache.plan(concat, None)
    blocking = Graph(nodes=[node("s", "noderun.debug.BlockingSleep", seconds=0.0)])
    assert cache.plan(blocking, None) is not cache.plan(blocking, None)
    inputs = Graph(nodes=[node("i", "nodetool.input.IntegerInput", name="n")])
    for value in (1, 2):
        planned = cache.plan(inputs, {"n": value})
        assert isinstance(planned, Plan)
        assert planned.nodes[0].properties["value"] == value


def test_plan_cache_hands_large_graphs_over_unplanned_and_refuses_those_over_the_limit() -> None:
    from noderun.runtime.graph import PlanCache, Unplanned

    cache = PlanCache(REGISTRY, at_once=2, max_nodes=3)

    def concat_chain(length: int) -> Graph:
        return Graph(
            nodes=[node(f"n{i}", "nodetool.text.Concat") for i in range(length)],
            edges=[edge(f"n{i - 1}", f"n{i}", "a") for i in range(1, length)],
        )

    assert isinstance(cache.plan(concat_chain(2), None), Plan)
    large = cache.plan(concat_chain(3), None)
    assert isinstance(large, Unplanned)
    with pytest.raises(StopIteration) as done:  # its steps make the same plan
        while True:
            next(large.steps)
    assert [n.id for n in done.value.value.nodes] == ["n0", "n1", "n2"]
    with pytest.raises(GraphError, match=r"4 nodes; .* at most 3 \(max_graph_nodes\)"):
        cache.plan(concat_chain(4), None)


def test_plan_cache_tells_true_from_one() -> None:
    from noderun.runtime.graph import PlanCache

    cache = PlanCache(REGISTRY)
    assert cache.plan(Graph(nodes=[node("n", "nodetool.constant.Integer", value=1)]), None)
    with pytest.raises(GraphError):
        cache.plan(Graph(nodes=[node("n", "nodetool.constant.Integer", value=True)]), None)
    with pytest.raises(GraphError):  # failures are never cached as successes either
        cache.plan(Graph(nodes=[node("n", "nodetool.constant.Integer", value=True)]), None)
