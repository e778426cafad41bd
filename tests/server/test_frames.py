"""Frame-level behaviour (PROTOCOL.md §1, §2): errors, text/binary mirroring, ping/pong."""

from __future__ import annotations

import msgspec

from tests.server.helpers import ServerHandle, running_server
from tests.support.client import Client, connect
from tests.support.frames import Frame, is_terminal
from tests.support.graphs import edge, graph, nd
from tests.support.timing import TIMEOUT

CONCAT = graph(nd("n1", "nodetool.text.Concat", a="a", b="b"))


async def assert_still_open(client: Client) -> None:
    """The connection survived: a ping still gets its pong, and nothing came before it."""
    assert await client.ping_barrier() == []


async def send_raw_and_receive(client: Client, payload: bytes | str) -> Frame:
    await client.ws.send(payload)
    frame = await client.recv()
    await assert_still_open(client)
    return frame


# -- invalid_frame ------------------------------------------------------------------------


async def test_garbage_bytes_get_invalid_frame(server: ServerHandle) -> None:
    """Bytes that are not MessagePack → {"type":"error","error":"invalid_frame","message"}."""
    async with connect(server) as client:
        frame = await send_raw_and_receive(client, b"\xc1\xff\x00garbage")
    assert frame["type"] == "error"
    assert frame["error"] == "invalid_frame"
    assert isinstance(frame["message"], str) and frame["message"]


async def test_truncated_msgpack_gets_invalid_frame(server: ServerHandle) -> None:
    """A truncated MessagePack map → invalid_frame."""
    payload = msgspec.msgpack.encode({"command": "get_status", "data": {}})[:-3]
    async with connect(server) as client:
        frame = await send_raw_and_receive(client, payload)
    assert frame["error"] == "invalid_frame"


async def test_msgpack_list_is_not_a_frame(server: ServerHandle) -> None:
    """A MessagePack array instead of a map → invalid_frame."""
    async with connect(server) as client:
        frame = await send_raw_and_receive(client, msgspec.msgpack.encode(["ping"]))
    assert (frame["type"], frame["error"]) == ("error", "invalid_frame")


async def test_json_array_is_not_a_frame(server: ServerHandle) -> None:
    """A JSON array text frame → invalid_frame, sent back as JSON text."""
    async with connect(server) as client:
        await client.ws.send('["ping"]')
        frame = await client.recv()
        assert client.last_text is True
        await assert_still_open(client)
    assert (frame["type"], frame["error"]) == ("error", "invalid_frame")


async def test_bad_json_is_invalid_frame(server: ServerHandle) -> None:
    """Text that is not JSON → invalid_frame."""
    async with connect(server) as client:
        frame = await send_raw_and_receive(client, "{not json")
    assert frame["error"] == "invalid_frame"


async def test_envelope_field_of_wrong_type_is_invalid_frame(server: ServerHandle) -> None:
    """request_id that is an int (envelope keys must be str|nil) → invalid_frame."""
    async with connect(server) as client:
        frame = await send_raw_and_receive(
            client, msgspec.msgpack.encode({"command": "get_status", "request_id": 7, "data": {}})
        )
        other = await send_raw_and_receive(
            client, msgspec.msgpack.encode({"command": 12, "data": {}})
        )
    assert frame["error"] == "invalid_frame"
    assert "request_id" in frame["message"]
    assert other["error"] == "invalid_frame"


async def test_invalid_frame_carries_a_readable_request_id(server: ServerHandle) -> None:
    """A map whose envelope has a wrong-typed key still gets its string request_id back
    on the invalid_frame error (§2: the error frame MUST carry it)."""
    async with connect(server) as client:
        bad_command = await send_raw_and_receive(
            client, msgspec.msgpack.encode({"command": 12, "request_id": "r-7", "data": {}})
        )
        await client.ws.send(msgspec.json.encode({"type": 5, "request_id": "r-8"}).decode())
        bad_type = await client.recv()
        await assert_still_open(client)
    assert (bad_command["error"], bad_command["request_id"]) == ("invalid_frame", "r-7")
    assert (bad_type["error"], bad_type["request_id"]) == ("invalid_frame", "r-8")


