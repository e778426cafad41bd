"""``nodetool.output.Output``: every value it receives is returned under its name."""

from __future__ import annotations

from noderun.runtime.node import spec_of
from noderun.runtime.nodes import output
from tests.runtime.nodes.support import outputs, run
from tests.server.helpers import ServerHandle
from tests.support.graphs import edge, graph, nd


def test_output_passes_its_value_through() -> None:
    assert output.output(name="x", value=[1, {"a": None}], description="d") == [1, {"a": None}]
    assert output.output() is None
    spec = spec_of(output.output)
    assert spec.is_output and list(spec.properties) == ["name", "value", "description"]


async def test_every_value_is_returned_in_order_under_the_name(server: ServerHandle) -> None:
    nodes = graph(
        nd("each", "nodetool.control.ForEach", input_list=[{"k": 1}, [2], None]),
        nd("out", "nodetool.output.Output", name="values", description="what came"),
        nd("unnamed", "nodetool.output.Output"),
        edges=[edge("each", "out", "value"), edge("each", "unnamed", "value", "index")],
    )
    frames = await run(server, nodes)
    assert outputs(frames) == {"values": [{"k": 1}, [2], None], "unnamed": [0, 1, 2]}
    names = {f["output_name"] for f in frames if f.get("type") == "output_update"}
    assert names == {"values", "unnamed"}
