"""The protocol session without a socket: bytes in, frames and actions out (PROTOCOL.md §1-4).

Every frame a test sees is the exact bytes the session queued, decoded in the
mode it was queued in (MessagePack or JSON), so key order and absent keys are
checked as the wire carries them. Runs use the real hub and registry; a test
awaits only where a run itself waits (an async node).
"""

from __future__ import annotations

import asyncio
from typing import cast

import msgspec
import pytest

from noderun.contract import RunRecord, RunStore
from noderun.protocol.client import COMMANDS, SdkRequest
from noderun.runtime.hub import Hub, RuntimeConfig
from noderun.runtime.node import node
from noderun.runtime.nodes import BUILTIN_NODES
from noderun.runtime.registry import Registry, default_registry
from noderun.server.session import (
    CancelDurable,
    Close,
    FollowDurable,
    ResumeFollowed,
    State,
)
from tests.server.session_support import CLOCK, Peer
from tests.support.frames import Frame

NOT_FOUND = "Job not found or already completed"


def concat(node_id: str = "n1") -> Frame:
    return {"id": node_id, "type": "nodetool.text.Concat", "data": {"a": "x", "b": "y"}}


def sleep(seconds: float = 60.0) -> Frame:
    return {"id": "s", "type": "noderun.debug.Sleep", "data": {"seconds": seconds}}


def fake_store_hub() -> Hub:
    """A hub with a store, for the session's decisions only: the transport does the I/O."""
    return Hub(default_registry(debug_nodes=True), None, store=cast(RunStore, object()))


# -- §1 connection -------------------------------------------------------------------------


async def test_replies_mirror_the_kind_of_the_last_frame() -> None:
    """Binary in → MessagePack out; text in → JSON out."""
    peer = Peer()
    peer.session.receive(msgspec.msgpack.encode({"type": "ping"}), False)
    peer.session.receive(b'{"type":"ping"}', True)
    (binary, text_reply) = peer.wire.raw()
    assert binary == (msgspec.msgpack.encode({"type": "pong", "ts": CLOCK}), False)
    assert text_reply == (b'{"type":"pong","ts":1234.5}', True)


async def test_set_mode_sets_the_encoding_and_is_acked() -> None:
    peer = Peer()
    peer.session.receive(
        msgspec.msgpack.encode({"command": "set_mode", "data": {"mode": "text"}}), False
    )
    assert peer.wire.raw() == [(b'{"message":"Mode set to text"}', True)]
    assert peer.session.text


async def test_pong_is_accepted_silently() -> None:
    peer = Peer()
    assert peer.send({"type": "pong", "ts": 5}) == []


async def test_server_ping_carries_a_float_timestamp() -> None:
    peer = Peer()
    peer.session.ping()
    assert peer.wire.frames() == [{"type": "ping", "ts": CLOCK}]


async def test_unknown_keys_are_ignored() -> None:
    peer = Peer()
    frames = peer.send({"command": "clear_models", "extra": [1, 2], "data": {"whatever": {"x": 1}}})
    assert frames == [{"message": "Unused models cleared"}]


async def test_a_stalled_client_is_closed_1013_and_detached_from_its_runs() -> None:
    """A client that reads nothing for the slow-client timeout (the transport's watchdog
    calls ``stalled``): close 1013; its runs go on without it."""
    peer = Peer()
    peer.run_job([sleep()], "slow", event_detail="terminal")
    assert peer.session.state.name == "OPEN" and peer.session.runs == 1
    peer.session.receive(msgspec.msgpack.encode({"type": "ping"}), False)
    assert peer.actions == []
    peer.session.stalled()
    assert peer.actions == [Close(1013, "client reads nothing: too slow")]
    assert peer.session.state is State.CLOSING
    assert peer.session.runs == 0 and peer.wire.queued == []
    run = peer.hub.get("slow", "1")
    assert run is not None and peer.session not in run.subscribers and not run.finished
    assert peer.send({"type": "ping"}) == []  # nothing reaches a closing client
    assert (
        peer.run_job([concat()], "after-close") == [] and peer.hub.get("after-close", "1") is None
    )
    peer.session.stalled()  # once only
    assert len(peer.actions) == 1
    run.cancel()
    peer.session.closed()
    assert peer.session.state.name == "CLOSED"


