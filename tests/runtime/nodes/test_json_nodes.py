"""``lib.json.*``: each node against NodeTool's semantics, and through a real server."""

from __future__ import annotations

import json

import pytest

from noderun.runtime.node import spec_of
from noderun.runtime.nodes import json_nodes as j
from tests.runtime.nodes.support import failure, outputs, run
from tests.server.helpers import ServerHandle
from tests.support.graphs import edge, graph, nd

DATA = {"a": {"b": [{"c": 1}, {"c": "2.5"}], "t": True, "s": "xy"}}


def test_parse_dict_and_list() -> None:
    assert j.parse_dict(json_string='{"k": [1]}') == {"k": [1]}
    assert j.parse_list(json_string="[1, {}]") == [1, {}]
    with pytest.raises(ValueError, match="object"):
        j.parse_dict(json_string="[]")
    with pytest.raises(ValueError, match="array"):
        j.parse_list(json_string="{}")
    with pytest.raises(json.JSONDecodeError):
        j.parse_list(json_string="[1,")


def test_stringify_json() -> None:
    assert j.stringify_json(data={"a": [1]}) == '{\n  "a": [\n    1\n  ]\n}'
    assert j.stringify_json(data=[1, "x"], indent=0) == '[\n1,\n"x"\n]'
    assert j.stringify_json() == "{}"


def test_json_path_walks_dicts_and_list_indices() -> None:
    assert j.get_json_path_int(data=DATA, path="a.b.0.c") == 1
    assert j.get_json_path_float(data=DATA, path="a.b.1.c") == 2.5
    assert j.get_json_path_str(data=DATA, path="a.b.1.c") == "2.5"
    assert j.get_json_path_str(data=DATA, path="a.t") == "True"  # Python's text, as NodeTool
    assert j.get_json_path_bool(data=DATA, path="a.t") is True
    assert j.get_json_path_list(data=DATA, path="a.b") == [{"c": 1}, {"c": "2.5"}]
    assert j.get_json_path_list(data=DATA, path="a.s") == ["x", "y"]
    assert j.get_json_path_dict(data=DATA, path="a.b.0") == {"c": 1}


def test_json_path_that_leads_nowhere_gives_the_default() -> None:
    assert j.get_json_path_int(data=DATA, path="a.b.5.c", default=-1) == -1
    assert j.get_json_path_int(data=DATA, path="a.b.-1.c", default=-1) == -1
    assert j.get_json_path_str(data=DATA, path="a.zz", default="d") == "d"
    assert j.get_json_path_float(data=DATA, path="a.s.0") == 0.0
    assert j.get_json_path_bool(data=[], path="0", default=True) is True
    assert j.get_json_path_list(data=DATA, path="") == []
    assert j.get_json_path_dict(data=None, path="a") == {}


def test_json_path_value_that_does_not_convert_fails() -> None:
    with pytest.raises(ValueError):
        j.get_json_path_int(data=DATA, path="a.s")
    with pytest.raises(TypeError):
        j.get_json_path_list(data={"n": 5}, path="n")
    with pytest.raises(ValueError):
        j.get_json_path_dict(data={"s": "xy"}, path="s")


def test_filter_json() -> None:
    rows = [{"k": 1}, {"k": 2}, {"j": 1}]
    assert j.filter_json(array=rows, key="k", value=1) == [{"k": 1}]
    assert j.filter_json(array=rows, key="k", value=None) == [{"j": 1}]
    assert j.filter_json() == []


def test_json_template() -> None:
    template = '{"name": "$user", "age": "$age", "greeting": "Hi $user, $age!"}'
    assert j.json_template(template=template, values={"user": 'A"da', "age": 36}) == {
        "name": 'A"da',
        "age": 36,
        "greeting": 'Hi A"da, 36!',
    }
    assert j.json_template(template="{}") == {}
    with pytest.raises(ValueError, match="invalid"):
        j.json_template(template='{"a": $x}', values={})
    with pytest.raises(ValueError, match="object"):
        j.json_template(template='["$x"]', values={"x": 1})


def test_untyped_json_types_stay_bare_in_the_metadata() -> None:
    """NodeTool declares ParseDict → ``dict``, ParseList → ``list`` (no type arguments)."""
    outputs_of = spec_of(j.parse_dict).metadata()["outputs"]
    assert outputs_of == [
        {
            "name": "output",
            "type": {"type": "dict", "optional": False, "type_args": []},
            "stream": False,
        }
    ]


# -- through a real server ---------------------------------------------------------------------


async def test_json_nodes_in_a_graph(server: ServerHandle) -> None:
    nodes = graph(
        nd("p", "lib.json.ParseDict", json_string=json.dumps(DATA)),
        nd("g", "lib.json.GetJSONPathInt", path="a.b.0.c"),
        nd("out", "nodetool.output.Output", name="c"),
        edges=[edge("p", "g", "data"), edge("g", "out", "value")],
    )
    assert outputs(await run(server, nodes)) == {"c": [1]}


async def test_invalid_json_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    nodes = graph(
        nd("in", "nodetool.input.StringInput", name="s"),
        nd("parse", "lib.json.ParseList"),
        nd("out", "nodetool.output.Output", name="l"),
        edges=[edge("in", "parse", "json_string"), edge("parse", "out", "value")],
    )
    error = failure(await run(server, nodes, params={"s": "[1, 2"}))
    assert "parse" in error and "lib.json.ParseList" in error and "JSONDecodeError" in error
