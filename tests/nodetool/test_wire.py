"""The worker wire, bytes in and frames out (no process)."""

from __future__ import annotations

import struct

import msgspec
import pytest

from noderun.nodetool.errors import WireError
from noderun.nodetool.wire import MAX_FRAME, FrameBuffer, WorkerFrame, encode_frame


def test_a_frame_is_a_big_endian_length_then_a_msgpack_map() -> None:
    raw = encode_frame("execute", "r1", {"node_type": "a.B", "fields": {"x": b"\x00"}})
    (length,) = struct.unpack(">I", raw[:4])
    assert length == len(raw) - 4
    assert msgspec.msgpack.decode(raw[4:]) == {
        "type": "execute",
        "request_id": "r1",
        "data": {"node_type": "a.B", "fields": {"x": b"\x00"}},
    }


def test_frames_split_anywhere_come_out_whole_and_in_order() -> None:
    raw = encode_frame("progress", "r1", {"progress": 1, "total": 2}) + encode_frame(
        "result", "r1", {"outputs": {"output": "x"}, "blobs": {}}
    )
    buffer = FrameBuffer()
    frames: list[WorkerFrame] = []
    for byte in raw:
        frames += buffer.feed(bytes([byte]))
    assert [frame.type for frame in frames] == ["progress", "result"]
    assert frames[1].data == {"outputs": {"output": "x"}, "blobs": {}}
    assert buffer.pending == 0


def test_a_partial_frame_waits_for_the_rest() -> None:
    raw = encode_frame("result", None, {})
    buffer = FrameBuffer()
    assert buffer.feed(raw[:-1]) == []
    assert buffer.pending == len(raw) - 1
    assert buffer.feed(raw[-1:]) == [WorkerFrame(type="result", request_id=None, data={})]


def test_a_length_beyond_the_limit_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="exceeds"):
        FrameBuffer().feed(struct.pack(">I", MAX_FRAME + 1))


@pytest.mark.parametrize("payload", [b"\xc1", msgspec.msgpack.encode([1, 2]), b"\x80"])
def test_a_payload_that_is_not_a_frame_is_a_wire_error(payload: bytes) -> None:
    with pytest.raises(WireError, match="undecodable"):
        FrameBuffer().feed(struct.pack(">I", len(payload)) + payload)
