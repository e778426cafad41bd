"""Runs end to end (PROTOCOL.md §2.1, §2.3, §3): message order, results, validation, failures."""

from __future__ import annotations

from typing import Any

from tests.server.helpers import ServerHandle, running_server
from tests.support.client import Client, connect
from tests.support.frames import Frame, is_terminal
from tests.support.graphs import edge, graph, nd, new_job_id
from tests.support.timing import SECOND

CONCAT = graph(nd("n1", "nodetool.text.Concat", a="hello ", b="world"))


def run_frames(frames: list[Frame], job_id: str) -> list[Frame]:
    """The messages of run ``job_id`` (those with a ``job_seq``)."""
    return [f for f in frames if f.get("job_id") == job_id and "job_seq" in f]


def assert_ack(frame: Frame, job_id: str, workflow_id: str = "wf") -> None:
    assert "type" not in frame, frame
    assert frame["message"] == "Job started"
    assert frame["job_id"] == job_id
    assert frame["workflow_id"] == workflow_id
    assert "job_seq" not in frame


def assert_sequenced(messages: list[Frame], job_id: str, workflow_id: str = "wf") -> None:
    """job_seq runs 1..n by one; every message names the run."""
    assert [m["job_seq"] for m in messages] == list(range(1, len(messages) + 1)), messages
    for message in messages:
        assert message["job_id"] == job_id
        assert message["workflow_id"] == workflow_id
        assert isinstance(message["type"], str)


def kinds(messages: list[Frame]) -> list[tuple[Any, ...]]:
    """``(type, status or node_id…)`` of each message, for order assertions."""
    out: list[tuple[Any, ...]] = []
    for m in messages:
        if m["type"] in ("job_update", "node_update"):
            out.append((m["type"], m["status"]))
        else:
            out.append((m["type"],))
    return out


async def run_to_end(client: Client, nodes: Frame, **options: Any) -> tuple[Frame, list[Frame]]:
    """Run ``nodes``; return the ack and the run's messages (terminal last)."""
    job_id = await client.run_job(nodes, **options)
    frames = await client.until_terminal(job_id)
    assert_ack(frames[0], job_id, options.get("workflow_id", "wf"))
    messages = run_frames(frames, job_id)
    assert len(messages) == len(frames) - 1, frames  # nothing else arrived
    assert_sequenced(messages, job_id, options.get("workflow_id", "wf"))
    return frames[0], messages


# -- single-node runs ---------------------------------------------------------------------


async def test_single_node_full_detail_with_explicit_types(server: ServerHandle) -> None:
    """Binary single-node run: ack, job running, node running, the sink's output_update
    (§3.2), node completed, terminal.

    With explicit_types the node result and result.outputs wrap the string.
    """
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, CONCAT, explicit_types=True)
        assert client.last_text is False
    assert kinds(messages) == [
        ("job_update", "running"),
        ("node_update", "running"),
        ("output_update",),
        ("node_update", "completed"),
        ("job_update", "completed"),
    ]
    _running, node_running, _output, node_done, terminal = messages
    assert node_running["node_id"] == "n1"
    assert node_running["node_type"] == "nodetool.text.Concat"
    assert node_done["result"] == {"output": {"type": "string", "value": "hello world"}}
    assert terminal["result"] == {
        "outputs": {"n1": {"output": {"type": "string", "value": "hello world"}}}
    }
    assert isinstance(terminal["duration"], float)
    assert terminal["error"] is None


async def test_single_node_plain_values_without_explicit_types(server: ServerHandle) -> None:
    """explicit_types false: result.outputs = {"n1": {"output": "hello world"}}."""
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, CONCAT, explicit_types=False)
    assert messages[2]["value"] == "hello world"
    assert messages[3]["result"] == {"output": "hello world"}
    assert messages[-1]["result"] == {"outputs": {"n1": {"output": "hello world"}}}


async def test_client_job_id_is_used_and_workflow_id_echoed(server: ServerHandle) -> None:
    """The run uses the client's job_id and echoes its workflow_id on every message."""
    async with connect(server) as client:
        job_id = "client-chosen-id-" + new_job_id()
        _ack, messages = await run_to_end(client, CONCAT, job_id=job_id, workflow_id="n1")
    assert {m["job_id"] for m in messages} == {job_id}
    assert {m["workflow_id"] for m in messages} == {"n1"}


