"""Frames written straight to uvicorn's transport: the same bytes as websockets writes,
and the ASGI ``send`` whenever writing directly would not be exactly that."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from noderun.protocol.codec import Outbound
from noderun.server.direct import BATCH_BYTES, DirectWriter, frame_header
from noderun.server.outbox import Outbox


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("text", [False, True])
def test_frame_header_is_what_websockets_serializes(length: int, text: bool) -> None:
    payload = b"a" * length
    opcode = Opcode.TEXT if text else Opcode.BINARY
    expected = Frame(opcode, payload).serialize(mask=False, extensions=[])
    assert frame_header(length, text) + payload == expected


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writelines(self, chunks: list[bytes]) -> None:
        self.writes.append(b"".join(chunks))


class UvicornLike:
    """What DirectWriter reads of uvicorn's websockets-sansio protocol, and its ``send``."""

    def __init__(self) -> None:
        self.conn = ServerProtocol()
        self.conn.state = State.OPEN
        self.transport = Transport()
        self.writable = asyncio.Event()
        self.writable.set()
        self.close_sent = False
        self.disconnected = False
        self.asgi: list[MutableMapping[str, Any]] = []

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.asgi.append(message)


def serialized(data: bytes, text: bool = False) -> bytes:
    return Frame(Opcode.TEXT if text else Opcode.BINARY, data).serialize(mask=False)


def test_no_writer_behind_another_servers_send() -> None:
    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    assert DirectWriter.behind(send) is None


async def test_queued_frames_go_out_in_one_write() -> None:
    uvicorn = UvicornLike()
    outbox = Outbox(10, 1 << 20, uvicorn.send, DirectWriter.behind(uvicorn.send))
    ack, terminal = Outbound({"n": 1}), Outbound({"n": 2})
    outbox.hold()
    outbox.put(ack, False)
    outbox.put(terminal, True)
    # The reader's release writes them itself: nothing left to drain.
    assert not outbox.release()
    assert uvicorn.transport.writes == [
        serialized(ack.msgpack()) + serialized(terminal.json(), text=True)
    ]
    assert uvicorn.asgi == []
    assert outbox.sent == 2
    assert outbox.bytes == 0


async def test_a_flush_waiter_is_released_by_a_direct_write() -> None:
    uvicorn = UvicornLike()
    outbox = Outbox(10, 1 << 20, uvicorn.send, DirectWriter.behind(uvicorn.send))
    outbox.hold()
    outbox.put(Outbound({"n": 1}), False)
    flushed = outbox.flushed()
    waiter = flushed.send(None)  # runs up to its wait: the waiter is registered
    assert not waiter.done()
    assert not outbox.release()
    assert waiter.done()
    flushed.close()


async def test_batches_are_bounded_in_bytes() -> None:
    uvicorn = UvicornLike()
    outbox = Outbox(100, 1 << 24, uvicorn.send, DirectWriter.behind(uvicorn.send))
    big = Outbound(b"x" * (BATCH_BYTES // 2 + 1))
    for _ in range(3):
        outbox.put(big, False)
    await outbox.drain()
    frame = serialized(big.msgpack())
    assert uvicorn.transport.writes == [frame * 2, frame]


@pytest.mark.parametrize(
    "unsafe",
    ["paused", "close_sent", "disconnected", "closing", "fragment", "pending", "debug"],
)
async def test_the_asgi_send_whenever_a_direct_write_would_differ(unsafe: str) -> None:
    uvicorn = UvicornLike()
    outbox = Outbox(10, 1 << 20, uvicorn.send, DirectWriter.behind(uvicorn.send))
    match unsafe:
        case "paused":
            uvicorn.writable.clear()
        case "close_sent":
            uvicorn.close_sent = True
        case "disconnected":
            uvicorn.disconnected = True
        case "closing":
            uvicorn.conn.state = State.CLOSING
        case "fragment":
            uvicorn.conn.expect_continuation_frame = True
        case "pending":
            uvicorn.conn.writes.append(b"\x8a\x00")  # a pong websockets queued
        case "debug":
            uvicorn.conn.debug = True
    item = Outbound({"n": 1})
    outbox.put(item, False)
    await outbox.drain()
    assert uvicorn.transport.writes == []
    assert uvicorn.asgi == [{"type": "websocket.send", "bytes": item.msgpack()}]
