"""Commands other than run_job (PROTOCOL.md §2, §2.2): cancel, status, stop, inputs,
live property changes, clear_models and the node-catalog RPCs."""

from __future__ import annotations

from tests.server.helpers import ServerHandle, running_server
from tests.support.client import Client, connect
from tests.support.frames import Frame, is_terminal
from tests.support.graphs import edge, graph, nd, new_job_id
from tests.support.timing import SECOND
from tests.support.waiting import eventually

NOT_FOUND = "Job not found or already completed"
SLEEP_30 = graph(nd("s", "noderun.debug.Sleep", seconds=30))
CONCAT = graph(nd("n1", "nodetool.text.Concat", a="a", b="b"))
STREAMING = graph(
    nd("in", "nodetool.input.StringInput", name="x"),
    nd("up", "nodetool.text.ToUppercase"),
    nd("out", "nodetool.output.Output", name="out"),
    edges=[edge("in", "up", "text"), edge("up", "out", "value")],
)


async def start(client: Client, nodes: Frame, job_id: str | None = None) -> str:
    """Start a run; wait for its ack (skipping messages of other runs)."""
    job_id = await client.run_job(nodes, job_id=job_id)
    frames = await client.recv_until(lambda f: "job_seq" not in f)
    assert frames[-1] == {"message": "Job started", "job_id": job_id, "workflow_id": "wf"}
    return job_id


async def answer(client: Client) -> Frame:
    """The next frame that is not a message of a run."""
    frames = await client.recv_until(lambda f: "job_seq" not in f)
    return frames[-1]


# -- cancel_job -----------------------------------------------------------------------------


async def test_cancel_running_job_acks_then_ends_cancelled(server: ServerHandle) -> None:
    """cancel_job of a running run → ack "Job cancellation requested", then terminal cancelled."""
    async with connect(server) as client:
        job_id = await start(client, SLEEP_30)
        await client.command("cancel_job", {"job_id": job_id, "workflow_id": None})
        frames = await client.until_terminal(job_id)
    acks = [f for f in frames if "job_seq" not in f]
    assert acks == [
        {"message": "Job cancellation requested", "job_id": job_id, "workflow_id": "wf"}
    ]
    terminal = frames[-1]
    assert terminal["status"] == "cancelled"
    assert frames.index(acks[0]) < len(frames) - 1
    assert not any(is_terminal(f, job_id) for f in frames[:-1])


async def test_cancel_unknown_or_finished_job_is_not_found(server: ServerHandle) -> None:
    """cancel_job of an unknown or finished run → {"error":NOT_FOUND,"job_id"}, never invalid."""
    async with connect(server) as client:
        done = await start(client, CONCAT)
        await client.until_terminal(done)
        for job_id in (done, "no-such-job"):
            await client.command("cancel_job", {"job_id": job_id})
            frame = await client.recv()
            assert frame == {"error": NOT_FOUND, "job_id": job_id}


async def test_cancel_twice_answers_not_found_the_second_time(server: ServerHandle) -> None:
    """A second cancel_job after the run ended cancelled → not found; one terminal only."""
    async with connect(server) as client:
        job_id = await start(client, SLEEP_30)
        await client.command("cancel_job", {"job_id": job_id})
        frames = await client.until_terminal(job_id)
        await client.command("cancel_job", {"job_id": job_id})
        assert await client.recv() == {"error": NOT_FOUND, "job_id": job_id}
        assert await client.ping_barrier() == []
    assert sum(is_terminal(f, job_id) for f in frames) == 1


async def test_cancel_during_a_blocking_node_ends_cancelled_at_once(
    server: ServerHandle,
) -> None:
    """Cancelling a run whose blocking node holds a runner thread ends the run cancelled
    without waiting for the thread."""
    nodes = graph(nd("b", "noderun.debug.BlockingSleep", seconds=1))
    async with connect(server) as client:
        job_id = await start(client, nodes)
        await client.recv_until(lambda f: f.get("type") == "node_update")
        await client.command("cancel_job", {"job_id": job_id})
        frames = await client.until_terminal(job_id)
    assert frames[-1]["status"] == "cancelled"
    assert not any(f.get("status") == "completed" for f in frames)