# -- invalid_command / invalid_message -------------------------------------------------------


async def test_unknown_command_is_invalid_command_with_request_id(server: ServerHandle) -> None:
    """An unknown command → {"error":"invalid_command","details"} carrying the request_id."""
    async with connect(server) as client:
        await client.command("launch_rockets", {"job_id": "j"}, request_id="req-1")
        frame = await client.recv()
        await assert_still_open(client)
    assert frame["error"] == "invalid_command"
    assert "launch_rockets" in frame["details"]
    assert frame["request_id"] == "req-1"
    assert "type" not in frame


async def test_cancel_without_job_id_is_invalid_command(server: ServerHandle) -> None:
    """cancel_job whose data lacks job_id → invalid_command with details naming it."""
    async with connect(server) as client:
        await client.command("cancel_job", {"workflow_id": "wf"}, request_id="r2")
        frame = await client.recv()
        await assert_still_open(client)
    assert frame["error"] == "invalid_command"
    assert "job_id" in frame["details"]
    assert frame["request_id"] == "r2"
    assert "job_id" not in frame


async def test_malformed_run_job_names_the_job(server: ServerHandle) -> None:
    """run_job whose graph nodes is not a list → invalid_command with details and job_id."""
    async with connect(server) as client:
        await client.command(
            "run_job", {"job_id": "bad-graph-job", "graph": {"nodes": "n1", "edges": []}}
        )
        frame = await client.recv()
        await assert_still_open(client)
    assert frame["error"] == "invalid_command"
    assert frame["job_id"] == "bad-graph-job"
    assert "nodes" in frame["details"]


async def test_data_that_is_not_a_map_is_invalid_command(server: ServerHandle) -> None:
    """A known command whose data is not a map → invalid_command."""
    async with connect(server) as client:
        await client.send({"command": "get_status", "data": [1, 2]})
        frame = await client.recv()
        await assert_still_open(client)
    assert frame["error"] == "invalid_command"


async def test_set_mode_with_unknown_mode_is_invalid_command(server: ServerHandle) -> None:
    """set_mode with a mode other than binary/text → invalid_command."""
    async with connect(server) as client:
        await client.command("set_mode", {"mode": "morse"})
        frame = await client.recv()
        await assert_still_open(client)
    assert frame["error"] == "invalid_command"


async def test_frame_without_command_or_known_type_is_invalid_message(
    server: ServerHandle,
) -> None:
    """Neither command nor a known type → {"error":"invalid_message","message"}."""
    async with connect(server) as client:
        await client.send({"hello": "world"})
        empty = await client.recv()
        await client.send({"type": "bogus", "request_id": "r3"})
        bogus = await client.recv()
        await assert_still_open(client)
    for frame in (empty, bogus):
        assert frame["error"] == "invalid_message"
        assert isinstance(frame["message"], str)
    assert bogus["request_id"] == "r3"


async def test_unknown_keys_are_ignored(server: ServerHandle) -> None:
    """Unknown keys in the envelope and in data are ignored."""
    async with connect(server) as client:
        await client.send(
            {
                "command": "run_job",
                "data": {"job_id": "extra-keys", "graph": CONCAT, "mystery": [1, {"x": None}]},
                "shiny": True,
            }
        )
        frames = await client.until_terminal("extra-keys")
    assert frames[0]["message"] == "Job started"
    assert frames[-1]["status"] == "completed"


# -- text (JSON) and binary ----------------------------------------------------------------


