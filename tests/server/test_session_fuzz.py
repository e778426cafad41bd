"""Property-based: whatever a client sends, the session answers with protocol frames.

Random bytes and random nested MessagePack/JSON frames (known commands with
random ``data``, unknown commands, random envelopes) never raise out of
:meth:`Session.receive`, never close the session, and every frame it queues is
one PROTOCOL.md defines and encodes both as MessagePack and as JSON (so no
client's mode, replay or store can fail on it). Bounded: a few seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noderun.protocol.codec import Outbound
from noderun.protocol.values import INT_MAX, INT_MIN
from tests.server.session_support import Peer
from tests.support.frames import Frame

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

COMMANDS = [
    "run_job",
    "reconnect_job",
    "resume_job",
    "cancel_job",
    "get_status",
    "set_mode",
    "stream_input",
    "end_input_stream",
    "update_node_properties",
    "clear_models",
    "stop",
    "list_nodes",
    "get_node",
]

#: Answers PROTOCOL.md §2 defines, by the key that tells them apart.
TYPED = {"pong", "error", "job_update", "job_resumed", "generation_stopped", "rpc_response"}
INVALID = {"invalid_frame", "invalid_message", "invalid_command"}


def values(big_ints: bool) -> st.SearchStrategy[Any]:
    ints = st.integers() if big_ints else st.integers(min_value=INT_MIN, max_value=INT_MAX)
    scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text(max_size=8)
    keys = st.sampled_from(["job_id", "graph", "nodes", "id", "type", "data", "mode", "input"])
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(keys | st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=16,
    )


def frames(big_ints: bool) -> st.SearchStrategy[Any]:
    envelope = st.fixed_dictionaries(
        {},
        optional={
            "command": st.sampled_from(COMMANDS) | st.text(max_size=8) | values(big_ints),
            "type": st.sampled_from(["ping", "pong", "run_job"]) | values(big_ints),
            "request_id": st.none() | st.text(max_size=8) | values(big_ints),
            "data": values(big_ints),
        },
    )
    return envelope | values(big_ints)


def check(frames: list[Frame]) -> None:
    for frame in frames:
        item = Outbound(frame)
        item.msgpack()
        item.json()
        kind = frame.get("type")
        if kind is not None:
            assert kind in TYPED, frame
        else:
            assert {"message", "error", "status", "active_jobs"} & frame.keys(), frame
        error = frame.get("error")
        if isinstance(error, str) and error.startswith("invalid_"):
            assert error in INVALID, frame


def feed(payload: bytes, text: bool) -> list[Frame]:
    async def go() -> list[Frame]:
        peer = Peer()
        peer.session.receive(payload, text)
        answered = peer.wire.frames()
        assert peer.session.state.name == "OPEN"
        for run in list(peer.hub.active.values()):
            run.cancel()
        return answered

    return asyncio.run(go())


@FUZZ
@given(st.binary(max_size=64), st.booleans())
def test_random_bytes_get_protocol_frames(payload: bytes, text: bool) -> None:
    answered = feed(payload, text)
    check(answered)
    assert answered, "every frame that is not a pong gets an answer"


@FUZZ
@given(frames(big_ints=False))
def test_random_msgpack_frames_get_protocol_frames(frame: Any) -> None:
    answered = feed(msgspec.msgpack.encode(frame), False)
    check(answered)
    if not (
        isinstance(frame, dict) and frame.get("type") == "pong" and frame.get("command") is None
    ):
        assert answered


@FUZZ
@given(frames(big_ints=True))
def test_random_json_frames_get_protocol_frames(frame: Any) -> None:
    answered = feed(msgspec.json.encode(frame), True)
    check(answered)
    if not (
        isinstance(frame, dict) and frame.get("type") == "pong" and frame.get("command") is None
    ):
        assert answered
