"""One NodeTool worker process and the requests in flight on it.

The process speaks :mod:`~noderun.nodetool.wire` on its stdin/stdout. Its pipes
feed a protocol, not stream readers: each read of stdout goes straight into the
frame buffer, and each frame is routed by ``request_id`` right there, in the
read callback (no reader task to wake): ``result``/``error`` settle the
request, anything else (``progress``, ``chunk``, ``update``) goes to the
request's ``on_event``. Writes need no lock: each frame is one ``write`` into
the pipe transport's buffer, which is never awaited (see
:meth:`WorkerProcess.submit`). Stderr, where the worker sends its own stdout,
is always read, so a chatty node can never fill the pipe and stall the worker.

A request is settled once, by the worker's answer or by the process's end:
then its ``on_done`` runs (the pool frees the slot there) and its future gets
the answer, unless the caller stopped waiting (cancelled it). The future is the
caller's alone, so no shield and no task stand between the read and the caller.

When the process ends, for whatever reason, every request still in flight
fails with :class:`~noderun.nodetool.errors.WorkerLost` naming its node and
this worker, and ``on_exit`` tells the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import structlog

from noderun.nodetool.errors import WireError, WorkerLost
from noderun.nodetool.wire import FrameBuffer, WorkerFrame, encode_frame

__all__ = ["Request", "WorkerProcess"]

log = structlog.get_logger(__name__)

#: Lines of stderr kept to explain an exit.
_STDERR_TAIL = 20
#: The longest partial stderr line kept while waiting for its end.
_LINE_LIMIT = 256 * 1024

_request_ids = itertools.count(1)
#: Frame types that answer a request (``discover`` answers itself); the rest are events.
_FINAL = frozenset({"result", "error", "discover"})


class Request:
    """One request on one worker: its future settles with the final frame."""

    __slots__ = ("future", "kind", "node_type", "on_done", "on_event", "request_id", "settled")

    def __init__(
        self,
        kind: str,
        node_type: str,
        on_event: Callable[[WorkerFrame], None] | None,
        on_done: Callable[[], None] | None,
        future: asyncio.Future[WorkerFrame],
    ) -> None:
        self.request_id = f"nr-{next(_request_ids)}"
        self.kind = kind
        self.node_type = node_type
        self.on_event = on_event
        self.on_done = on_done
        self.future = future
        #: The worker answered or is gone; the future may still be the caller's to read.
        self.settled = False

    def settle(self, frame: WorkerFrame | None, error: BaseException | None = None) -> None:
        """Settle once: ``on_done``, then the future (unless the caller cancelled it)."""
        if self.settled:
            return
        self.settled = True
        if self.on_done is not None:
            self.on_done()
        future = self.future
        if future.done():
            return
        if error is None:
            assert frame is not None
            future.set_result(frame)
        else:
            future.set_exception(error)
            # Read here, so a request nobody awaits any more (a timed-out probe) is not
            # reported as an unretrieved exception; an awaiting caller still gets it.
            future.exception()


class _Pipes(asyncio.SubprocessProtocol):
    """The worker's pipes, handed to its :class:`WorkerProcess` as they are read."""

    def __init__(self) -> None:
        self.owner: WorkerProcess | None = None
        #: Whatever arrived before the owner was attached (nothing, in practice).
        self._early: list[tuple[int, bytes]] = []
        self._lost = False

    def attach(self, owner: WorkerProcess) -> None:
        self.owner = owner
        for fd, data in self._early:
            owner._received(fd, data)
        self._early.clear()
        if self._lost:
            owner._connection_lost()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.owner is None:
            self._early.append((fd, data))
        else:
            self.owner._received(fd, data)

    def connection_lost(self, exc: Exception | None) -> None:
        # After the process exited and every pipe closed: nothing more can arrive.
        if self.owner is None:
            self._lost = True
        else:
            self.owner._connection_lost()


