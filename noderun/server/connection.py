"""One WebSocket connection: the ASGI plumbing around a :class:`~.session.Session`.

The reader awaits ASGI ``receive`` and feeds each message to the session, which
handles it synchronously (the hot path has no await between a ``run_job``
frame and its ack). Everything to send, acks and run messages alike, goes
through one bounded :class:`~.outbox.Outbox`, so frames leave in the order they
were produced; the reader sends what handling a frame queued itself, a writer
task what is queued from elsewhere (runs in their tasks, timers). The session's
actions that must await (durable reconnect/cancel, closing) run here, each in a
task.

Backpressure: the outbox holds ``outbound_limit`` frames. A client that lets it
fill is too slow to follow its runs: the session detaches it from them (they go
on, buffering for replay) and asks for a close with 1013, free to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, assert_never

import structlog

from noderun.runtime.hub import Hub
from noderun.server import durable
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
        ping_interval: float,
        sdk: SdkService,
    ) -> None:
        self._hub = hub
        self._receive = receive
        self._send = send
        self.user_id = user_id
        self._outbox = Outbox(outbound_limit, send)
        self.session = Session(hub, self._outbox, self._act, user_id=user_id, sdk=sdk)
        self._ping_interval = ping_interval
        self._ping_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        """Run until the client disconnects; then detach from every run (they go on)."""
        writer = asyncio.get_running_loop().create_task(self._write())
        self._schedule_ping()
        try:
            await self._read()
        finally:
            self.session.closed()
            if self._ping_timer is not None:
                self._ping_timer.cancel()
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

    async def flushed(self) -> None:
        """Wait until every frame queued so far has been handed to the socket."""
        await self._outbox.flushed()

    def _act(self, action: Action) -> None:
        store = self._hub.store
        match action:
            case Close():
                log.warning(
                    "connection.outbound_overflow", user_id=self.user_id, runs=self.session.runs
                )
                self._spawn(self._close(action.code, action.reason))
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

    async def _close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

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
