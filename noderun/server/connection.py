"""One WebSocket connection: the ASGI plumbing around a :class:`~.session.Session`.

The reader awaits ASGI ``receive`` and feeds each message to the session, which
handles it synchronously (the hot path has no await between a ``run_job``
frame and its ack). Everything to send, acks and run messages alike, goes
through one bounded :class:`~.outbox.Outbox`, so frames leave in the order they
were produced; the reader sends what handling a frame queued itself, a writer
task what is queued from elsewhere (runs in their tasks, timers). The session's
actions that must await (durable reconnect/cancel, closing) run here, each in a
task.

Backpressure (PROTOCOL.md §1): the outbox's high-water mark (``outbound_limit``
frames, ``outbound_bytes`` bytes) slows the runs this client follows; a client
that keeps reading is never closed. A client that reads nothing for
``slow_client_timeout`` seconds while frames wait for it is closed with 1013:
the session detaches it from its runs (they go on, buffering for replay) and the
connection aborts the transport, since a close frame queued behind everything
the client did not read would wait on the very socket that is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, assert_never

import structlog

from noderun.runtime.hub import Hub
from noderun.server import durable
from noderun.server.direct import DirectWriter
from noderun.server.outbox import Outbox
from noderun.server.sdk import SdkService
from noderun.server.session import (
    Action,
    CancelDurable,
    Close,
    FollowDurable,
    ResumeFollowed,
    Session,
)

__all__ = ["Connection"]

log = structlog.get_logger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: ``SO_LINGER`` on, zero seconds: closing the socket resets the connection.
_RESET = struct.pack("ii", 1, 0)


class Connection:
    """Serves one client until it disconnects."""

    def __init__(
        self,
        hub: Hub,
        receive: Receive,
        send: Send,
        *,
        user_id: str,
        outbound_limit: int,
        outbound_bytes: int,
        slow_client_timeout: float,
        ping_interval: float,
        sdk: SdkService,
    ) -> None:
        self._hub = hub
        self._receive = receive
        self._send = send
        self.user_id = user_id
        self._outbox = Outbox(outbound_limit, outbound_bytes, send, DirectWriter.behind(send))
        self.session = Session(hub, self._outbox, self._act, user_id=user_id, sdk=sdk)
        self._ping_interval = ping_interval
        self._ping_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slow_timeout = slow_client_timeout
        self._watch_timer: asyncio.TimerHandle | None = None
        #: The outbox's ``sent`` at the last look, and since when it has not moved.
        self._seen_sent = 0
        self._stalled_since: float | None = None
        #: 1 once closed for not reading (a counter, for metrics).
        self.slow_consumer_closes = 0

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    async def serve(self) -> None:
        """Run until the client disconnects; then detach from every run (they go on)."""
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write())
        # The reader is a task of its own: each frame the client sends resumes it alone,
        # not the chain of coroutines that awaits serve() (uvicorn's, Starlette's routing,
        # the endpoint), which every resumption would otherwise pass through and back.
        reader = loop.create_task(self._read())
        self._schedule_ping()
        self._schedule_watch()
        try:
            await reader
        finally:
            reader.cancel()
            self.session.closed()
            if self._ping_timer is not None:
                self._ping_timer.cancel()
            if self._watch_timer is not None:
                self._watch_timer.cancel()
            for task in (writer, *self._tasks):
                task.cancel()

    async def _read(self) -> None:
        receive = self._receive
        handle = self.session.receive
        outbox = self._outbox
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                # The reader sends what handling the frame queued (ack, a synchronous
                # run's messages) itself: no writer wake-up on the hot path.
                outbox.hold()
                try:
                    if data is not None:
                        handle(data, False)
                    else:
                        handle(message["text"].encode(), True)
                finally:
                    if outbox.release():
                        await outbox.drain()
            elif kind == "websocket.disconnect":
                return

    async def _write(self) -> None:
        """Send frames queued outside the reader (runs in their tasks, timers)."""
        # OSError: the client is gone (uvicorn's ClientDisconnected); the reader ends too.
        with contextlib.suppress(OSError):
            await self._outbox.run_writer()

    @property
    def queued(self) -> int:
        """Frames waiting in the outbox."""
        return len(self._outbox)

    async def flushed(self) -> None:
        """Wait until every frame queued so far has been handed to the socket."""
        await self._outbox.flushed()

    def _act(self, action: Action) -> None:
        store = self._hub.store
        match action:
            case Close():
                self.slow_consumer_closes += 1
                log.warning("connection.slow_client", user_id=self.user_id, reason=action.reason)
                self._abort(action.code, action.reason)
            case FollowDurable():
                assert store is not None
                self._spawn(durable.follow(store, self.session, action))
            case ResumeFollowed():
                assert store is not None
                self._spawn(durable.resume_followed(store, self.session, action))
            case CancelDurable():
                assert store is not None
                self._spawn(durable.cancel(store, self.session, action))
            case _:
                assert_never(action)

    def _abort(self, code: int, reason: str) -> None:
        """Close with ``code`` without waiting on the socket.

        uvicorn's ``send`` first awaits the transport's writability, which a client
        that reads nothing never gives back; its websockets-sansio protocol is the
        ``send`` callable's owner, so the close frame is written to its transport and
        the transport aborted. Under another server, the ASGI close (which may wait).
        """
        protocol = getattr(self._send, "__self__", None)
        transport = getattr(protocol, "transport", None)
        connection = getattr(protocol, "conn", None)
        # Duck-typed: uvloop's transports are not asyncio.Transport instances.
        if connection is not None and transport is not None and hasattr(transport, "abort"):
            with contextlib.suppress(Exception):
                connection.send_close(code, reason)
                transport.write(b"".join(connection.data_to_send()))
            # A plain close() queues the FIN behind the bytes the client never reads (a
            # zero window: it never goes out); linger 0 makes the close a reset.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            transport.abort()
            return
        self._spawn(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def _schedule_watch(self) -> None:
        if self._slow_timeout > 0:
            loop = asyncio.get_running_loop()
            # A quarter of the timeout: a stall is seen at most that late.
            self._watch_timer = loop.call_later(self._slow_timeout / 4, self._watch)

    def _watch(self) -> None:
        """The slow-client watchdog: no frame handed to the socket while frames wait."""
        outbox = self._outbox
        now = time.monotonic()
        if not outbox.waiting or outbox.sent != self._seen_sent:
            self._seen_sent = outbox.sent
            self._stalled_since = None
        elif self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since >= self._slow_timeout:
            self.session.stalled()
            return
        self._schedule_watch()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule_ping(self) -> None:
        if self._ping_interval > 0:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self._ping_interval, self._ping)

    def _ping(self) -> None:
        self.session.ping()
        self._schedule_ping()