def progress(steps: int) -> Frame:
    return {"id": "p", "type": "noderun.debug.Progress", "data": {"steps": steps}}


def seqs(frames: list[Frame]) -> list[int]:
    return [frame["job_seq"] for frame in frames if "job_seq" in frame]


async def test_a_message_past_the_hard_bound_puts_the_run_behind_then_catches_up() -> None:
    """A burst the outlet refuses is not lost: the session stops the run's live stream
    and, once the client read its queue down, replays it from the buffer without a gap."""
    peer = Peer(limit=4)
    assert peer.run_job([progress(20)], "burst")[0]["message"] == "Job started"
    run = peer.hub.get("burst", "1")
    assert run is not None and run.task is not None
    await run.task
    first = peer.wire.frames()
    assert seqs(first) == [1, 2, 3, 4]
    assert peer.session not in run.subscribers and peer.actions == []
    callback = peer.wire.writable_callback
    assert callback is not None
    callback()
    rest = peer.wire.frames()
    assert not any(frame.get("type") == "job_resumed" for frame in rest)  # nothing was lost
    assert seqs(first) + seqs(rest) == list(range(1, run.seq + 1))
    assert rest[-1]["type"] == "job_update" and rest[-1]["status"] == "completed"


async def test_a_run_behind_its_replay_buffer_is_resumed_as_incomplete() -> None:
    """An ephemeral run whose buffer dropped what the client missed: ``job_resumed``
    with ``replay_incomplete``, then what is left (PROTOCOL.md §4)."""
    hub = Hub(default_registry(debug_nodes=True), None, config=RuntimeConfig(replay_limit=5))
    peer = Peer(hub, limit=2)
    peer.run_job([progress(20)], "burst")
    run = peer.hub.get("burst", "1")
    assert run is not None and run.task is not None
    await run.task
    peer.wire.frames()
    callback = peer.wire.writable_callback
    assert callback is not None
    callback()
    rest = peer.wire.frames()
    assert rest[0]["type"] == "job_resumed" and rest[0]["replay_incomplete"] is True
    assert seqs(rest[1:]) == list(range(run.seq - 4, run.seq + 1))
    assert rest[-1]["status"] == "completed"


async def test_a_closed_session_refuses_to_reopen() -> None:
    peer = Peer()
    peer.session.closed()
    peer.session.closed()  # idempotent
    with pytest.raises(RuntimeError):
        peer.session._become(State.OPEN)


# -- §2 client → server: run_job -----------------------------------------------------------


async def test_run_job_acks_untyped_then_streams_the_run() -> None:
    """ack {message, job_id, workflow_id} (no type, no job_seq) first, then the run's messages
    numbered from 1, ending with one terminal job_update."""
    peer = Peer()
    frames = peer.run_job([concat()], "j1")
    assert list(frames[0].items()) == [
        ("message", "Job started"),
        ("job_id", "j1"),
        ("workflow_id", "wf"),
    ]
    run_messages = frames[1:]
    assert [f["job_seq"] for f in run_messages] == list(range(1, len(run_messages) + 1))
    assert [(f["type"], f.get("status")) for f in run_messages] == [
        ("job_update", "running"),
        ("node_update", "running"),
        ("output_update", None),  # the sink's output (§3.2), before its completed
        ("node_update", "completed"),
        ("job_update", "completed"),
    ]
    assert (run_messages[2]["output_name"], run_messages[2]["value"]) == ("output", "xy")
    assert run_messages[-1]["status"] == "completed"
    assert run_messages[-1]["result"] == {"outputs": {"n1": {"output": "xy"}}}


