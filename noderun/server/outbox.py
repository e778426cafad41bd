"""A connection's outbound frames: a bounded FIFO with exactly one sender at a time.

Frames leave in the order they were queued. Whoever holds the *send turn*
drains the FIFO: the connection's reader right after it handles a frame (so the
ack and the terminal frame of a synchronous run go out with no task switch),
or the writer task, woken only for frames queued from elsewhere (runs in their
own tasks, timers). While the reader is handling a frame it holds the FIFO, so
its own frames do not wake the writer for nothing.

Backpressure: ``limit`` frames. :meth:`Outbox.put` refuses past that and the
connection treats the client as too slow (closes it with 1013; its runs go on).

Why not ``asyncio.Queue``: its getter/putter bookkeeping and the writer's wake-up
per frame were the largest cost the server added per run over a bare echo in
the benchmark's profile; a deque and one future do the same job here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from noderun.protocol.codec import Outbound

__all__ = ["Outbox"]

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Outbox:
    def __init__(self, limit: int, send: Send) -> None:
        self._frames: deque[tuple[Outbound, bool]] = deque()
        self._limit = limit
        self._send = send
        self._sending = False
        self._held = False
        self._wakeup: asyncio.Future[None] | None = None
        self._flush_waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, item: Outbound, text: bool, *, replay: bool = False) -> bool:
        """Queue a frame (``text``: send it as JSON); ``False`` when the outbox is full.

        A ``replay`` frame is taken even past the limit: it comes from a replay
        buffer that already holds it (bounded per run), and refusing it would cut
        the client off in the middle of the reconnect meant to catch it up.
        """
        frames = self._frames
        if len(frames) >= self._limit and not replay:
            return False
        frames.append((item, text))
        wakeup = self._wakeup
        if wakeup is not None and not self._held and not self._sending and not wakeup.done():
            wakeup.set_result(None)
        return True

    def hold(self) -> None:
        """The reader is handling a frame: it will :meth:`drain` afterwards itself."""
        self._held = True

    def release(self) -> bool:
        """End :meth:`hold`; ``True`` when the caller should now :meth:`drain` (frames are
        queued and no send is under way). Not a coroutine: the reader awaits only when
        there is something to send."""
        self._held = False
        return bool(self._frames) and not self._sending

    async def drain(self) -> None:
        """Send every queued frame, including those queued while sending."""
        self._sending = True
        frames = self._frames
        send = self._send
        try:
            while frames:
                item, text = frames.popleft()
                if text:
                    await send({"type": "websocket.send", "text": item.json().decode()})
                else:
                    await send({"type": "websocket.send", "bytes": item.msgpack()})
        finally:
            self._sending = False
        if self._flush_waiters:
            waiters, self._flush_waiters = self._flush_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def run_writer(self) -> None:
        """The writer task: sleeps until a frame is queued by someone not holding the outbox."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._frames or self._sending or self._held:
                self._wakeup = loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
            if self._frames and not self._sending:
                await self.drain()

    async def flushed(self) -> None:
        """Wait until every frame queued so far has been handed to the socket."""
        if not self._frames and not self._sending:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(waiter)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done() and not self._sending:
            wakeup.set_result(None)
        await waiter

    def clear(self) -> None:
        self._frames.clear()