async def test_cancelled_blocking_runs_free_the_runners_for_the_next_one() -> None:
    """Issue 12.5: with every runner thread stuck in a cancelled run's blocking node, the
    next blocking run still completes (the stuck threads are replaced, not waited for)."""
    stuck = graph(nd("b", "noderun.debug.BlockingSleep", seconds=60))
    with running_server(runners=2) as own:
        async with connect(own) as client:
            job_ids: set[str] = set()
            ended: dict[object, object] = {}
            for _ in range(2):  # each run's node is blocking its runner before the next starts
                job_id = await start(client, stuck)
                await client.recv_until(lambda frame: frame.get("type") == "node_update")
                job_ids.add(job_id)

            def both_ended(frame: Frame) -> bool:
                if any(is_terminal(frame, job_id) for job_id in job_ids):
                    ended[frame.get("job_id")] = frame.get("status")
                return set(ended) == job_ids

            for job_id in job_ids:
                await client.command("cancel_job", {"job_id": job_id})
            await client.recv_until(both_ended)
            assert set(ended.values()) == {"cancelled"}
            job_id = await start(client, graph(nd("b", "noderun.debug.BlockingSleep", seconds=0)))
            frames = await client.until_terminal(job_id)
    assert frames[-1]["status"] == "completed"


async def test_not_found_answers_carry_the_request_id(server: ServerHandle) -> None:
    """An error answer to a frame with a request_id carries it (§2)."""
    async with connect(server) as client:
        await client.command("cancel_job", {"job_id": "ghost"}, request_id="c-1")
        cancel = await client.recv()
        await client.command(
            "stream_input", {"job_id": "ghost", "input": "x", "value": 1}, request_id="s-1"
        )
        stream = await client.recv()
        await client.command(
            "update_node_properties",
            {"job_id": "ghost", "node_id": "n", "properties": {}},
            request_id="u-1",
        )
        update = await client.recv()
    assert (cancel["error"], cancel["request_id"]) == (NOT_FOUND, "c-1")
    assert (stream["error"], stream["request_id"]) == (NOT_FOUND, "s-1")
    assert (update["error"], update["request_id"]) == (NOT_FOUND, "u-1")


# -- get_status -------------------------------------------------------------------------------


async def test_get_status_of_running_completed_and_unknown(server: ServerHandle) -> None:
    """get_status {job_id}: running, then completed; unknown → not_found."""
    async with connect(server) as client:
        job_id = await start(client, SLEEP_30)
        assert await client.status(job_id) == {
            "status": "running",
            "job_id": job_id,
            "workflow_id": "wf",
        }
        done = await start(client, CONCAT)
        await client.until_terminal(done)
        assert await client.status(done) == {
            "status": "completed",
            "job_id": done,
            "workflow_id": "wf",
        }
        assert await client.status("nope") == {"status": "not_found", "job_id": "nope"}
        await client.command("cancel_job", {"job_id": job_id})
        await client.until_terminal(job_id)
        assert (await client.status(job_id))["status"] == "cancelled"


async def test_get_status_without_id_lists_this_connections_active_jobs(
    server: ServerHandle,
) -> None:
    """get_status with no job_id → active_jobs of this connection only (not finished ones)."""
    async with connect(server) as client, connect(server) as other:
        mine = await start(client, SLEEP_30)
        theirs = await start(other, SLEEP_30)
        done = await start(client, CONCAT)
        await client.until_terminal(done)
        status = await client.status()
        await client.command("cancel_job", {"job_id": mine})
        await other.command("cancel_job", {"job_id": theirs})
        await client.until_terminal(mine)
        await other.until_terminal(theirs)
        after = await client.status()
    assert status == {"active_jobs": [{"job_id": mine, "workflow_id": "wf", "status": "running"}]}
    assert after == {"active_jobs": []}