async def test_run_job_ack_carries_the_request_id_when_given() -> None:
    peer = Peer()
    frames = peer.run_job([concat()], "j2", event_detail="terminal", request_id="r7")
    assert frames[0] == {
        "message": "Job started",
        "job_id": "j2",
        "workflow_id": "wf",
        "request_id": "r7",
    }
    assert [f.get("status") for f in frames[1:]] == ["completed"]


async def test_run_job_with_a_running_job_id_is_an_error_ack() -> None:
    peer = Peer()
    peer.run_job([sleep()], "dup")
    frames = peer.run_job([concat()], "dup", request_id="r2")
    assert frames == [
        {
            "error": "job_already_running",
            "message": frames[0]["message"],
            "job_id": "dup",
            "request_id": "r2",
        }
    ]
    run = peer.hub.get("dup", "1")
    assert run is not None and run.cancel()


async def test_validation_failure_is_a_failed_terminal_nothing_executed() -> None:
    peer = Peer()
    frames = peer.run_job([{"id": "n", "type": "no.such.Node", "data": {}}], "bad")
    assert frames[0]["message"] == "Job started"
    assert frames[-1]["status"] == "failed" and "no.such.Node" in frames[-1]["error"]
    assert not any(f.get("type") == "node_update" for f in frames)


async def test_run_job_without_a_job_id_gets_a_uuid4_hex_one() -> None:
    peer = Peer()
    frames = peer.command(
        "run_job",
        {"workflow_id": "wf", "graph": {"nodes": [concat()], "edges": []}},
    )
    job_id = frames[0]["job_id"]
    assert len(job_id) == 32 and int(job_id, 16) >= 0
    assert all(f["job_id"] == job_id for f in frames)


async def test_explicit_types_wrap_the_terminal_result() -> None:
    peer = Peer()
    plain = peer.run_job([concat()], "plain", event_detail="terminal")
    assert plain[-1]["result"] == {"outputs": {"n1": {"output": "xy"}}}
    typed = peer.command(
        "run_job",
        {
            "job_id": "typed",
            "graph": {"nodes": [concat()], "edges": []},
            "explicit_types": True,
            "require_terminal_result": True,
            "execution_options": {"event_detail": "terminal"},
        },
    )
    assert typed[-1]["result"] == {"outputs": {"n1": {"output": {"type": "string", "value": "xy"}}}}


async def test_a_busy_server_refuses_with_a_terminal_failed_without_job_seq() -> None:
    hub = Hub(default_registry(debug_nodes=True), None, RuntimeConfig(max_active_runs=1))
    peer = Peer(hub)
    peer.run_job([sleep()], "first")
    (refusal,) = peer.run_job([concat()], "second")
    assert (refusal["type"], refusal["job_id"], refusal["status"]) == (
        "job_update",
        "second",
        "failed",
    )
    assert "busy" in refusal["error"] and "job_seq" not in refusal
    run = hub.get("first", "1")
    assert run is not None and run.cancel()


# -- §2: the other commands ----------------------------------------------------------------


async def test_cancel_a_running_job_acks_then_ends_cancelled() -> None:
    peer = Peer()
    peer.run_job([sleep()], "c1")
    peer.wire.clear()
    frames = peer.command("cancel_job", {"job_id": "c1"})
    assert frames == [
        {"message": "Job cancellation requested", "job_id": "c1", "workflow_id": "wf"}
    ]
    run = peer.hub.get("c1", "1")
    assert run is not None and run.task is not None
    await run.task
    assert peer.wire.frames()[-1]["status"] == "cancelled"


async def test_cancel_unknown_job_is_not_found_with_request_id() -> None:
    peer = Peer()
    frames = peer.command("cancel_job", {"job_id": "ghost"}, request_id="c9")
    assert frames == [{"error": NOT_FOUND, "job_id": "ghost", "request_id": "c9"}]


async def test_cancel_a_finished_job_is_not_found() -> None:
    peer = Peer()
    peer.run_job([concat()], "done")
    assert peer.command("cancel_job", {"job_id": "done"}) == [
        {"error": NOT_FOUND, "job_id": "done"}
    ]


