"""``nodetool.input.*`` and NodeTool's streaming inputs, through a real server.

An input node given neither a ``value`` nor a param, that feeds a node, stays
open: the SDK's ``stream_input`` frames (``job_id``, ``workflow_id``,
``input``, ``handle`` nil, ``value``; ``type`` and ``request_id`` nil on the
envelope) each send one value downstream until ``end_input_stream``.
"""

from __future__ import annotations

from noderun.runtime.node import spec_of
from noderun.runtime.nodes import input as nodes
from tests.runtime.nodes.support import outputs, run
from tests.server.helpers import ServerHandle
from tests.support.client import Client, connect
from tests.support.frames import Frame
from tests.support.graphs import edge, graph, nd

UPPER = [
    nd("up", "nodetool.text.ToUppercase"),
    nd("out", "nodetool.output.Output", name="out"),
]
UPPER_EDGES = [edge("in", "up", "text"), edge("up", "out", "value")]


def stream(job_id: str, name: str, value: object, handle: str | None = None) -> Frame:
    """The data of the SDK's ``stream_input`` (every key, nil where it sends nil)."""
    return {"job_id": job_id, "workflow_id": "wf", "input": name, "handle": handle, "value": value}


def end(job_id: str, name: str, handle: str | None = None) -> Frame:
    return {"job_id": job_id, "workflow_id": "wf", "input": name, "handle": handle}


async def started(client: Client, nodes: Frame, params: Frame | None = None) -> str:
    job_id = await client.run_job(nodes, params=params)
    frames = await client.recv_until(lambda f: "job_seq" not in f)
    assert frames[-1]["message"] == "Job started"
    return job_id


async def answer(client: Client) -> Frame:
    """The next frame that is not a message of a run (an ack or an error)."""
    return (await client.recv_until(lambda f: "job_seq" not in f))[-1]


# -- the nodes themselves ----------------------------------------------------------------------


def test_string_input_cuts_to_max_length() -> None:
    assert nodes.string_input(value="abcdef", max_length=3) == "abc"
    assert nodes.string_input(value="abcdef", max_length=0) == "abcdef"
    assert nodes.string_input(value="", max_length=3) == ""


def test_value_inputs_pass_their_value_through() -> None:
    assert nodes.integer_input(value=7, min=10, max=20) == 7  # min/max are UI hints
    assert nodes.float_input(value=-1.5) == -1.5
    assert nodes.boolean_input(value=True) is True
    assert nodes.string_list_input(value=["a", "b"]) == ["a", "b"]
    assert nodes.text_list_input(value=[]) == []
    assert nodes.select_input(value="c", options=["a", "b"]) == "c"
    assert nodes.file_path_input(value="/nonexistent/file") == "/nonexistent/file"
    assert nodes.folder_path_input(value="~/x") == "~/x"


def test_every_input_has_nodetools_common_properties() -> None:
    for fn in nodes.NODES:
        spec = spec_of(fn)
        assert spec.is_input
        assert list(spec.properties)[:3] == ["name", "value", "description"]
        assert "streaming" not in spec.properties


async def test_params_replace_values_and_the_run_finishes(server: ServerHandle) -> None:
    """Inputs all given by params (or by value): the run completes with no streaming."""
    nodes_ = graph(
        nd("in", "nodetool.input.StringInput", name="s", value="unused", max_length=2),
        nd("n", "nodetool.input.IntegerInput", name="n"),
        nd("l", "nodetool.input.StringListInput", name="l", value=["x"]),
        nd("s_out", "nodetool.output.Output", name="s"),
        nd("n_out", "nodetool.output.Output", name="n"),
        nd("l_out", "nodetool.output.Output", name="l"),
        edges=[
            edge("in", "s_out", "value"),
            edge("n", "n_out", "value"),
            edge("l", "l_out", "value"),
        ],
    )
    frames = await run(server, nodes_, params={"s": "hello", "n": 5})
    assert outputs(frames) == {"s": ["he"], "n": [5], "l": [["x"]]}