# -- stop -------------------------------------------------------------------------------------


async def test_stop_ends_streaming_to_this_connection_but_the_run_goes_on(
    server: ServerHandle,
) -> None:
    """stop → generation_stopped then an ack; after that no message of the run reaches this
    connection, and the run still completes (get_status shows completed)."""
    nodes = graph(nd("p", "noderun.debug.Progress", steps=5, interval=0.05))
    async with connect(server) as client:
        job_id = await start(client, nodes)
        await client.command("stop", {"job_id": job_id})
        frames = await client.recv_until(lambda f: f.get("type") == "generation_stopped")
        stopped = frames[-1]
        ack = await client.recv()
        assert set(stopped) == {"type", "message", "job_id"}
        assert stopped["job_id"] == job_id and isinstance(stopped["message"], str)
        assert ack["job_id"] == job_id and isinstance(ack["message"], str)
        assert "error" not in ack
        statuses: list[Frame] = []

        async def finished() -> bool:
            # The very next frame is the status answer: no run message slips in.
            await client.command("get_status", {"job_id": job_id})
            statuses.append(await client.recv())
            assert "job_seq" not in statuses[-1], statuses[-1]
            return bool(statuses[-1]["status"] != "running")

        await eventually(finished, explain=lambda: "the run never finished")
        status = statuses[-1]
    assert status == {"status": "completed", "job_id": job_id, "workflow_id": "wf"}


# -- stream_input / end_input_stream ----------------------------------------------------------


async def test_streamed_inputs_flow_to_the_output(server: ServerHandle) -> None:
    """stream_input "a", "b", end_input_stream → output_updates "A","B", outputs {"out":[…]}."""
    async with connect(server) as client:
        job_id = await start(client, STREAMING)
        for value in ("a", "b"):
            await client.command(
                "stream_input",
                {
                    "job_id": job_id,
                    "workflow_id": "wf",
                    "input": "x",
                    "handle": None,
                    "value": value,
                },
            )
        await client.command("end_input_stream", {"job_id": job_id, "input": "x", "handle": None})
        frames = await client.until_terminal(job_id)
    acks = [f["message"] for f in frames if "job_seq" not in f]
    assert acks == ["Input item streamed", "Input item streamed", "Input stream ended"]
    for f in frames:
        if "job_seq" not in f:
            assert (f["job_id"], f["workflow_id"]) == (job_id, "wf")
    assert [f["value"] for f in frames if f.get("type") == "output_update"] == ["A", "B"]
    assert frames[-1]["status"] == "completed"
    assert frames[-1]["result"] == {"outputs": {"out": ["A", "B"]}}


async def test_stream_to_unknown_input_is_an_error_not_invalid(server: ServerHandle) -> None:
    """stream_input naming no streaming input → an error frame that is not invalid_*;
    the run is unaffected."""
    async with connect(server) as client:
        job_id = await start(client, STREAMING)
        await client.command("stream_input", {"job_id": job_id, "input": "nope", "value": "v"})
        frame = await answer(client)
        await client.command("end_input_stream", {"job_id": job_id, "input": "nope"})
        ended = await answer(client)
        await client.command("end_input_stream", {"job_id": job_id, "input": "x"})
        frames = await client.until_terminal(job_id)
    for error in (frame, ended):
        assert isinstance(error["error"], str) and not error["error"].startswith("invalid_")
        assert error["job_id"] == job_id
        assert "nope" in error["message"]
    assert frames[-1]["status"] == "completed"
    assert frames[-1]["result"] == {"outputs": {"out": []}}