async def test_get_status_of_one_run_unknown_and_all() -> None:
    peer = Peer()
    peer.run_job([sleep()], "g1")
    peer.wire.clear()
    assert peer.command("get_status", {"job_id": "g1"}) == [
        {"status": "running", "job_id": "g1", "workflow_id": "wf"}
    ]
    assert peer.command("get_status", {"job_id": "nope"}) == [
        {"status": "not_found", "job_id": "nope"}
    ]
    assert peer.command("get_status", None) == [
        {"active_jobs": [{"job_id": "g1", "workflow_id": "wf", "status": "running"}]}
    ]
    run = peer.hub.get("g1", "1")
    assert run is not None and run.cancel()


async def test_another_users_run_is_not_found() -> None:
    owner = Peer()
    owner.run_job([sleep()], "mine")
    stranger = Peer(owner.hub, user_id="2")
    assert stranger.command("get_status", {"job_id": "mine"}) == [
        {"status": "not_found", "job_id": "mine"}
    ]
    assert stranger.command("cancel_job", {"job_id": "mine"}) == [
        {"error": NOT_FOUND, "job_id": "mine"}
    ]
    run = owner.hub.get("mine", "1")
    assert run is not None and run.cancel()


@pytest.mark.parametrize(
    ("command", "data"),
    [
        ("stream_input", {"job_id": "ghost", "input": "x", "value": 1}),
        ("end_input_stream", {"job_id": "ghost", "input": "x"}),
        ("update_node_properties", {"job_id": "ghost", "node_id": "n", "properties": {}}),
    ],
)
async def test_commands_on_an_unknown_run_are_not_found_never_invalid(
    command: str, data: Frame
) -> None:
    peer = Peer()
    assert peer.command(command, data, request_id="q") == [
        {"error": NOT_FOUND, "job_id": "ghost", "request_id": "q"}
    ]


STREAMING = [
    {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "x"}},
    {"id": "up", "type": "nodetool.text.ToUppercase", "data": {}},
    {"id": "out", "type": "nodetool.output.Output", "data": {"name": "out"}},
]


def streaming_job(peer: Peer, job_id: str) -> None:
    peer.command(
        "run_job",
        {
            "job_id": job_id,
            "workflow_id": "wf",
            "graph": {
                "nodes": STREAMING,
                "edges": [
                    {
                        "source": "in",
                        "sourceHandle": "output",
                        "target": "up",
                        "targetHandle": "text",
                    },
                    {
                        "source": "up",
                        "sourceHandle": "output",
                        "target": "out",
                        "targetHandle": "value",
                    },
                ],
            },
            "require_terminal_result": True,
            "execution_options": {"event_detail": "terminal"},
        },
    )


async def test_stream_input_and_end_are_acked_and_flow_to_the_output() -> None:
    peer = Peer()
    streaming_job(peer, "s1")
    await asyncio.sleep(0)  # the run's task starts its execution
    peer.wire.clear()
    assert peer.command("stream_input", {"job_id": "s1", "input": "x", "value": "a"}) == [
        {"message": "Input item streamed", "job_id": "s1", "workflow_id": "wf"}
    ]
    rejected = peer.command("stream_input", {"job_id": "s1", "input": "nope", "value": "a"})
    assert list(rejected[0]) == ["error", "message", "job_id", "input"]
    assert rejected[0]["error"] == "input_rejected" and rejected[0]["input"] == "nope"
    assert peer.command("end_input_stream", {"job_id": "s1", "input": "x"}) == [
        {"message": "Input stream ended", "job_id": "s1", "workflow_id": "wf"}
    ]
    run = peer.hub.get("s1", "1")
    assert run is not None and run.task is not None
    await run.task
    assert peer.wire.frames()[-1]["result"] == {"outputs": {"out": ["A"]}}