async def test_text_client_gets_json_text(server: ServerHandle) -> None:
    """A client that sends JSON text gets JSON text back, for acks and run messages."""
    async with connect(server) as client:
        job_id = await client.run_job(CONCAT, text=True)
        frames: list[Frame] = []
        while not frames or not is_terminal(frames[-1], job_id):
            frames.append(await client.recv())
            assert client.last_text is True
    assert frames[0]["job_id"] == job_id
    assert frames[-1]["result"] == {"outputs": {"n1": {"output": "ab"}}}


async def test_encoding_mirrors_the_last_client_frame(server: ServerHandle) -> None:
    """Text in → text out; then binary in → binary out."""
    async with connect(server) as client:
        await client.send({"type": "ping"}, text=True)
        assert (await client.recv())["type"] == "pong"
        assert client.last_text is True
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"
        assert client.last_text is False


async def test_set_mode_acks_and_switches_the_encoding(server: ServerHandle) -> None:
    """set_mode text (sent as binary) → ack in text; set_mode binary (sent as text) → binary."""
    async with connect(server) as client:
        await client.command("set_mode", {"mode": "text"})
        ack = await client.recv()
        assert ack == {"message": "Mode set to text"}
        assert client.last_text is True
        await client.command("set_mode", {"mode": "binary"}, text=True)
        ack = await client.recv()
        assert ack == {"message": "Mode set to binary"}
        assert client.last_text is False


async def test_set_mode_text_applies_to_run_messages(server: ServerHandle) -> None:
    """After set_mode text (sent as a binary frame), the run's next messages come as JSON
    text, although the client's last frame was binary."""
    streaming = graph(
        nd("in", "nodetool.input.StringInput", name="x"),
        nd("out", "nodetool.output.Output", name="out"),
        edges=[edge("in", "out", "value")],
    )
    async with connect(server) as client, connect(server) as other:
        job_id = await client.run_job(streaming)
        assert (await client.recv())["message"] == "Job started"
        await client.command("set_mode", {"mode": "text"})
        await client.recv_until(lambda f: f.get("message") == "Mode set to text")
        assert client.last_text is True
        # Another connection drives the run, so this client sends nothing more.
        await other.command("stream_input", {"job_id": job_id, "input": "x", "value": "v"})
        await other.command("end_input_stream", {"job_id": job_id, "input": "x"})
        frames = await client.recv_until(lambda f: f.get("type") == "output_update")
        assert client.last_text is True
        frames += await client.until_terminal(job_id)
        assert client.last_text is True
    assert frames[-1]["result"] == {"outputs": {"out": ["v"]}}


# -- ping / pong -----------------------------------------------------------------------------


async def test_client_ping_gets_pong_with_float_ts(server: ServerHandle) -> None:
    """{"type":"ping"} → {"type":"pong","ts":<float>}; the SDK's form with command too."""
    async with connect(server) as client:
        await client.send({"type": "ping"})
        pong = await client.recv()
        await client.send({"type": "ping", "request_id": None, "data": None}, text=True)
        text_pong = await client.recv()
    for frame in (pong, text_pong):
        assert frame["type"] == "pong"
        assert type(frame["ts"]) is float


async def test_client_pong_is_accepted_silently(server: ServerHandle) -> None:
    """The SDK's {"type":"pong","ts":<int>} gets no reply and no error."""
    async with connect(server) as client:
        await client.send({"type": "pong", "ts": 1_700_000_000})
        await client.send({"type": "pong", "ts": 1_700_000_000}, text=True)
        assert await client.ping_barrier() == []


async def test_server_pings_periodically_with_float_ts() -> None:
    """With a ping interval, the server sends {"type":"ping","ts":<float>}; the SDK's pong
    answer is accepted silently."""
    with running_server(ping_interval=0.05) as server:
        async with connect(server) as client:
            ping = await client.recv(TIMEOUT)
            await client.send({"type": "pong", "ts": int(ping["ts"])})
            ping_again = await client.recv(TIMEOUT)
    assert ping["type"] == "ping" and type(ping["ts"]) is float
    assert ping_again["type"] == "ping"