async def test_stream_after_end_is_rejected(server: ServerHandle) -> None:
    """stream_input after end_input_stream (run still going) → an error, not invalid_*."""
    nodes = graph(
        nd("in", "nodetool.input.StringInput", name="x"),
        nd("other", "nodetool.input.StringInput", name="y"),
        nd("c", "nodetool.text.Concat"),
        edges=[edge("in", "c", "a"), edge("other", "c", "b")],
    )
    async with connect(server) as client:
        job_id = await start(client, nodes)
        await client.command("end_input_stream", {"job_id": job_id, "input": "x"})
        assert (await answer(client))["message"] == "Input stream ended"
        await client.command("stream_input", {"job_id": job_id, "input": "x", "value": "late"})
        late = await answer(client)
        await client.command("cancel_job", {"job_id": job_id})
        await client.until_terminal(job_id)
    assert not late["error"].startswith("invalid_")


async def test_stream_to_unknown_job_is_not_found(server: ServerHandle) -> None:
    """stream_input / end_input_stream for an unknown run → NOT_FOUND with job_id."""
    async with connect(server) as client:
        await client.command("stream_input", {"job_id": "ghost", "input": "x", "value": 1})
        assert await client.recv() == {"error": NOT_FOUND, "job_id": "ghost"}
        await client.command("end_input_stream", {"job_id": "ghost", "input": "x"})
        assert await client.recv() == {"error": NOT_FOUND, "job_id": "ghost"}


# -- update_node_properties -------------------------------------------------------------------


async def test_update_properties_of_a_node_not_yet_started(server: ServerHandle) -> None:
    """update_node_properties before the node runs → ack, and the new value is used."""
    nodes = graph(
        nd("wait", "noderun.debug.Sleep", seconds=0.3 * SECOND),
        nd("add", "lib.math.Add", b=1),
        edges=[edge("wait", "add", "a")],
    )
    job_id = new_job_id()
    async with connect(server) as client:
        await client.run_job(nodes, job_id=job_id)
        await client.command(
            "update_node_properties",
            {"job_id": job_id, "workflow_id": "wf", "node_id": "add", "properties": {"b": 100}},
        )
        frames = await client.until_terminal(job_id)
    acks = [f for f in frames if "job_seq" not in f]
    assert acks[0]["message"] == "Job started"
    assert acks[1] == {"message": "Node properties updated", "job_id": job_id, "node_id": "add"}
    assert frames[-1]["result"] == {"outputs": {"add": {"output": 100 + 0.3 * SECOND}}}


async def test_update_properties_of_unknown_run_is_not_found(server: ServerHandle) -> None:
    """update_node_properties for an unknown run → NOT_FOUND, never invalid_command."""
    async with connect(server) as client:
        await client.command(
            "update_node_properties",
            {"job_id": "job-123", "node_id": "node-789", "properties": {"gain": 0.5}},
        )
        assert await client.recv() == {"error": NOT_FOUND, "job_id": "job-123"}


async def test_update_properties_of_unknown_node_or_property_is_an_error(
    server: ServerHandle,
) -> None:
    """Unknown node, unknown property, wrong type → error frames (not invalid_*)."""
    async with connect(server) as client:
        job_id = await start(client, SLEEP_30)
        errors = []
        for node_id, properties in (
            ("ghost", {"seconds": 1}),
            ("s", {"nope": 1}),
            ("s", {"seconds": "long"}),
        ):
            await client.command(
                "update_node_properties",
                {"job_id": job_id, "node_id": node_id, "properties": properties},
            )
            errors.append(await answer(client))
        await client.command("cancel_job", {"job_id": job_id})
        await client.until_terminal(job_id)
    for error in errors:
        assert isinstance(error["error"], str) and not error["error"].startswith("invalid_")
        assert error["job_id"] == job_id
    assert "ghost" in errors[0]["message"]
    assert "nope" in errors[1]["message"]


# -- clear_models and RPCs -----------------------------------------------------------------------


async def test_clear_models_acks(server: ServerHandle) -> None:
    """clear_models → {"message":"Unused models cleared"}."""
    async with connect(server) as client:
        await client.command("clear_models", {})
        assert await client.recv() == {"message": "Unused models cleared"}
        await client.send({"command": "clear_models"})
        assert await client.recv() == {"message": "Unused models cleared"}