async def test_update_node_properties_acks_or_rejects_naming_the_node() -> None:
    peer = Peer()
    streaming_job(peer, "p1")
    await asyncio.sleep(0)
    peer.wire.clear()
    ok = peer.command(
        "update_node_properties", {"job_id": "p1", "node_id": "up", "properties": {"text": "z"}}
    )
    assert ok == [{"message": "Node properties updated", "job_id": "p1", "node_id": "up"}]
    bad = peer.command(
        "update_node_properties",
        {"job_id": "p1", "node_id": "ghost", "properties": {}},
        request_id="u1",
    )
    assert list(bad[0]) == ["error", "message", "job_id", "request_id", "node_id"]
    assert bad[0]["error"] == "properties_rejected" and bad[0]["node_id"] == "ghost"
    run = peer.hub.get("p1", "1")
    assert run is not None and run.cancel() and run.task is not None
    await run.task


async def test_stop_detaches_and_sends_generation_stopped_then_an_ack() -> None:
    peer = Peer()
    peer.run_job([sleep()], "st")
    peer.wire.clear()
    assert peer.command("stop", {"job_id": "st"}) == [
        {"type": "generation_stopped", "message": "Generation stopped", "job_id": "st"},
        {"message": "Streaming stopped", "job_id": "st"},
    ]
    run = peer.hub.get("st", "1")
    assert run is not None and peer.session not in run.subscribers and not run.finished
    assert run.cancel()


# -- §2.2 RPC ----------------------------------------------------------------------------


async def test_list_nodes_answers_rpc_response_with_the_request_id() -> None:
    peer = Peer()
    (answer,) = peer.command("list_nodes", {}, request_id="r1")
    assert list(answer) == ["type", "request_id", "command", "result"]
    assert answer["type"] == "rpc_response" and answer["request_id"] == "r1"
    assert {meta["node_type"] for meta in answer["result"]["nodes"]} >= {"lib.math.Add"}
    (math,) = peer.command("list_nodes", {"namespace": "lib.math"}, request_id="r2")
    assert {meta["namespace"] for meta in math["result"]["nodes"]} >= {"lib.math"}
    assert all(meta["namespace"].startswith("lib.math") for meta in math["result"]["nodes"])


async def test_rpc_request_id_is_present_even_when_nil() -> None:
    peer = Peer()
    (answer,) = peer.command("list_nodes", None)
    assert "request_id" in answer and answer["request_id"] is None


async def test_get_node_answers_metadata_or_not_found() -> None:
    peer = Peer()
    (found,) = peer.command("get_node", {"node_type": "lib.math.Add"}, request_id="g1")
    assert found["result"]["node_type"] == "lib.math.Add"
    (missing,) = peer.command("get_node", {"node_type": "lib.math.Nope"}, request_id="g2")
    assert list(missing) == ["type", "request_id", "command", "error"]
    assert list(missing["error"].items()) == [
        ("code", "not_found"),
        ("message", "unknown node type 'lib.math.Nope'"),
        ("retryable", False),
        ("apiCode", "NOT_FOUND"),
    ]


async def test_malformed_rpc_data_is_invalid_command() -> None:
    peer = Peer()
    (error,) = peer.command("get_node", {"node_type": 5}, request_id="g3")
    assert error["error"] == "invalid_command" and error["request_id"] == "g3"


async def test_every_rpc_command_reaches_the_sdk_service() -> None:
    """Every RPC of §2.2/§8 is answered by one rpc_response (or, for data it requires and
    was not given, invalid_command carrying the request_id)."""
    rpcs = {name for name, struct in COMMANDS.items() if issubclass(struct, SdkRequest)}
    assert {"list_nodes", "get_node", "get_capabilities", "list_workflows"} <= rpcs
    peer = Peer()
    answered = set()
    for name in sorted(rpcs):
        (answer,) = peer.command(name, None, request_id=name)
        assert answer["request_id"] == name
        if answer.get("type") == "rpc_response":
            assert answer["command"] == name
            assert ("result" in answer) != ("error" in answer)
            answered.add(name)
        else:
            assert answer["error"] == "invalid_command"
    assert {"list_nodes", "get_capabilities", "list_workflows"} <= answered


