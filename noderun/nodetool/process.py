"""One NodeTool worker process and the requests in flight on it.

The process speaks :mod:`~noderun.nodetool.wire` on its stdin/stdout. One
reader task routes every frame by ``request_id``: ``result``/``error`` settle
the request's future, anything else (``progress``, ``chunk``, ``update``) goes
to the request's ``on_event``. Writes need no lock: each frame is one
``write`` into the pipe transport's buffer, which is never awaited (see
:meth:`WorkerProcess.submit`). A second task always drains stderr, where the
worker sends its own stdout, so a chatty node can never fill the pipe and
stall the worker.

When the process ends, for whatever reason, every request still in flight
fails with :class:`~noderun.nodetool.errors.WorkerLost` naming its node and
this worker, and ``on_exit`` tells the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import structlog

from noderun.nodetool.errors import WireError, WorkerLost
from noderun.nodetool.wire import FrameBuffer, WorkerFrame, encode_frame

__all__ = ["Request", "WorkerProcess"]

log = structlog.get_logger(__name__)

#: Lines of stderr kept to explain an exit.
_STDERR_TAIL = 20
_READ_SIZE = 256 * 1024

_request_ids = itertools.count(1)
#: Frame types that answer a request (``discover`` answers itself); the rest are events.
_FINAL = frozenset({"result", "error", "discover"})


def _consume(future: asyncio.Future[object]) -> None:
    # A request nobody waits for any more (cancelled caller, timed-out probe) may
    # still fail; its exception is read here so it is not reported as unretrieved.
    if not future.cancelled():
        future.exception()


class Request:
    """One request on one worker: its future settles with the final frame's ``data``."""

    __slots__ = ("future", "kind", "node_type", "on_event", "request_id")

    def __init__(
        self,
        kind: str,
        node_type: str,
        on_event: Callable[[WorkerFrame], None] | None,
        future: asyncio.Future[object],
    ) -> None:
        self.request_id = f"nr-{next(_request_ids)}"
        self.kind = kind
        self.node_type = node_type
        self.on_event = on_event
        self.future = future


class WorkerProcess:
    """A started ``nodetool.worker --stdio``; :meth:`spawn` creates one."""

    def __init__(
        self,
        name: str,
        process: asyncio.subprocess.Process,
        on_exit: Callable[[WorkerProcess], None],
    ) -> None:
        self.name = name
        self._process = process
        self._on_exit = on_exit
        self._pending: dict[str, Request] = {}
        self._stderr: deque[str] = deque(maxlen=_STDERR_TAIL)
        #: Why the process is gone, once it is (set before the pending fail).
        self.exit_reason: str | None = None
        self._kill_reason: str | None = None
        self.exited = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._stderr_task = loop.create_task(self._drain_stderr(), name=f"{name}-stderr")
        self._reader = loop.create_task(self._read(), name=f"{name}-reader")

    @classmethod
    async def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        on_exit: Callable[[WorkerProcess], None],
    ) -> WorkerProcess:
        """Start the process. Raises ``OSError`` (e.g. no such interpreter)."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            # Its own process group: a Ctrl-C at the terminal reaches the server,
            # which then closes the workers in order, rather than every worker at once.
            start_new_session=True,
        )
        return cls(name, process, on_exit)

    @property
    def pid(self) -> int:
        return self._process.pid

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
    ) -> Request:
        """Send one request; its :attr:`Request.future` settles with the answer.

        No backpressure here: the pool bounds how many requests a worker has in
        flight, and each is one frame in the pipe's buffer.
        """
        request = Request(kind, node_type, on_event, asyncio.get_running_loop().create_future())
        request.future.add_done_callback(_consume)
        if not self.alive:
            request.future.set_exception(self._lost(request))
            return request
        stdin = self._process.stdin
        assert stdin is not None
        # Encoded before it is registered: a value msgpack cannot carry fails this call only.
        frame = encode_frame(kind, request.request_id, dict(data))
        self._pending[request.request_id] = request
        stdin.write(frame)
        return request

    def cancel(self, request: Request) -> None:
        """Ask the worker to stop ``request`` (it only sets the node's cancel flag)."""
        if self.alive and request.request_id in self._pending:
            stdin = self._process.stdin
            assert stdin is not None
            stdin.write(encode_frame("cancel", request.request_id, {}))

    def kill(self, reason: str) -> None:
        """End the process now; its requests fail with ``reason``."""
        if self.alive and self._kill_reason is None:
            self._kill_reason = reason
            log.warning("nodetool.worker_killed", worker=self.name, pid=self.pid, reason=reason)
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def close(self, deadline: float) -> None:
        """Close stdin (the worker finishes what it has and exits), then kill after ``deadline``."""
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self.exited.wait(), deadline)
        except TimeoutError:
            self.kill("did not exit after its input closed")
            await self.exited.wait()

    # -- the reader ---------------------------------------------------------------

    async def _read(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        frames = FrameBuffer()
        try:
            while True:
                data = await stdout.read(_READ_SIZE)
                if not data:
                    break
                for frame in frames.feed(data):
                    self._route(frame)
        except WireError as exc:
            self.kill(str(exc))
        code = await self._process.wait()
        # stderr may still hold the line that explains the exit.
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr_task
        self._finish(code)

    def _route(self, frame: WorkerFrame) -> None:
        request = self._pending.get(frame.request_id or "")
        if request is None:
            # Frames of a request we stopped waiting for, or an unmatched error.
            return
        if frame.type in _FINAL:
            del self._pending[request.request_id]
            if not request.future.done():
                request.future.set_result(frame)
            return
        if request.on_event is not None:
            try:
                request.on_event(frame)
            except Exception:
                log.exception("nodetool.event_handler_failed", worker=self.name, type=frame.type)

    def _finish(self, code: int) -> None:
        if self._kill_reason is not None:
            reason = f"killed ({self._kill_reason})"
        else:
            tail = self.stderr_tail()
            reason = f"exited with code {code}" + (f": {tail}" if tail else "")
        self.exit_reason = reason
        pending, self._pending = self._pending, {}
        for request in pending.values():
            if not request.future.done():
                request.future.set_exception(self._lost(request))
        self.exited.set()
        self._on_exit(self)

    def _lost(self, request: Request) -> WorkerLost:
        return WorkerLost(
            request.node_type or request.kind, self.name, self.exit_reason or "not running"
        )

    async def _drain_stderr(self) -> None:
        """Read stderr to its end, keeping the last lines (read in blocks: a line may be huge)."""
        stderr = self._process.stderr
        assert stderr is not None
        partial = b""
        while True:
            data = await stderr.read(_READ_SIZE)
            if not data:
                break
            *lines, partial = (partial + data).split(b"\n")
            partial = partial[-_READ_SIZE:]
            for line in lines:
                self._keep(line)
        self._keep(partial)

    def _keep(self, line: bytes) -> None:
        text = line.decode(errors="replace").rstrip()
        if text:
            self._stderr.append(text[:500])
            log.debug("nodetool.worker_stderr", worker=self.name, line=text)