async def test_a_param_of_the_wrong_type_fails_the_run_naming_it(server: ServerHandle) -> None:
    frames = await run(
        server,
        graph(nd("n", "nodetool.input.IntegerInput", name="n"), *UPPER[1:]),
        params={"n": "seven"},
    )
    assert frames[-1]["status"] == "failed"
    assert "'n'" in frames[-1]["error"]


async def test_lone_input_without_value_finishes_at_once(server: ServerHandle) -> None:
    """An input that feeds no node has nothing to keep open (the SDK's single-node run)."""
    frames = await run(server, graph(nd("in", "nodetool.input.StringInput", name="x")))
    assert outputs(frames) == {"in": {"output": ""}}


# -- streaming ---------------------------------------------------------------------------------


async def test_sdk_stream_input_frames_flow_through_an_input_without_value(
    server: ServerHandle,
) -> None:
    """No ``value``, no param: the input stays open; each streamed value reaches the Output
    as it arrives; end_input_stream ends the run."""
    nodes_ = graph(nd("in", "nodetool.input.StringInput", name="prompt"), *UPPER, edges=UPPER_EDGES)
    async with connect(server) as client:
        job_id = await started(client, nodes_)
        await client.command("stream_input", stream(job_id, "prompt", "a"))
        first = await client.recv_until(lambda f: f.get("type") == "output_update")
        assert first[-1]["value"] == "A"
        await client.command("stream_input", stream(job_id, "prompt", "b"))
        await client.command("end_input_stream", end(job_id, "prompt"))
        frames = first + await client.until_terminal(job_id)
    acks = [f["message"] for f in frames if "job_seq" not in f]
    assert acks == ["Input item streamed", "Input item streamed", "Input stream ended"]
    assert [f["value"] for f in frames if f.get("type") == "output_update"] == ["A", "B"]
    assert outputs(frames) == {"out": ["A", "B"]}


async def test_streamed_values_are_collected_when_the_stream_ends(server: ServerHandle) -> None:
    """IntegerInput → Collect → Output: one list, sent only after end_input_stream."""
    nodes_ = graph(
        nd("in", "nodetool.input.IntegerInput", name="n"),
        nd("c", "nodetool.control.Collect"),
        nd("out", "nodetool.output.Output", name="all"),
        edges=[edge("in", "c", "input_item"), edge("c", "out", "value")],
    )
    async with connect(server) as client:
        job_id = await started(client, nodes_)
        for value in (3, 1, 2):
            await client.command("stream_input", stream(job_id, "n", value))
            assert (await answer(client))["message"] == "Input item streamed"
        before_end = await client.ping_barrier()
        assert not [f for f in before_end if f.get("type") == "output_update"]
        await client.command("end_input_stream", end(job_id, "n"))
        frames = await client.until_terminal(job_id)
    assert outputs(frames) == {"all": [[3, 1, 2]]}


async def test_handle_output_is_honoured_and_an_unknown_handle_rejected(
    server: ServerHandle,
) -> None:
    """``handle`` names the input node's output: "output" works, anything else is an
    ``input_rejected`` error (never ``invalid_*``) that leaves the run going."""
    nodes_ = graph(nd("in", "nodetool.input.StringInput", name="x"), *UPPER, edges=UPPER_EDGES)
    async with connect(server) as client:
        job_id = await started(client, nodes_)
        await client.command("stream_input", stream(job_id, "x", "v", handle="value"))
        rejected = await answer(client)
        await client.command("end_input_stream", end(job_id, "x", handle="value"))
        end_rejected = await answer(client)
        await client.command("stream_input", stream(job_id, "x", "ok", handle="output"))
        await client.command("end_input_stream", end(job_id, "x", handle="output"))
        frames = await client.until_terminal(job_id)
    for error in (rejected, end_rejected):
        assert error["error"] == "input_rejected"
        assert "'value'" in error["message"] and error["job_id"] == job_id
    assert outputs(frames) == {"out": ["OK"]}