# -- §2: frames the server cannot accept -----------------------------------------------------


async def test_unknown_command_is_invalid_command_with_request_id() -> None:
    peer = Peer()
    assert peer.command("launch_rockets", {}, request_id="r1") == [
        {
            "error": "invalid_command",
            "details": "unknown command 'launch_rockets'",
            "request_id": "r1",
        }
    ]


async def test_malformed_data_is_invalid_command_naming_the_job() -> None:
    peer = Peer()
    (error,) = peer.command("cancel_job", {"job_id": "j", "workflow_id": 3})
    assert list(error) == ["error", "details", "job_id"]
    assert error["error"] == "invalid_command" and error["job_id"] == "j"


async def test_no_command_and_unknown_type_is_invalid_message() -> None:
    peer = Peer()
    (error,) = peer.send({"type": "what", "request_id": "m1"})
    assert error == {"error": "invalid_message", "message": error["message"], "request_id": "m1"}


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b"\xc1", False),  # never-used msgpack byte
        (msgspec.msgpack.encode([1, 2]), False),  # not a map
        (b"{not json", True),
        (b'"a string"', True),
    ],
)
async def test_undecodable_frames_are_typed_invalid_frame(payload: bytes, text: bool) -> None:
    peer = Peer()
    peer.session.receive(payload, text)
    (error,) = peer.wire.frames()
    assert list(error) == ["type", "error", "message"]
    assert (error["type"], error["error"]) == ("error", "invalid_frame")
    assert peer.session.state is State.OPEN


async def test_invalid_frame_carries_a_readable_request_id() -> None:
    peer = Peer()
    (error,) = peer.send({"command": 5, "request_id": "f1"})
    assert error["error"] == "invalid_frame" and error["request_id"] == "f1"


# -- hostile input (issue 12.4) ----------------------------------------------------------------


DEPTH = 10_000


@pytest.mark.parametrize("text", [False, True])
async def test_deep_nesting_is_invalid_frame_and_the_session_goes_on(text: bool) -> None:
    if text:
        payload = (
            b'{"command":"run_job","data":{"params":{"a":' + b"[" * DEPTH + b"]" * DEPTH + b"}}}"
        )
    else:
        head = msgspec.msgpack.encode({"command": "run_job", "data": {"params": {"a": None}}})
        payload = head[:-1] + b"\x91" * DEPTH + b"\xc0"
    peer = Peer()
    peer.session.receive(payload, text)
    assert peer.wire.frames() == [
        {"type": "error", "error": "invalid_frame", "message": "frame nested too deeply to decode"}
    ]
    assert peer.send({"type": "ping"}, text=text) == [{"type": "pong", "ts": CLOCK}]


async def test_deep_nesting_of_the_whole_frame_is_invalid_frame() -> None:
    peer = Peer()
    peer.session.receive(b"[" * DEPTH + b"]" * DEPTH, True)
    assert peer.wire.frames()[0]["error"] == "invalid_frame"


@pytest.mark.parametrize("number", [2**64 + 1, -(2**63) - 1, 10**40])
async def test_a_json_integer_msgpack_cannot_carry_is_invalid_command(number: int) -> None:
    peer = Peer()
    payload = (
        b'{"command":"run_job","request_id":"big","data":{"job_id":"b1","params":{"a":%d}}}'
        % number
    )
    peer.session.receive(payload, True)
    (error,) = peer.wire.frames()
    assert (error["error"], error["job_id"], error["request_id"]) == (
        "invalid_command",
        "b1",
        "big",
    )
    assert str(number) in error["details"]
    assert peer.hub.get("b1", "1") is None


async def test_json_integers_at_the_edges_of_the_range_are_accepted() -> None:
    peer = Peer()
    payload = b'{"command":"clear_models","data":{"lo":%d,"hi":%d,"s":"12345678901234567890"}}' % (
        -(2**63),
        2**64 - 1,
    )
    peer.session.receive(payload, True)
    assert peer.wire.frames() == [{"message": "Unused models cleared"}]