async def test_server_makes_a_job_id_when_the_client_gives_none(server: ServerHandle) -> None:
    """An empty job_id gets a uuid4 hex job id, used on the ack and every message."""
    async with connect(server) as client:
        await client.command("run_job", {"graph": CONCAT, "job_id": ""})
        ack = await client.recv()
        job_id = ack["job_id"]
        assert isinstance(job_id, str) and len(job_id) == 32
        int(job_id, 16)
        frames = await client.until_terminal(job_id)
    assert frames[-1]["status"] == "completed"


async def test_outputs_profile_sends_only_output_updates_and_terminal(
    server: ServerHandle,
) -> None:
    """event_detail outputs: ack → output_update per value → terminal (no node/job running)."""
    nodes = graph(
        nd("in", "nodetool.input.StringInput", name="x", value="abc"),
        nd("up", "nodetool.text.ToUppercase"),
        nd("out", "nodetool.output.Output", name="result"),
        edges=[edge("in", "up", "text"), edge("up", "out", "value")],
    )
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes, event_detail="outputs")
    assert kinds(messages) == [("output_update",), ("job_update", "completed")]
    assert messages[0]["value"] == "ABC"
    assert messages[-1]["result"] == {"outputs": {"result": ["ABC"]}}


async def test_terminal_profile_sends_ack_and_terminal_only(server: ServerHandle) -> None:
    """event_detail terminal: ack → terminal job_update only, with result.outputs."""
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, CONCAT, event_detail="terminal")
    assert kinds(messages) == [("job_update", "completed")]
    assert messages[0]["job_seq"] == 1
    assert messages[0]["result"] == {"outputs": {"n1": {"output": "hello world"}}}


async def test_without_require_terminal_result_the_result_is_the_outputs_map(
    server: ServerHandle,
) -> None:
    """require_terminal_result false: the terminal result is the outputs map itself."""
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, CONCAT, require_terminal_result=False)
    assert messages[-1]["result"] == {"n1": {"output": "hello world"}}


async def test_single_output_node_sends_output_update_between_its_node_updates(
    server: ServerHandle,
) -> None:
    """A single Output node: node_update running → output_update → node_update completed,
    and result.outputs maps its name to [value]."""
    nodes = graph(nd("o", "nodetool.output.Output", name="answer", value=42))
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    assert kinds(messages) == [
        ("job_update", "running"),
        ("node_update", "running"),
        ("output_update",),
        ("node_update", "completed"),
        ("job_update", "completed"),
    ]
    assert messages[2]["value"] == 42 and messages[2]["output_type"] == "integer"
    assert messages[-1]["result"] == {"outputs": {"answer": [42]}}


# -- multi-node graphs ----------------------------------------------------------------------


async def test_input_params_flow_through_to_output_node(server: ServerHandle) -> None:
    """params set the input node's value; the Output node sends one output_update per value
    and result.outputs maps its name to the list of values; node_updates follow execution order.
    """
    nodes = graph(
        nd("in", "nodetool.input.StringInput", name="text", value="unused"),
        nd("up", "nodetool.text.ToUppercase"),
        nd("out", "nodetool.output.Output", name="shout"),
        edges=[edge("in", "up", "text"), edge("up", "out", "value")],
    )
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes, params={"text": "hi there"})
    outputs = [m for m in messages if m["type"] == "output_update"]
    assert len(outputs) == 1
    assert outputs[0]["node_id"] == "out"
    assert outputs[0]["output_name"] == "shout"
    assert outputs[0]["value"] == "HI THERE"
    assert outputs[0]["output_type"] == "string"
    assert isinstance(outputs[0]["metadata"], dict)
    node_updates = [(m["node_id"], m["status"]) for m in messages if m["type"] == "node_update"]
    assert node_updates == [
        ("in", "running"),
        ("in", "completed"),
        ("up", "running"),
        ("up", "completed"),
        ("out", "running"),
        ("out", "completed"),
    ]
    # §3.2: per node, node_update running, its output_updates, node_update completed.
    out_running, out_completed = (
        messages.index(
            next(m for m in messages if m.get("node_id") == "out" and m.get("status") == status)
        )
        for status in ("running", "completed")
    )
    assert out_running < messages.index(outputs[0]) < out_completed
    assert messages[-1]["result"] == {"outputs": {"shout": ["HI THERE"]}}


