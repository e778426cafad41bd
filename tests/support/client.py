"""The one WebSocket client of the tests: it speaks the protocol as the SDK does (MessagePack,
or JSON text frames on request), keeps the exact bytes of every frame it receives, and starts
each run ephemeral or durable as the test says.

What a client checks on every frame, how long it waits for one and how much it buffers belong
to the server it talks to (:class:`ClientOptions`): the in-thread test servers of
``tests/server`` check every frame against the golden SDK frames; the ``noderun serve``
processes of ``tests/durable`` are given longer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from tests.support.frames import Frame, Received, is_terminal
from tests.support.graphs import new_job_id
from tests.support.timing import TIMEOUT

__all__ = ["Client", "ClientOptions", "Endpoint", "FrameCheck", "connect"]

#: Asserts something of every frame a client receives.
FrameCheck = Callable[[Frame], None]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How a client talks to one kind of server."""

    #: Run on every decoded frame (e.g. the golden-shape conformance check).
    check: FrameCheck | None = None
    #: How long a receive waits by default.
    within: float = TIMEOUT
    #: Frames websockets buffers before it stops reading the socket (None: unbounded). The
    #: bound lets a test that stops reading push the server into back-pressure; unbounded,
    #: frames a test leaves unread cannot delay a close frame behind them.
    max_queue: int | None = 16


class Endpoint(Protocol):
    """A server a test connects to."""

    @property
    def ws_url(self) -> str: ...

    @property
    def client_options(self) -> ClientOptions: ...


class Client:
    """A WebSocket client speaking the protocol."""

    def __init__(self, ws: ClientConnection, options: ClientOptions | None = None) -> None:
        self.ws = ws
        self.options = options or ClientOptions()
        #: Whether the last frame received was a text (JSON) frame.
        self.last_text: bool | None = None

    # -- sending ----------------------------------------------------------------------

    async def send(self, frame: Mapping[str, object], *, text: bool = False) -> None:
        if text:
            await self.ws.send(msgspec.json.encode(frame).decode())
        else:
            await self.ws.send(msgspec.msgpack.encode(frame))

    async def command(
        self,
        command: str,
        data: Mapping[str, object] | None = None,
        *,
        request_id: str | None = None,
        text: bool = False,
    ) -> None:
        """Send a command the way the SDK does (``type`` and ``request_id`` too)."""
        frame: Frame = {
            "command": command,
            "type": command,
            "request_id": request_id,
            "data": dict(data or {}),
        }
        await self.send(frame, text=text)

    async def run_job(
        self,
        graph: Mapping[str, object] | None,
        *,
        durable: bool = False,
        job_id: str | None = None,
        workflow_id: str = "wf",
        params: Mapping[str, object] | None = None,
        event_detail: str = "full",
        explicit_types: bool = False,
        require_terminal_result: bool = True,
        text: bool = False,
    ) -> str:
        """Send ``run_job`` for ``graph``, durable (``persistence: job``) or ephemeral
        (``session``); returns the job id without waiting."""
        job_id = job_id or new_job_id()
        await self.command(
            "run_job",
            {
                "type": "run_job_request",
                "job_id": job_id,
                "workflow_id": workflow_id,
                "graph": graph,
                "params": dict(params) if params is not None else None,
                "explicit_types": explicit_types,
                "require_terminal_result": require_terminal_result,
                "execution_options": {
                    "persistence": "job" if durable else "session",
                    "event_detail": event_detail,
                },
            },
            text=text,
        )
        return job_id

    async def reconnect(self, job_id: str, after_seq: int = 0, *, text: bool = False) -> None:
        await self.command("reconnect_job", {"job_id": job_id, "after_seq": after_seq}, text=text)

    async def cancel(self, job_id: str, *, text: bool = False) -> None:
        await self.command("cancel_job", {"job_id": job_id}, text=text)

    # -- receiving: ``receive*`` keep the exact bytes, ``recv*`` give the decoded frames --

    async def receive(self, within: float | None = None) -> Received:
        """The next frame, its exact bytes kept, decoded and checked."""
        data = await asyncio.wait_for(self.ws.recv(), self._within(within))
        if isinstance(data, bytes):
            raw, frame, text = data, msgspec.msgpack.decode(data), False
        else:
            raw, frame, text = data.encode(), msgspec.json.decode(data), True
        self.last_text = text
        assert isinstance(frame, dict), f"server sent a non-map frame: {frame!r}"
        if self.options.check is not None:
            self.options.check(frame)
        return Received(raw, frame, text)

    async def receive_until(
        self, predicate: Callable[[Frame], bool], within: float | None = None
    ) -> list[Received]:
        """Every frame up to and including the first that matches ``predicate``."""
        received: list[Received] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._within(within)
        while True:
            item = await self.receive(max(deadline - loop.time(), 0.001))
            received.append(item)
            if predicate(item.frame):
                return received

    async def receive_until_terminal(
        self, job_id: str, within: float | None = None
    ) -> list[Received]:
        """Frames up to and including the terminal ``job_update`` of ``job_id``."""
        return await self.receive_until(lambda frame: is_terminal(frame, job_id), within)

    async def recv(self, within: float | None = None) -> Frame:
        """The next frame, decoded and checked."""
        return (await self.receive(within)).frame

    async def recv_until(
        self, predicate: Callable[[Frame], bool], within: float | None = None
    ) -> list[Frame]:
        """Every frame up to and including the first that matches ``predicate``."""
        return [item.frame for item in await self.receive_until(predicate, within)]

    async def until_terminal(self, job_id: str, within: float | None = None) -> list[Frame]:
        """Frames up to and including the terminal ``job_update`` of ``job_id``."""
        return await self.recv_until(lambda frame: is_terminal(frame, job_id), within)

    async def ping_barrier(self) -> list[Frame]:
        """Send a ping; return every frame that arrived before its pong."""
        await self.send({"type": "ping"})
        frames = await self.recv_until(lambda frame: frame.get("type") == "pong")
        return frames[:-1]

    async def status(self, job_id: str | None = None) -> Frame:
        """``get_status``; skips run messages that arrive meanwhile."""
        await self.command("get_status", {"job_id": job_id} if job_id else {})
        frames = await self.recv_until(
            lambda frame: "job_seq" not in frame and ("status" in frame or "active_jobs" in frame)
        )
        return frames[-1]

    def _within(self, within: float | None) -> float:
        return self.options.within if within is None else within


@contextlib.asynccontextmanager
async def connect(
    server: Endpoint | str,
    *,
    options: ClientOptions | None = None,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    compression: str | None = None,
) -> AsyncIterator[Client]:
    """A client connected to ``server`` (an :class:`Endpoint`, or a ``ws://`` URL), with the
    server's :class:`ClientOptions` unless ``options`` are given."""
    if isinstance(server, str):
        url, default = server, ClientOptions()
    else:
        url, default = server.ws_url, server.client_options
    options = options or default
    async with ws_connect(
        url + query,
        compression=compression,
        additional_headers=headers,
        proxy=None,
        ping_interval=None,
        max_queue=options.max_queue,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
    ) as ws:
        yield Client(ws, options)