async def test_invalid_utf8_reaching_the_session_is_invalid_frame() -> None:
    """uvicorn closes such a text frame with 1007 before the session sees it
    (test_hostile.py); a session handed one anyway answers, it does not raise."""
    peer = Peer()
    peer.session.receive(b'{"type":"pi\xffng"}', True)
    assert peer.wire.frames()[0]["error"] == "invalid_frame"
    # In a key the protocol ignores, the bytes are skipped unread, like the key.
    peer.session.receive(b'{"type":"ping","x":"\xff\xfe"}', True)
    assert peer.wire.frames() == [{"type": "pong", "ts": CLOCK}]


@node("noderun.test.Huge", title="Huge", inline=True)
def huge(shift: int = 64) -> list[int]:
    """Outputs ``[1, 2**shift]``: past 63, an integer MessagePack cannot carry."""
    return [1, 2**shift]


async def test_a_node_output_out_of_range_fails_the_run_naming_the_node() -> None:
    """Any node whose output holds an integer outside MessagePack's range fails, named;
    every frame of the run still encodes."""
    peer = Peer(Hub(Registry([*BUILTIN_NODES, huge]), None))
    frames = peer.run_job([{"id": "big", "type": "noderun.test.Huge", "data": {}}], "huge")
    errors = [f for f in frames if f.get("type") == "node_update" and f["status"] == "error"]
    assert [f["node_id"] for f in errors] == ["big"]
    terminal = frames[-1]
    assert terminal["status"] == "failed"
    assert "big" in terminal["error"] and str(2**64) in terminal["error"]
    assert (
        peer.run_job([{"id": "ok", "type": "noderun.test.Huge", "data": {"shift": 63}}], "fits")[
            -1
        ]["status"]
        == "completed"
    )


async def test_lib_math_add_beyond_the_wire_fails_naming_the_node() -> None:
    peer = Peer()
    add = {"id": "adder", "type": "lib.math.Add", "data": {"a": 2**64 - 1, "b": 1}}
    terminal = peer.run_job([add], "big-add")[-1]
    assert terminal["status"] == "failed" and "adder" in terminal["error"]


# -- §4 reconnect --------------------------------------------------------------------------


async def test_reconnect_unknown_run_without_a_store_is_job_not_found() -> None:
    peer = Peer()
    assert peer.command("reconnect_job", {"job_id": "ghost", "workflow_id": "w"}) == [
        {
            "type": "job_update",
            "job_id": "ghost",
            "workflow_id": "w",
            "status": "failed",
            "message": None,
            "result": None,
            "error": "job not found",
            "duration": None,
            "run_state": None,
        }
    ]


@pytest.mark.parametrize("command", ["reconnect_job", "resume_job"])
async def test_reconnect_a_finished_run_replays_it_with_its_terminal(command: str) -> None:
    first = Peer()
    sent = first.run_job([concat()], "r1")
    second = Peer(first.hub)
    frames = second.command(command, {"job_id": "r1"})
    resumed, replayed = frames[0], frames[1:]
    assert list(resumed.items()) == [
        ("type", "job_resumed"),
        ("job_id", "r1"),
        ("workflow_id", "wf"),
        ("status", "completed"),
        ("last_seq", 5),
        ("replay_count", 5),
        ("replay_incomplete", False),
    ]
    assert replayed == sent[1:]


async def test_reconnect_after_seq_replays_only_what_follows() -> None:
    first = Peer()
    first.run_job([concat()], "r2")
    second = Peer(first.hub)
    frames = second.command("reconnect_job", {"job_id": "r2", "after_seq": 3})
    assert frames[0]["replay_count"] == 2  # node completed, terminal
    assert [f["job_seq"] for f in frames[1:]] == [4, 5]