async def test_explicit_types_wrap_output_lists_but_not_output_update_values(
    server: ServerHandle,
) -> None:
    """explicit_types: result.outputs["name"] is a wrapped list of wrapped values;
    output_update.value is never wrapped (§3.4)."""
    nodes = graph(
        nd("n", "nodetool.constant.Integer", value=7),
        nd("out", "nodetool.output.Output", name="number"),
        edges=[edge("n", "out", "value")],
    )
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes, explicit_types=True)
    update = next(m for m in messages if m["type"] == "output_update")
    assert update["value"] == 7
    assert messages[-1]["result"] == {
        "outputs": {"number": {"type": "list", "value": [{"type": "integer", "value": 7}]}}
    }


async def test_run_job_request_id_is_echoed_on_the_ack(server: ServerHandle) -> None:
    """A run_job with a request_id gets it back on its ack (an answer, not a run message)."""
    async with connect(server) as client:
        await client.command(
            "run_job", {"job_id": "with-request-id", "graph": CONCAT}, request_id="r-9"
        )
        frames = await client.until_terminal("with-request-id")
    assert frames[0]["request_id"] == "r-9"
    assert frames[0]["message"] == "Job started"
    assert all("request_id" not in f for f in frames[1:])


async def test_math_graph_computes_through_edges(server: ServerHandle) -> None:
    """lib.math: (2 + 3) * 4 = 20, reported under the sink's node id."""
    nodes = graph(
        nd("add", "lib.math.Add", a=2, b=3),
        nd("mul", "lib.math.Multiply", b=4),
        edges=[edge("add", "mul", "a")],
    )
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    assert messages[-1]["status"] == "completed"
    assert messages[-1]["result"] == {"outputs": {"mul": {"output": 20}}}


async def test_divide_by_zero_fails_naming_the_node(server: ServerHandle) -> None:
    """A node that raises: node_update error before the terminal failed, both naming the node."""
    nodes = graph(nd("div", "lib.math.Divide", a=1, b=0))
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    assert kinds(messages) == [
        ("job_update", "running"),
        ("node_update", "running"),
        ("node_update", "error"),
        ("job_update", "failed"),
    ]
    node_error, terminal = messages[2], messages[3]
    assert node_error["node_id"] == "div"
    assert "ZeroDivisionError" in node_error["error"]
    assert "div" in terminal["error"] and "ZeroDivisionError" in terminal["error"]
    assert terminal["result"] is None


async def test_failure_in_terminal_profile_still_includes_node_error(server: ServerHandle) -> None:
    """Failures always include the failing node's node_update error, whatever event_detail."""
    nodes = graph(nd("div", "lib.math.Divide", a=1, b=0))
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes, event_detail="terminal")
    assert kinds(messages) == [("node_update", "error"), ("job_update", "failed")]


async def _assert_rejected(server: ServerHandle, nodes: Frame, *needles: str) -> str:
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    assert kinds(messages) == [("job_update", "failed")], messages
    error = messages[0]["error"]
    assert isinstance(error, str)
    for needle in needles:
        assert needle in error, error
    return error


async def test_unknown_node_type_fails_before_anything_runs(server: ServerHandle) -> None:
    """Unknown node type → terminal failed naming the type, no node_update."""
    await _assert_rejected(server, graph(nd("n1", "nodetool.text.Nope")), "nodetool.text.Nope")


async def test_edge_to_missing_node_fails_before_anything_runs(server: ServerHandle) -> None:
    """An edge to a node that is not in the graph → terminal failed naming it."""
    nodes = graph(nd("a", "nodetool.text.Concat", a="x"), edges=[edge("a", "ghost", "text")])
    await _assert_rejected(server, nodes, "ghost")


async def test_unknown_handle_fails_before_anything_runs(server: ServerHandle) -> None:
    """An edge into a handle the target does not have → terminal failed naming it."""
    nodes = graph(
        nd("a", "nodetool.text.Concat", a="x"),
        nd("b", "nodetool.text.ToUppercase"),
        edges=[edge("a", "b", "no_such_input")],
    )
    await _assert_rejected(server, nodes, "no_such_input")


