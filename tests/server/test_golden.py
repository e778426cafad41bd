"""NodeTool's golden SDK v1 frames (shared/fixtures/nodetool-sdk-v1) against a real server.

Every golden client frame is sent byte for byte and gets a sensible answer; every
server frame of a golden type carries the golden keys with the same value types
(checked on every frame any test receives, see ``helpers.check_golden_shape``;
here we make sure each golden type actually occurs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.helpers import GOLDEN_FRAMES, ServerHandle, check_golden_shape, running_server
from tests.support.client import Client, connect
from tests.support.frames import Frame, is_terminal
from tests.support.golden import golden_frames
from tests.support.graphs import edge, graph, nd

NOT_FOUND = "Job not found or already completed"
CLIENT = {name: raw for name, direction, _frame, raw in GOLDEN_FRAMES if direction == "client"}
SERVER = {name: frame for name, direction, frame, _raw in GOLDEN_FRAMES if direction == "server"}
#: NodeTool's runner-placement event: this server has a single runner tier and never sends it.
NEVER_SENT = {"execution_target_event"}


@pytest.fixture(autouse=True)
def _fixture_present() -> None:
    """Skip (or fail in CI) with the expected path when ``../shared`` is missing."""
    if not GOLDEN_FRAMES:
        golden_frames()


@pytest.fixture(scope="module")
def durable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server with the embedded store, so the golden run_job (persistence "job") runs."""
    path: Path = tmp_path_factory.mktemp("golden") / "runs.db"
    with running_server(store=f"sqlite:///{path}") as handle:
        yield handle


async def send_golden(client: Client, name: str) -> None:
    await client.ws.send(CLIENT[name])


def test_fixture_holds_the_expected_frames() -> None:
    """The fixture has the six SDK commands and the server events this suite relies on."""
    assert set(CLIENT) == {
        "run_job_command",
        "cancel_job_command",
        "reconnect_job_command",
        "stream_input_command",
        "end_input_stream_command",
        "update_node_properties_command",
    }
    assert {"replay_header_event", "terminal_result_event", "chunk_event"} <= set(SERVER)


def test_golden_shape_check_can_fail() -> None:
    """The conformance check rejects a missing key and a wrong value type."""
    good = dict(SERVER["node_progress_event"])
    check_golden_shape(good)
    missing = {k: v for k, v in good.items() if k != "total"}
    with pytest.raises(AssertionError):
        check_golden_shape(missing)
    with pytest.raises(AssertionError):
        check_golden_shape({**good, "progress": 0.5})
    optional_nil = {**SERVER["terminal_result_event"], "result": None}
    check_golden_shape(optional_nil)
    with pytest.raises(AssertionError):
        check_golden_shape({**SERVER["node_progress_event"], "chunk": None})


async def test_golden_run_job_without_graph_acks_then_fails(durable_server: ServerHandle) -> None:
    """The golden run_job (graph nil, persistence job) → ack with the client's job_id, then
    a terminal job_update failed saying there is no graph; the other golden commands on
    that finished run get not-found answers, and reconnect_job replays its terminal."""
    async with connect(durable_server) as client:
        await send_golden(client, "run_job_command")
        frames = await client.until_terminal("job-123")
        ack, terminal = frames[0], frames[-1]
        assert ack == {"message": "Job started", "job_id": "job-123", "workflow_id": "workflow-456"}
        assert terminal["status"] == "failed"
        assert terminal["workflow_id"] == "workflow-456"
        assert "graph" in terminal["error"]
        assert not any(f.get("type") == "node_update" for f in frames)

        await send_golden(client, "cancel_job_command")
        assert await client.recv() == {"error": NOT_FOUND, "job_id": "job-123"}
        for name in (
            "stream_input_command",
            "end_input_stream_command",
            "update_node_properties_command",
        ):
            await send_golden(client, name)
            assert await client.recv() == {"error": NOT_FOUND, "job_id": "job-123"}, name

        await send_golden(client, "reconnect_job_command")
        resumed = await client.recv()
        assert resumed["type"] == "job_resumed"
        assert (resumed["job_id"], resumed["status"]) == ("job-123", "failed")
        replayed = [await client.recv() for _ in range(resumed["replay_count"])]
        assert replayed[-1]["status"] == "failed"
        assert replayed[-1]["job_seq"] == terminal["job_seq"]


