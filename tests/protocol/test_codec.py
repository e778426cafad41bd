"""Bytes in, frames out: the sans-I/O codec, with no server and no mocks."""

from __future__ import annotations

import msgspec
import pytest

from noderun.protocol.client import (
    CancelJob,
    EndInputStream,
    GetStatus,
    Ping,
    Pong,
    ReconnectJob,
    RunJob,
    SetMode,
    StreamInput,
    UpdateNodeProperties,
)
from noderun.protocol.codec import Outbound, decode_frame, encode_msgpack
from noderun.protocol.errors import CommandError, FrameError, MessageError
from noderun.protocol.server import JobUpdate, NodeUpdate, rejection
from tests.support.golden import golden_frames


def mp(value: object) -> bytes:
    return encode_msgpack(value)


def test_every_golden_client_frame_decodes_byte_for_byte() -> None:
    expected = {
        "run_job_command": RunJob,
        "cancel_job_command": CancelJob,
        "reconnect_job_command": ReconnectJob,
        "stream_input_command": StreamInput,
        "end_input_stream_command": EndInputStream,
        "update_node_properties_command": UpdateNodeProperties,
    }
    client = [f for f in golden_frames() if f.direction == "client"]
    assert {f.name for f in client} == set(expected)
    for golden in client:
        frame = decode_frame(golden.payload, text=False)
        assert type(frame) is expected[golden.name], golden.name
        data = golden.message["data"]
        assert isinstance(data, dict)
        if "job_id" in data:
            assert frame.job_id == data["job_id"]


def test_golden_run_job_fields_are_kept() -> None:
    golden = next(f for f in golden_frames() if f.name == "run_job_command")
    frame = decode_frame(golden.payload, text=False)
    assert isinstance(frame, RunJob)
    assert frame.workflow_id == "workflow-456"
    assert frame.params == {"prompt": "hello"}
    assert frame.require_terminal_result is True
    assert frame.explicit_types is False
    assert frame.graph is None
    assert frame.execution_options is not None
    assert frame.execution_options.persistence == "job"
    assert frame.execution_options.event_detail == "full"


def test_same_frame_decodes_from_json_text() -> None:
    frame = decode_frame(
        b'{"command":"cancel_job","request_id":"r1","data":{"job_id":"j"}}', text=True
    )
    assert frame == CancelJob(job_id="j", request_id="r1")


def test_request_id_is_copied_from_the_envelope_not_from_data() -> None:
    frame = decode_frame(
        mp({"command": "get_status", "request_id": "env", "data": {"request_id": "inner"}}),
        text=False,
    )
    assert isinstance(frame, GetStatus)
    assert frame.request_id == "env"


def test_missing_or_nil_data_means_empty_data() -> None:
    assert decode_frame(mp({"command": "get_status"}), text=False) == GetStatus()
    assert decode_frame(mp({"command": "get_status", "data": None}), text=False) == GetStatus()
    assert decode_frame(b'{"command":"get_status","data":null}', text=True) == GetStatus()


def test_type_only_ping_and_pong_frames() -> None:
    assert decode_frame(mp({"type": "ping"}), text=False) == Ping()
    assert decode_frame(mp({"type": "pong", "ts": 17}), text=False) == Pong()


def test_unknown_keys_are_ignored() -> None:
    frame = decode_frame(
        mp({"command": "set_mode", "zzz": 1, "data": {"mode": "text", "q": [1]}}), text=False
    )
    assert frame == SetMode(mode="text")


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b"\xc1", False),  # never-used msgpack byte
        (b"\xff\x00garbage", False),
        (mp([1, 2, 3]), False),  # not a map
        (mp("a string"), False),
        (mp({"command": "run_job", "request_id": 5}), False),  # envelope key of the wrong type
        (mp({"command": 7}), False),
        (b"{not json", True),
        (b"[1,2]", True),
    ],
)
def test_undecodable_frames_are_frame_errors(payload: bytes, text: bool) -> None:
    with pytest.raises(FrameError):
        decode_frame(payload, text=text)


def test_no_command_and_unknown_type_is_a_message_error_with_request_id() -> None:
    with pytest.raises(MessageError) as info:
        decode_frame(mp({"type": "what", "request_id": "r9"}), text=False)
    assert info.value.request_id == "r9"