async def test_unknown_source_handle_fails_before_anything_runs(server: ServerHandle) -> None:
    """An edge out of an output the source does not have → terminal failed naming it."""
    nodes = graph(
        nd("a", "nodetool.text.Concat", a="x"),
        nd("b", "nodetool.text.ToUppercase"),
        edges=[edge("a", "b", "text", source_handle="nope")],
    )
    await _assert_rejected(server, nodes, "nope")


async def test_cycle_fails_before_anything_runs(server: ServerHandle) -> None:
    """A cycle → terminal failed saying so, nothing executed."""
    nodes = graph(
        nd("a", "nodetool.text.Concat"),
        nd("b", "nodetool.text.Concat"),
        edges=[edge("a", "b", "a"), edge("b", "a", "a")],
    )
    await _assert_rejected(server, nodes, "cycle")


async def test_wrong_property_type_fails_before_anything_runs(server: ServerHandle) -> None:
    """A property value of the wrong type → terminal failed naming node and property."""
    nodes = graph(nd("n1", "nodetool.text.Concat", a=5, b="x"))
    await _assert_rejected(server, nodes, "n1", "'a'")


async def test_empty_graph_fails(server: ServerHandle) -> None:
    """A graph with no nodes → terminal failed."""
    await _assert_rejected(server, graph(), "no nodes")


async def test_duplicate_job_id_while_running_is_refused(server: ServerHandle) -> None:
    """A job_id already running → error answer naming it, and no second run."""
    job_id = new_job_id()
    sleeper = graph(nd("s", "noderun.debug.Sleep", seconds=0.5 * SECOND))
    async with connect(server) as client:
        await client.run_job(sleeper, job_id=job_id)
        assert_ack(await client.recv(), job_id)
        await client.run_job(CONCAT, job_id=job_id)
        frames = await client.until_terminal(job_id)
    refusals = [f for f in frames if "error" in f and "job_seq" not in f]
    assert len(refusals) == 1, frames
    assert refusals[0]["error"] == "job_already_running"
    assert refusals[0]["job_id"] == job_id
    assert not str(refusals[0]["error"]).startswith("invalid_")
    messages = run_frames(frames, job_id)
    assert_sequenced(messages, job_id)
    assert [m["node_id"] for m in messages if m["type"] == "node_update"] == ["s", "s"]
    assert messages[-1]["status"] == "completed"
    assert messages[-1]["result"] == {"outputs": {"s": {"output": 0.5 * SECOND}}}


async def test_busy_server_refuses_with_a_terminal_failed() -> None:
    """Past max_active_runs, run_job gets a job_update failed for its job_id (the SDK
    waits for a terminal one), which is not a message of any run (job_seq absent or 0)."""
    with running_server(max_active_runs=1) as small:
        async with connect(small) as client:
            busy = await client.run_job(graph(nd("s", "noderun.debug.Sleep", seconds=30)))
            assert_ack(await client.recv(), busy)
            refused_id = await client.run_job(CONCAT)
            frames = await client.recv_until(lambda f: f.get("job_id") == refused_id)
            await client.command("cancel_job", {"job_id": busy})
            await client.until_terminal(busy)
            # The slot is free again.
            _ack, messages = await run_to_end(client, CONCAT)
    refused = frames[-1]
    assert refused["type"] == "job_update" and refused["status"] == "failed"
    assert "busy" in refused["error"]
    assert refused.get("job_seq", 0) == 0
    assert messages[-1]["status"] == "completed"


async def test_value_of_wrong_type_on_an_edge_fails_the_receiving_node(
    server: ServerHandle,
) -> None:
    """A value that does not fit the target property fails the target node, by name."""
    nodes = graph(
        nd("s", "noderun.debug.Sleep", seconds=0),
        nd("c", "nodetool.text.Concat"),
        edges=[edge("s", "c", "a")],
    )
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    errors = [m for m in messages if m.get("status") == "error"]
    assert [m["node_id"] for m in errors] == ["c"]
    assert messages[-1]["status"] == "failed"
    assert "'a'" in messages[-1]["error"] and "Concat" in messages[-1]["error"]


async def test_job_id_can_be_reused_after_the_run_finished(server: ServerHandle) -> None:
    """Once a run is terminal, its job_id may start a new run."""
    job_id = new_job_id()
    async with connect(server) as client:
        for _ in range(2):
            await client.run_job(CONCAT, job_id=job_id)
            frames = await client.until_terminal(job_id)
            assert_ack(frames[0], job_id)
            assert frames[-1]["status"] == "completed"