async def test_repeated_reconnect_never_duplicates_the_live_stream() -> None:
    first = Peer()
    first.run_job([sleep()], "live")
    second = Peer(first.hub)
    second.command("reconnect_job", {"job_id": "live"})
    again = second.command("reconnect_job", {"job_id": "live"})
    assert [(f["type"], f["replay_count"]) for f in again] == [("job_resumed", 0)]
    run = first.hub.get("live", "1")
    assert run is not None
    assert run.subscribers.count(second.session) == 1
    assert run.cancel() and run.task is not None
    await run.task
    for peer in (first, second):
        assert [f.get("status") for f in peer.wire.frames()][-1] == "cancelled"


async def test_closing_detaches_from_every_run() -> None:
    peer = Peer()
    peer.run_job([sleep()], "left")
    run = peer.hub.get("left", "1")
    assert run is not None and peer.session in run.subscribers
    peer.session.closed()
    assert peer.session not in run.subscribers and not run.finished
    assert run.cancel()


# -- §4-5 durable runs: the actions the transport carries out ------------------------------------


class StubFollower:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def record(job_id: str, status: str = "running") -> RunRecord:
    return RunRecord(job_id=job_id, workflow_id="wf-stored", user_id="1", status=status, last_seq=7)


async def test_reconnect_to_a_stored_run_asks_to_follow_it_once() -> None:
    peer = Peer(fake_store_hub())
    assert peer.command("reconnect_job", {"job_id": "d1"}) == []
    (follow,) = peer.actions
    assert isinstance(follow, FollowDurable) and follow.frame.job_id == "d1"
    # Repeated before the transport even started the follower: no second stream.
    peer.command("reconnect_job", {"job_id": "d1"})
    assert isinstance(peer.actions[-1], ResumeFollowed)
    follower = StubFollower("d1")
    assert peer.session.follower_started(follower)
    peer.session.resume_answered(follow.frame, record("d1"))
    assert peer.wire.frames() == [
        {
            "type": "job_resumed",
            "job_id": "d1",
            "workflow_id": "wf-stored",
            "status": "running",
            "last_seq": 7,
            "replay_count": 0,
            "replay_incomplete": False,
        }
    ]
    peer.session.closed()
    assert follower.stopped


async def test_a_follower_nobody_wants_any_more_is_stopped() -> None:
    peer = Peer(fake_store_hub())
    peer.command("reconnect_job", {"job_id": "d2"})
    peer.command("stop", {"job_id": "d2"})
    peer.wire.clear()
    follower = StubFollower("d2")
    assert not peer.session.follower_started(follower)
    assert follower.stopped


async def test_a_stored_run_not_found_is_a_failed_job_update_and_may_be_asked_again() -> None:
    peer = Peer(fake_store_hub())
    peer.command("reconnect_job", {"job_id": "d3", "workflow_id": "w"})
    (follow,) = peer.actions
    assert isinstance(follow, FollowDurable)
    follower = StubFollower("d3")
    peer.session.follower_started(follower)
    peer.session.follow_failed(follow.frame, follower, "job not found")
    (frame,) = peer.wire.frames()
    assert (frame["type"], frame["status"], frame["error"]) == (
        "job_update",
        "failed",
        "job not found",
    )
    peer.command("reconnect_job", {"job_id": "d3"})
    assert isinstance(peer.actions[-1], FollowDurable)


async def test_cancel_of_a_stored_run_is_answered_from_the_store() -> None:
    peer = Peer(fake_store_hub())
    assert peer.command("cancel_job", {"job_id": "d4"}, request_id="c1") == []
    (cancel,) = peer.actions
    assert isinstance(cancel, CancelDurable)
    peer.session.cancel_answered(cancel.frame, record("d4"))
    assert peer.wire.frames() == [
        {"message": "Job cancellation requested", "job_id": "d4", "workflow_id": "wf-stored"}
    ]
    peer.session.cancel_answered(cancel.frame, None)
    assert peer.wire.frames() == [{"error": NOT_FOUND, "job_id": "d4", "request_id": "c1"}]
