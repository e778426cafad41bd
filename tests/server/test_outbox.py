"""The outbox: bounded FIFO, one sender at a time, the reader's send turn, the writer."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import msgspec

from noderun.protocol.codec import Outbound
from noderun.server.outbox import HARD_FACTOR, Outbox
from tests.support.timing import TIMEOUT


class Socket:
    """An ASGI ``send`` that records frames; can be held to simulate a slow socket."""

    def __init__(self) -> None:
        self.sent: list[object] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.sending = asyncio.Event()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sending.set()
        await self.gate.wait()
        if "bytes" in message:
            self.sent.append(msgspec.msgpack.decode(message["bytes"]))
        else:
            self.sent.append(("text", msgspec.json.decode(message["text"])))


def item(value: int) -> Outbound:
    return Outbound({"n": value}, value)


async def test_put_refuses_past_the_hard_bound_but_never_a_replay() -> None:
    outbox = Outbox(2, 1 << 20, Socket().send)
    hard = 2 * HARD_FACTOR
    assert all(outbox.put(item(n), False) for n in range(hard))
    assert not outbox.put(item(hard), False)
    assert outbox.put(item(hard + 1), False, replay=True)
    assert len(outbox) == hard + 1
    outbox.clear()
    assert len(outbox) == 0 and outbox.bytes == 0 and outbox.put(item(5), False)


async def test_the_byte_bound_counts_encoded_bytes() -> None:
    size = len(item(1).msgpack())
    outbox = Outbox(1000, size * 2, Socket().send)
    assert outbox.congestion() is None
    assert outbox.put(item(1), False) and outbox.put(item(2), False)
    assert outbox.bytes == 2 * size and outbox.congestion() is not None
    while outbox.put(item(3), False):
        pass
    assert outbox.bytes <= 2 * size * HARD_FACTOR and outbox.peak_bytes == outbox.bytes


async def test_congestion_resolves_once_read_down_to_half() -> None:
    socket = Socket()
    outbox = Outbox(4, 1 << 20, socket.send)
    for n in range(4):
        outbox.put(item(n), False)
    waiting = outbox.congestion()
    assert waiting is not None and outbox.congestion() is waiting
    called: list[bool] = []
    outbox.on_writable(lambda: called.append(True))
    await outbox.drain()
    assert waiting.done() and called == [True] and outbox.congestion() is None
    assert outbox.sent == 4 and outbox.bytes == 0


async def test_drain_sends_in_order_each_in_its_own_format() -> None:
    socket = Socket()
    outbox = Outbox(10, 1 << 20, socket.send)
    outbox.put(item(1), False)
    outbox.put(item(2), True)
    outbox.put(item(3), False)
    await outbox.drain()
    assert socket.sent == [{"n": 1}, ("text", {"n": 2}), {"n": 3}]
    assert len(outbox) == 0


async def test_the_reader_holding_the_outbox_sends_itself_without_the_writer() -> None:
    socket = Socket()
    outbox = Outbox(10, 1 << 20, socket.send)
    writer = asyncio.ensure_future(outbox.run_writer())
    try:
        await asyncio.sleep(0)  # the writer waits for a frame
        outbox.hold()
        outbox.put(item(1), False)
        outbox.put(item(2), False)
        for _ in range(3):
            await asyncio.sleep(0)
        assert socket.sent == []  # held: the writer was not woken
        assert outbox.release()  # frames queued, nobody sending: the reader drains
        await outbox.drain()
        assert socket.sent == [{"n": 1}, {"n": 2}]
        assert not outbox.release()  # nothing left to send
    finally:
        writer.cancel()


async def test_the_writer_sends_frames_queued_from_elsewhere_and_flushed_waits() -> None:
    socket = Socket()
    outbox = Outbox(10, 1 << 20, socket.send)
    writer = asyncio.ensure_future(outbox.run_writer())
    try:
        await asyncio.sleep(0)
        for value in range(1, 4):
            outbox.put(item(value), False)
        await asyncio.wait_for(outbox.flushed(), TIMEOUT)
        assert socket.sent == [{"n": 1}, {"n": 2}, {"n": 3}]
        await asyncio.wait_for(outbox.flushed(), TIMEOUT)  # nothing queued: at once
    finally:
        writer.cancel()


async def test_frames_queued_while_sending_follow_in_order_and_release_defers() -> None:
    socket = Socket()
    socket.gate.clear()  # the socket is slow: the first send blocks
    outbox = Outbox(10, 1 << 20, socket.send)
    writer = asyncio.ensure_future(outbox.run_writer())
    try:
        await asyncio.sleep(0)
        outbox.put(item(1), False)
        await asyncio.wait_for(socket.sending.wait(), TIMEOUT)
        outbox.hold()
        outbox.put(item(2), False)
        assert not outbox.release()  # a send is under way: its drain takes frame 2 too
        flushed = asyncio.ensure_future(outbox.flushed())
        await asyncio.sleep(0)
        assert not flushed.done()
        socket.gate.set()
        await asyncio.wait_for(flushed, TIMEOUT)
        assert socket.sent == [{"n": 1}, {"n": 2}]
    finally:
        writer.cancel()