async def test_golden_commands_drive_a_live_run(server: ServerHandle) -> None:
    """Golden update_node_properties, stream_input and end_input_stream, byte for byte,
    on a running job-123 whose graph has the input "prompt" and the node "node-789"."""
    nodes = graph(
        nd("prompt", "nodetool.input.StringInput", name="prompt"),
        nd("node-789", "noderun.test.Amplify"),
        nd("out", "nodetool.output.Output", name="out"),
        edges=[edge("prompt", "node-789", "text"), edge("node-789", "out", "value")],
    )
    async with connect(server) as client:
        await client.run_job(nodes, job_id="job-123", workflow_id="workflow-456")
        assert (await client.recv())["message"] == "Job started"
        await send_golden(client, "update_node_properties_command")
        await send_golden(client, "stream_input_command")
        await send_golden(client, "end_input_stream_command")
        frames = await client.until_terminal("job-123")
        acks = [f for f in frames if "job_seq" not in f]
        assert acks == [
            {"message": "Node properties updated", "job_id": "job-123", "node_id": "node-789"},
            {"message": "Input item streamed", "job_id": "job-123", "workflow_id": "workflow-456"},
            {"message": "Input stream ended", "job_id": "job-123", "workflow_id": "workflow-456"},
        ]
        assert frames[-1]["status"] == "completed"
        assert frames[-1]["result"] == {"outputs": {"out": ["hellox0.5"]}}

        await send_golden(client, "reconnect_job_command")
        resumed = await client.recv()
        replayed = [await client.recv() for _ in range(resumed["replay_count"])]
        assert resumed["status"] == "completed"
        assert replayed[-1]["result"] == frames[-1]["result"]

        await send_golden(client, "cancel_job_command")
        assert await client.recv() == {"error": NOT_FOUND, "job_id": "job-123"}

        # persistence "job" on a server without a store: refused with a terminal failed.
        await send_golden(client, "run_job_command")
        refused = await client.recv()
        assert refused["type"] == "job_update"
        assert (refused["job_id"], refused["status"]) == ("job-123", "failed")
        assert "store" in refused["error"]
        assert not refused["error"].startswith("invalid_")
        assert refused.get("job_seq", 0) == 0  # an answer, not a message of any run


async def test_golden_commands_for_unknown_job() -> None:
    """On a server that never saw job-123: cancel, stream, end and update answer not found;
    reconnect_job answers job_update failed "job not found"."""
    with running_server() as fresh:
        async with connect(fresh) as client:
            for name in (
                "cancel_job_command",
                "stream_input_command",
                "end_input_stream_command",
                "update_node_properties_command",
            ):
                await send_golden(client, name)
                assert await client.recv() == {"error": NOT_FOUND, "job_id": "job-123"}, name
            await send_golden(client, "reconnect_job_command")
            missing = await client.recv()
            assert await client.ping_barrier() == []
    assert missing["type"] == "job_update"
    assert (missing["status"], missing["error"]) == ("failed", "job not found")
    assert (missing["job_id"], missing["workflow_id"]) == ("job-123", "workflow-456")


@pytest.mark.parametrize("text", [False, True], ids=["msgpack", "json"])
async def test_every_golden_server_type_is_sent_with_golden_keys(
    server: ServerHandle, text: bool
) -> None:
    """Runs that produce every golden server frame type (job_update running/completed,
    node_update completed, node_progress, output_update, chunk, job_resumed, the
    invalid_command rejection): each carries the golden keys with the golden types."""
    nodes = graph(
        nd("chat", "noderun.test.Chatter", text="hello"),
        nd("progress", "noderun.debug.Progress", steps=2),
        nd("out", "nodetool.output.Output", name="output"),
        edges=[edge("chat", "out", "value")],
    )
    seen: list[Frame] = []
    async with connect(server) as client:
        job_id = await client.run_job(nodes, workflow_id="workflow-456", text=text)
        seen += await client.until_terminal(job_id)
        await client.command("reconnect_job", {"job_id": job_id}, text=text)
        seen += await client.until_terminal(job_id)
        await client.command("run_job", {"job_id": "job-x", "graph": {"nodes": 5}}, text=text)
        seen.append(await client.recv())
        assert client.last_text is text
    for frame in seen:
        check_golden_shape(frame)
    covered = set()
    for name, golden in SERVER.items():
        if name in NEVER_SENT:
            continue
        if "type" in golden:
            matches = [f for f in seen if f.get("type") == golden["type"]]
            if golden["type"] in ("job_update", "node_update"):
                matches = [f for f in matches if f["status"] == golden["status"]]
        else:
            matches = [f for f in seen if f.get("error") == golden["error"]]
            assert matches and matches[0]["job_id"] == "job-x"
        assert matches, f"no frame like the golden {name}"
        covered.add(name)
    assert covered == set(SERVER) - NEVER_SENT
    assert any(is_terminal(f, job_id) and f["status"] == "completed" for f in seen)