BUILTINS = {
    "nodetool.text.Concat",
    "nodetool.text.Join",
    "nodetool.text.ToUppercase",
    "nodetool.text.Length",
    "lib.math.Add",
    "lib.math.Subtract",
    "lib.math.Multiply",
    "lib.math.Divide",
    "nodetool.boolean.LogicalOperator",
    "nodetool.constant.String",
    "nodetool.constant.Integer",
    "nodetool.constant.Float",
    "nodetool.constant.Bool",
    "nodetool.input.StringInput",
    "nodetool.input.IntegerInput",
    "nodetool.input.FloatInput",
    "nodetool.input.BooleanInput",
    "nodetool.output.Output",
    "noderun.debug.Sleep",
    "noderun.debug.BlockingSleep",
    "noderun.debug.Fail",
    "noderun.debug.Progress",
    "noderun.debug.Count",
}


def assert_metadata(meta: Frame) -> None:
    """A node's metadata has the §6.2 shape."""
    assert set(meta) >= {
        "node_type",
        "title",
        "description",
        "namespace",
        "properties",
        "outputs",
        "is_streaming_output",
    }
    assert isinstance(meta["is_streaming_output"], bool)
    for prop in meta["properties"]:
        assert set(prop) >= {"name", "type", "default", "description"}
        assert set(prop["type"]) >= {"type", "optional", "type_args"}
    for out in meta["outputs"]:
        assert set(out) == {"name", "type", "stream"}


async def test_list_nodes_rpc_lists_every_builtin(server: ServerHandle) -> None:
    """list_nodes → rpc_response with the request_id and result.nodes: every built-in."""
    async with connect(server) as client:
        await client.command("list_nodes", {}, request_id="rpc-1")
        response = await client.recv()
    assert response["type"] == "rpc_response"
    assert response["request_id"] == "rpc-1"
    assert response["command"] == "list_nodes"
    nodes = {meta["node_type"]: meta for meta in response["result"]["nodes"]}
    assert set(nodes) >= BUILTINS
    for meta in nodes.values():
        assert_metadata(meta)
    concat = nodes["nodetool.text.Concat"]
    assert concat["namespace"] == "nodetool.text"
    props = {p["name"]: p for p in concat["properties"]}
    assert set(props) == {"a", "b"}
    assert props["a"]["type"] == {"type": "str", "optional": False, "type_args": []}
    assert props["a"]["default"] == ""
    assert concat["outputs"] == [
        {
            "name": "output",
            "type": {"type": "str", "optional": False, "type_args": []},
            "stream": False,
        }
    ]
    assert nodes["noderun.debug.Count"]["is_streaming_output"] is True
    sleep_seconds = nodes["noderun.debug.Sleep"]["properties"][0]
    assert (sleep_seconds["min"], sleep_seconds["max"]) == (0.0, 3600.0)
    operation = {p["name"]: p for p in nodes["nodetool.boolean.LogicalOperator"]["properties"]}
    assert operation["operation"]["type"]["type"] == "enum"
    assert "xor" in operation["operation"]["type"]["values"]


async def test_get_node_rpc(server: ServerHandle) -> None:
    """get_node {node_type} → result = its metadata; unknown → error code not_found."""
    async with connect(server) as client:
        await client.command("get_node", {"node_type": "lib.math.Add"}, request_id="g1")
        found = await client.recv()
        await client.command("get_node", {"node_type": "lib.math.Nope"}, request_id="g2")
        missing = await client.recv()
    assert (found["type"], found["request_id"], found["command"]) == (
        "rpc_response",
        "g1",
        "get_node",
    )
    assert found["result"]["node_type"] == "lib.math.Add"
    assert_metadata(found["result"])
    assert (missing["type"], missing["request_id"]) == ("rpc_response", "g2")
    assert "result" not in missing
    assert missing["error"]["code"] == "not_found"
    assert isinstance(missing["error"]["message"], str)
    assert missing["error"]["retryable"] is False