async def test_streamed_value_of_the_wrong_type_is_rejected(server: ServerHandle) -> None:
    nodes_ = graph(
        nd("in", "nodetool.input.IntegerInput", name="n"),
        nd("out", "nodetool.output.Output", name="out"),
        edges=[edge("in", "out", "value")],
    )
    async with connect(server) as client:
        job_id = await started(client, nodes_)
        await client.command("stream_input", stream(job_id, "n", "seven"))
        rejected = await answer(client)
        await client.command("stream_input", stream(job_id, "n", 7))
        await client.command("end_input_stream", end(job_id, "n"))
        frames = await client.until_terminal(job_id)
    assert rejected["error"] == "input_rejected"
    assert outputs(frames) == {"out": [7]}


async def test_input_given_a_value_or_param_is_not_streaming(server: ServerHandle) -> None:
    """While the run waits on an open input, streaming to one that got a param or a value
    is rejected naming it; the open one still works."""
    nodes_ = graph(
        nd("open", "nodetool.input.StringInput", name="open"),
        nd("param", "nodetool.input.StringInput", name="param"),
        nd("valued", "nodetool.input.StringInput", name="valued", value="v"),
        nd("c1", "nodetool.text.Concat"),
        nd("c2", "nodetool.text.Concat"),
        nd("out", "nodetool.output.Output", name="out"),
        edges=[
            edge("open", "c1", "a"),
            edge("param", "c1", "b"),
            edge("c1", "c2", "a"),
            edge("valued", "c2", "b"),
            edge("c2", "out", "value"),
        ],
    )
    async with connect(server) as client:
        job_id = await started(client, nodes_, params={"param": "p"})
        for name in ("param", "valued"):
            await client.command("stream_input", stream(job_id, name, "z"))
            rejected = await answer(client)
            assert rejected["error"] == "input_rejected"
            assert repr(name) in rejected["message"]
        await client.command("stream_input", stream(job_id, "open", "o"))
        await client.command("end_input_stream", end(job_id, "open"))
        frames = await client.until_terminal(job_id)
    assert outputs(frames) == {"out": ["opv"]}


async def test_input_named_by_its_id_when_it_has_no_name(server: ServerHandle) -> None:
    """NodeTool resolves ``input`` by the node's name, else by its id."""
    nodes_ = graph(nd("in", "nodetool.input.StringInput"), *UPPER, edges=UPPER_EDGES)
    async with connect(server) as client:
        job_id = await started(client, nodes_)
        await client.command("stream_input", stream(job_id, "in", "q"))
        await client.command("end_input_stream", end(job_id, "in"))
        frames = await client.until_terminal(job_id)
    assert outputs(frames) == {"out": ["Q"]}


async def test_two_inputs_of_one_name_both_stream(server: ServerHandle) -> None:
    nodes_ = graph(
        nd("a", "nodetool.input.StringInput", name="x"),
        nd("b", "nodetool.input.StringInput", name="x"),
        nd("c", "nodetool.control.Collect"),
        nd("out", "nodetool.output.Output", name="out"),
        edges=[
            edge("a", "c", "input_item"),
            edge("b", "c", "input_item"),
            edge("c", "out", "value"),
        ],
    )
    async with connect(server) as client:
        job_id = await started(client, nodes_)
        await client.command("stream_input", stream(job_id, "x", "v"))
        await client.command("end_input_stream", end(job_id, "x"))
        frames = await client.until_terminal(job_id)
    assert outputs(frames) == {"out": [["v", "v"]]}


async def test_stream_after_the_run_finished_is_not_found(server: ServerHandle) -> None:
    """Inputs given by params: the run ends on its own; a late stream_input finds no run."""
    nodes_ = graph(nd("in", "nodetool.input.StringInput", name="x"), *UPPER, edges=UPPER_EDGES)
    async with connect(server) as client:
        job_id = await started(client, nodes_, params={"x": "p"})
        frames = await client.until_terminal(job_id)
        await client.command("stream_input", stream(job_id, "x", "late"))
        late = await answer(client)
    assert outputs(frames) == {"out": ["P"]}
    assert late == {"error": "Job not found or already completed", "job_id": job_id}