async def test_node_progress_is_sent_as_ints(server: ServerHandle) -> None:
    """noderun.debug.Progress: one node_progress per step, progress/total ints, chunk str."""
    nodes = graph(nd("p", "noderun.debug.Progress", steps=3))
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    progress = [m for m in messages if m["type"] == "node_progress"]
    assert [(m["progress"], m["total"]) for m in progress] == [(1, 3), (2, 3), (3, 3)]
    for m in progress:
        assert type(m["progress"]) is int and type(m["total"]) is int
        assert m["chunk"] == "" and m["node_id"] == "p"
    assert kinds(messages)[:2] == [("job_update", "running"), ("node_update", "running")]
    assert kinds(messages)[-2:] == [("node_update", "completed"), ("job_update", "completed")]


async def test_log_update_and_chunks_between_node_running_and_completed(
    server: ServerHandle,
) -> None:
    """A node's log_update and chunk messages come between its node_update running and
    completed; chunks carry content_type text and done."""
    nodes = graph(nd("c", "noderun.test.Chatter", text="hey"))
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    assert kinds(messages) == [
        ("job_update", "running"),
        ("node_update", "running"),
        ("log_update",),
        ("chunk",),
        ("chunk",),
        ("output_update",),
        ("node_update", "completed"),
        ("job_update", "completed"),
    ]
    log, first, last = messages[2], messages[3], messages[4]
    assert (log["node_id"], log["node_name"], log["severity"]) == ("c", "Chatter", "warning")
    assert log["content"] == "saying hey"
    assert (first["content"], first["content_type"], first["done"]) == ("hey", "text", False)
    assert (last["content"], last["done"]) == ("!", True)
    assert messages[-1]["result"] == {"outputs": {"c": {"output": "hey!"}}}


async def test_outputs_profile_keeps_chunks_but_drops_logs(server: ServerHandle) -> None:
    """event_detail outputs: chunks and the sink's output_update (§3.2) are outputs (kept),
    logs and node updates are not."""
    nodes = graph(nd("c", "noderun.test.Chatter", text="hey"))
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes, event_detail="outputs")
    assert kinds(messages) == [
        ("chunk",),
        ("chunk",),
        ("output_update",),
        ("job_update", "completed"),
    ]
    assert messages[2]["value"] == "hey!"


async def test_streaming_node_feeds_each_item_downstream(server: ServerHandle) -> None:
    """noderun.debug.Count (streaming): each yielded item reaches the Output node."""
    nodes = graph(
        nd("count", "noderun.debug.Count", count=3),
        nd("out", "nodetool.output.Output", name="numbers"),
        edges=[edge("count", "out", "value")],
    )
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    assert [m["value"] for m in messages if m["type"] == "output_update"] == [1, 2, 3]
    assert messages[-1]["result"] == {"outputs": {"numbers": [1, 2, 3]}}


async def test_logical_and_constant_nodes(server: ServerHandle) -> None:
    """nodetool.constant.* and nodetool.boolean.LogicalOperator run under NodeTool's names."""
    nodes = graph(
        nd("t", "nodetool.constant.Bool", value=True),
        nd("f", "nodetool.constant.Bool", value=False),
        nd("x", "nodetool.boolean.LogicalOperator", operation="xor"),
        edges=[edge("t", "x", "a"), edge("f", "x", "b")],
    )
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes, explicit_types=True)
    assert messages[-1]["result"] == {
        "outputs": {"x": {"output": {"type": "boolean", "value": True}}}
    }


async def test_two_runs_on_one_connection_interleave_but_each_is_sequenced(
    server: ServerHandle,
) -> None:
    """Two concurrent runs on one connection: each has its own job_seq 1..n."""
    slow = graph(nd("p", "noderun.debug.Progress", steps=3, interval=0.01))
    async with connect(server) as client:
        first = await client.run_job(slow)
        second = await client.run_job(slow)
        frames = await client.recv_until(lambda f: is_terminal(f, first))
        if not any(is_terminal(f, second) for f in frames):
            frames += await client.until_terminal(second)
    for job_id in (first, second):
        messages = run_frames(frames, job_id)
        assert_sequenced(messages, job_id)
        assert messages[-1]["status"] == "completed"
