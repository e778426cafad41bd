"""A connection's outbound frames: a FIFO bounded in frames and bytes, one sender at a time.

Frames leave in the order they were queued. Whoever holds the *send turn*
drains the FIFO: the connection's reader right after it handles a frame (so the
ack and the terminal frame of a synchronous run go out with no task switch),
or the writer task, woken only for frames queued from elsewhere (runs in their
own tasks, timers). While the reader is handling a frame it holds the FIFO, so
its own frames do not wake the writer for nothing.

Backpressure (PROTOCOL.md §1: a client that keeps reading is never closed):

- *High-water mark*: ``limit`` frames or ``max_bytes`` encoded bytes. Above it the
  outbox is congested: :meth:`Outbox.congestion` hands producers a future to
  await, resolved once the client has read the queue down to half of both marks
  (the runs it follows wait; see :meth:`noderun.runtime.run.Run.congestion`).
- *Hard bound*: :data:`HARD_FACTOR` times the high-water mark. Only a producer
  that cannot wait (a synchronous burst inside one node call) gets there;
  :meth:`Outbox.put` then refuses the frame and the session catches the client up
  from the run's replay buffer or the store once it has read the queue down.
  Replayed frames and answers are taken past it: both are bounded elsewhere (the
  replay buffer; the reader sends its own answers before it reads on).

Under uvicorn's websockets-sansio protocol the sender writes the frames it holds
straight to the transport, all of them in one write, whenever that is exactly
what the ASGI ``send`` would do (:mod:`noderun.server.direct`); otherwise one ASGI
``send`` per frame.

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
from noderun.server.direct import BATCH_BYTES, DirectWriter, frame_header

__all__ = ["HARD_FACTOR", "Outbox"]

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: The hard bound, as a multiple of the high-water mark.
HARD_FACTOR = 4


class Outbox:
    def __init__(
        self, limit: int, max_bytes: int, send: Send, direct: DirectWriter | None = None
    ) -> None:
        self._frames: deque[tuple[bytes, bool]] = deque()
        self._limit = limit
        self._max_bytes = max_bytes
        self._hard_frames = limit * HARD_FACTOR
        self._hard_bytes = max_bytes * HARD_FACTOR
        self._send = send
        self._direct = direct
        self._sending = False
        self._held = False
        self._wakeup: asyncio.Future[None] | None = None
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._writable: asyncio.Future[None] | None = None
        self._on_writable: Callable[[], None] | None = None
        #: Encoded bytes queued now, and the most ever queued at once.
        self.bytes = 0
        self.peak_bytes = 0
        #: Frames handed to the socket so far (the slow-client watchdog's progress).
        self.sent = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def waiting(self) -> bool:
        """Whether frames wait for the client (queued, or a send under way)."""
        return bool(self._frames) or self._sending

    def put(self, item: Outbound, text: bool, *, replay: bool = False) -> bool:
        """Queue a frame (``text``: send it as JSON); ``False`` past the hard bound.

        A ``replay`` frame is always taken: it comes from a bounded replay buffer,
        and refusing it would cut off the catch-up meant to deliver it.
        """
        frames = self._frames
        data = item.json() if text else item.msgpack()
        size = self.bytes + len(data)
        if not replay and (len(frames) >= self._hard_frames or size > self._hard_bytes):
            return False
        frames.append((data, text))
        self.bytes = size
        if size > self.peak_bytes:
            self.peak_bytes = size
        wakeup = self._wakeup
        if wakeup is not None and not self._held and not self._sending and not wakeup.done():
            wakeup.set_result(None)
        return True

    def congestion(self) -> asyncio.Future[None] | None:
        """``None`` below the high-water mark; else a future resolved once the queue is
        read down to half of it (or cleared)."""
        if len(self._frames) < self._limit and self.bytes < self._max_bytes:
            return None
        writable = self._writable
        if writable is None:
            writable = self._writable = asyncio.get_running_loop().create_future()
        return writable

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` once the queue is read down to half the high-water mark."""
        self._on_writable = callback

    def _below_low_water(self) -> bool:
        return len(self._frames) <= self._limit // 2 and self.bytes <= self._max_bytes // 2

    def _release_writers(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)
        callback, self._on_writable = self._on_writable, None
        if callback is not None:
            callback()

    def hold(self) -> None:
        """The reader is handling a frame: it will :meth:`drain` afterwards itself."""
        self._held = True

    def release(self) -> bool:
        """End :meth:`hold`; ``True`` when the caller should now :meth:`drain` (frames are
        queued and no send is under way). Not a coroutine: what can be written straight
        to the transport is written here, and the reader awaits only for the rest."""
        self._held = False
        frames = self._frames
        if not frames or self._sending:
            return False
        direct = self._direct
        if direct is None:
            return True
        while direct.ready():
            self._write_direct(direct)
            if not frames:
                if self._flush_waiters:
                    self._flushed()
                return False
        return True

    async def drain(self) -> None:
        """Send every queued frame, including those queued while sending."""
        self._sending = True
        frames = self._frames
        send = self._send
        direct = self._direct
        try:
            while frames:
                if direct is not None and direct.ready():
                    self._write_direct(direct)
                    continue
                data, text = frames.popleft()
                self.bytes -= len(data)
                if text:
                    await send({"type": "websocket.send", "text": data.decode()})
                else:
                    await send({"type": "websocket.send", "bytes": data})
                self.sent += 1
                if (
                    self._writable is not None or self._on_writable is not None
                ) and self._below_low_water():
                    self._release_writers()
        finally:
            self._sending = False
        if self._flush_waiters:
            self._flushed()

    def _flushed(self) -> None:
        waiters, self._flush_waiters = self._flush_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _write_direct(self, direct: DirectWriter) -> None:
        """Hand queued frames, up to :data:`BATCH_BYTES` of them, to the transport at once."""
        frames = self._frames
        chunks: list[bytes] = []
        written = 0
        count = 0
        while frames and written < BATCH_BYTES:
            data, text = frames.popleft()
            size = len(data)
            chunks.append(frame_header(size, text))
            chunks.append(data)
            written += size
            count += 1
        self.bytes -= written
        direct.write(chunks)
        self.sent += count
        if (self._writable is not None or self._on_writable is not None) and (
            self._below_low_water()
        ):
            self._release_writers()

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
        """Drop every queued frame and let every waiting producer go (the client is gone)."""
        self._frames.clear()
        self.bytes = 0
        self._on_writable = None
        self._release_writers()