class WorkerProcess:
    """A started ``nodetool.worker --stdio``; :meth:`spawn` creates one."""

    def __init__(
        self,
        name: str,
        transport: asyncio.SubprocessTransport,
        pipes: _Pipes,
        on_exit: Callable[[WorkerProcess], None],
    ) -> None:
        self.name = name
        self._transport = transport
        # Duck-typed: uvloop's pipe transports are not asyncio.WriteTransport instances.
        self._stdin = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
        self._on_exit = on_exit
        self._pending: dict[str, Request] = {}
        self._frames = FrameBuffer()
        self._stderr: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._partial = b""
        self._wire_broken = False
        #: Why the process is gone, once it is (set before the pending fail).
        self.exit_reason: str | None = None
        self._kill_reason: str | None = None
        self.exited = asyncio.Event()
        pipes.attach(self)

    @classmethod
    async def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        on_exit: Callable[[WorkerProcess], None],
    ) -> WorkerProcess:
        """Start the process. Raises ``OSError`` (e.g. no such interpreter)."""
        loop = asyncio.get_running_loop()
        pipes = _Pipes()
        transport, _ = await loop.subprocess_exec(
            lambda: pipes,
            *argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            # Its own process group: a Ctrl-C at the terminal reaches the server,
            # which then closes the workers in order, rather than every worker at once.
            start_new_session=True,
        )
        return cls(name, transport, pipes, on_exit)

    @property
    def pid(self) -> int:
        return self._transport.get_pid()

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (pings included)."""
        return len(self._pending)

    @property
    def alive(self) -> bool:
        return self.exit_reason is None

    def stderr_tail(self) -> str:
        """The last line the worker wrote to stderr, or ''."""
        return self._stderr[-1] if self._stderr else ""

    def submit(
        self,
        kind: str,
        data: Mapping[str, object],
        *,
        node_type: str = "",
        on_event: Callable[[WorkerFrame], None] | None = None,
        on_done: Callable[[], None] | None = None,
        future: asyncio.Future[WorkerFrame] | None = None,
    ) -> Request:
        """Send one request; its :attr:`Request.future` settles with the answer.

        ``data`` is encoded before this returns (the caller may reuse it);
        ``on_done`` runs once when the request settles, whether or not anyone
        still waits for its future (``future``, or a new one). No backpressure
        here: the pool bounds how many requests a worker has in flight, and each
        is one frame in the pipe's buffer.
        """
        if future is None:
            future = asyncio.get_running_loop().create_future()
        request = Request(kind, node_type, on_event, on_done, future)
        if not self.alive:
            request.settle(None, self._lost(request))
            return request
        # Encoded before it is registered: a value msgpack cannot carry fails this call only.
        frame = encode_frame(kind, request.request_id, data)
        self._pending[request.request_id] = request
        self._stdin.write(frame)
        return request

    def cancel(self, request: Request) -> None:
        """Ask the worker to stop ``request`` (it only sets the node's cancel flag)."""
        if self.alive and request.request_id in self._pending:
            self._stdin.write(encode_frame("cancel", request.request_id, {}))

    def kill(self, reason: str) -> None:
        """End the process now; its requests fail with ``reason``."""
        if self.alive and self._kill_reason is None:
            self._kill_reason = reason
            log.warning("nodetool.worker_killed", worker=self.name, pid=self.pid, reason=reason)
            with contextlib.suppress(ProcessLookupError):
                self._transport.kill()

    async def close(self, deadline: float) -> None:
        """Close stdin (the worker finishes what it has and exits), then kill after ``deadline``."""
        if not self._stdin.is_closing():
            self._stdin.close()
        try:
            await asyncio.wait_for(self.exited.wait(), deadline)
        except TimeoutError:
            self.kill("did not exit after its input closed")
            await self.exited.wait()

    # -- what the pipes bring -----------------------------------------------------

    def _received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._stdout(data)
        else:
            self._read_stderr(data)

    def _stdout(self, data: bytes) -> None:
        if self._wire_broken:
            return  # nothing after a bad frame can be trusted; the process is being killed
        try:
            frames = self._frames.feed(data)
        except WireError as exc:
            self._wire_broken = True
            self.kill(str(exc))
            return
        for frame in frames:
            self._route(frame)

    def _route(self, frame: WorkerFrame) -> None:
        request = self._pending.get(frame.request_id or "")
        if request is None:
            # Frames of a request we stopped waiting for, or an unmatched error.
            return
        if frame.type in _FINAL:
            del self._pending[request.request_id]
            request.settle(frame)
            return
        if request.on_event is not None:
            try:
                request.on_event(frame)
            except Exception:
                log.exception("nodetool.event_handler_failed", worker=self.name, type=frame.type)

    def _read_stderr(self, data: bytes) -> None:
        """Keep the last lines (read in blocks: a line may be huge)."""
        *lines, partial = (self._partial + data).split(b"\n")
        self._partial = partial[-_LINE_LIMIT:]
        for line in lines:
            self._keep(line)

    def _keep(self, line: bytes) -> None:
        text = line.decode(errors="replace").rstrip()
        if text:
            self._stderr.append(text[:500])
            log.debug("nodetool.worker_stderr", worker=self.name, line=text)

    def _connection_lost(self) -> None:
        """The process exited and its pipes are closed: fail what is left."""
        self._keep(self._partial)
        self._partial = b""
        code = self._transport.get_returncode()
        self._transport.close()
        if self._kill_reason is not None:
            reason = f"killed ({self._kill_reason})"
        else:
            tail = self.stderr_tail()
            reason = f"exited with code {code}" + (f": {tail}" if tail else "")
        self.exit_reason = reason
        pending, self._pending = self._pending, {}
        for request in pending.values():
            request.settle(None, self._lost(request))
        self.exited.set()
        self._on_exit(self)

    def _lost(self, request: Request) -> WorkerLost:
        return WorkerLost(
            request.node_type or request.kind, self.name, self.exit_reason or "not running"
        )
