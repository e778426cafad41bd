"""What a running node can do besides returning values: progress, logs, chunks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Literal, Protocol

from noderun.protocol.server import Chunk, LogUpdate, NodeProgress, RunMessage

__all__ = ["NodeContext"]


class _Emitter(Protocol):
    job_id: str
    workflow_id: str

    def emit_detail(self, message: RunMessage) -> None: ...
    def congestion(self) -> asyncio.Future[None] | None: ...


class NodeContext:
    """Handed to a node function that declares a ``ctx`` parameter.

    Safe to call from a blocking node on a runner thread: messages are then
    handed to the run's loop with ``call_soon_threadsafe``, keeping ``job_seq``
    assignment on one thread.
    """

    __slots__ = ("_emitter", "_loop", "_loop_thread", "node_id", "node_name")

    def __init__(
        self, emitter: _Emitter, node_id: str, node_name: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._emitter = emitter
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self.node_id = node_id
        self.node_name = node_name

    @property
    def job_id(self) -> str:
        return self._emitter.job_id

    async def writable(self) -> None:
        """Wait until the run's clients can take more messages (backpressure).

        An async node that reports in a loop awaits this between reports, so a
        client reading slower than the node produces slows the node rather than
        queueing without end. It always yields to the event loop once, so a run
        nobody reads (detached) does not starve the server. Returns at once on a
        runner thread (a blocking node cannot be paced; the connection's hard bound
        limits what it queues).
        """
        if threading.get_ident() != self._loop_thread:
            return
        waiting = self._emitter.congestion()
        if waiting is None:
            await asyncio.sleep(0)
            return
        while waiting is not None:
            await waiting
            waiting = self._emitter.congestion()

    @property
    def user_id(self) -> str:
        """The user the run belongs to ('' when the emitter has none): whose assets it may read."""
        return str(getattr(self._emitter, "user_id", "") or "")

    def progress(self, progress: int, total: int, chunk: str = "") -> None:
        """Report ``progress`` out of ``total`` (ints on the wire, as the SDK requires)."""
        self._send(
            lambda: NodeProgress(
                job_id=self._emitter.job_id,
                workflow_id=self._emitter.workflow_id,
                node_id=self.node_id,
                progress=int(progress),
                total=int(total),
                chunk=chunk,
            )
        )

    def log(self, content: str, severity: Literal["info", "warning", "error"] = "info") -> None:
        self._send(
            lambda: LogUpdate(
                job_id=self._emitter.job_id,
                workflow_id=self._emitter.workflow_id,
                node_id=self.node_id,
                node_name=self.node_name,
                content=content,
                severity=severity,
            )
        )

    def chunk(
        self,
        content: object,
        content_type: Literal["text", "audio", "image", "video", "document"] = "text",
        *,
        done: bool = False,
    ) -> None:
        """Stream one piece of text or media to the client."""
        self._send(
            lambda: Chunk(
                job_id=self._emitter.job_id,
                workflow_id=self._emitter.workflow_id,
                node_id=self.node_id,
                content_type=content_type,
                content=content,
                done=done,
            )
        )

    def _send(self, build: Callable[[], RunMessage]) -> None:
        if threading.get_ident() == self._loop_thread:
            self._emitter.emit_detail(build())
        else:
            self._loop.call_soon_threadsafe(lambda: self._emitter.emit_detail(build()))