def test_unknown_command_is_a_command_error_carrying_request_id() -> None:
    with pytest.raises(CommandError) as info:
        decode_frame(mp({"command": "launch_rockets", "request_id": "r1"}), text=False)
    assert info.value.request_id == "r1"
    assert "launch_rockets" in info.value.detail


@pytest.mark.parametrize(
    "data",
    [
        {},  # job_id is required
        {"job_id": 5},
        {"job_id": "j1", "workflow_id": 3},
    ],
)
def test_malformed_data_is_a_command_error_naming_job_id_when_readable(
    data: dict[str, object],
) -> None:
    with pytest.raises(CommandError) as info:
        decode_frame(mp({"command": "cancel_job", "request_id": "r", "data": data}), text=False)
    assert info.value.command == "cancel_job"
    assert info.value.request_id == "r"
    assert info.value.job_id == (data["job_id"] if isinstance(data.get("job_id"), str) else None)


def test_run_job_with_bad_graph_is_a_command_error() -> None:
    with pytest.raises(CommandError) as info:
        decode_frame(
            mp({"command": "run_job", "data": {"job_id": "j", "graph": {"nodes": 5}}}), text=False
        )
    assert "nodes" in info.value.detail
    assert info.value.job_id == "j"


def test_run_job_with_unknown_event_detail_is_a_command_error() -> None:
    data = {"execution_options": {"event_detail": "everything"}}
    with pytest.raises(CommandError):
        decode_frame(mp({"command": "run_job", "data": data}), text=False)


def test_edges_use_camel_case_handles() -> None:
    data = {
        "graph": {
            "nodes": [],
            "edges": [
                {"source": "a", "sourceHandle": "output", "target": "b", "targetHandle": "text"}
            ],
        }
    }
    frame = decode_frame(mp({"command": "run_job", "data": data}), text=False)
    assert isinstance(frame, RunJob)
    assert frame.graph is not None
    edge = frame.graph.edges[0]
    assert (edge.source_handle, edge.target_handle) == ("output", "text")


def _value_kind(value: object) -> str:
    return "nil" if value is None else type(value).__name__


def test_our_messages_carry_every_golden_key_with_the_same_value_types() -> None:
    ours: dict[tuple[str, object], object] = {
        ("job_update", "running"): JobUpdate(
            job_id="j", workflow_id="w", status="running", message="Workflow started", job_seq=1
        ),
        ("job_update", "completed"): JobUpdate(
            job_id="j",
            workflow_id="w",
            status="completed",
            result={"outputs": {"n": {"output": "x"}}},
            duration=0.5,
            job_seq=2,
        ),
        ("node_update", "completed"): NodeUpdate(
            job_id="j",
            workflow_id="w",
            node_id="n",
            node_name="N",
            node_type="t.T",
            status="completed",
            result={"output": "x"},
        ),
    }
    checked = 0
    for golden in golden_frames():
        if golden.direction != "server":
            continue
        key = (str(golden.message.get("type")), golden.message.get("status"))
        if key not in ours:
            continue
        encoded = msgspec.msgpack.decode(encode_msgpack(ours[key]))
        for name, value in golden.message.items():
            assert name in encoded, (golden.name, name)
            assert _value_kind(encoded[name]) == _value_kind(value), (golden.name, name)
        checked += 1
    assert checked == len(ours)


def test_outbound_encodes_each_format_once_and_resends_stored_bytes() -> None:
    item = Outbound({"message": "hi"})
    assert item.msgpack() is item.msgpack()
    assert item.json() is item.json()
    stored = Outbound.from_msgpack(3, item.msgpack())
    assert stored.seq == 3
    assert stored.json() == b'{"message":"hi"}'


def test_error_frame_shapes() -> None:
    """Each protocol error maps to the frame PROTOCOL.md §2 names, keys absent when unset."""
    decode = msgspec.msgpack.decode
    frame = decode(encode_msgpack(rejection(FrameError("m"))))
    assert frame == {"type": "error", "error": "invalid_frame", "message": "m"}
    frame = decode(encode_msgpack(rejection(MessageError("m", request_id="r"))))
    assert frame == {"error": "invalid_message", "message": "m", "request_id": "r"}
    frame = decode(
        encode_msgpack(rejection(CommandError("d", command="x", request_id="r", job_id="j")))
    )
    assert list(frame.items()) == [
        ("error", "invalid_command"),
        ("details", "d"),
        ("job_id", "j"),
        ("request_id", "r"),
    ]
