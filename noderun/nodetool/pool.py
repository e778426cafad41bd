"""A supervised pool of NodeTool workers, after asyncpg's pool.

* :meth:`WorkerPool.start` starts every worker at once and waits for each to
  answer ``discover`` within ``start_timeout``; if one cannot, the others are
  stopped and :class:`~noderun.nodetool.errors.WorkerStartError` says why in
  one line (no such interpreter, no ``nodetool.worker`` module, a deadline).
* :meth:`WorkerPool.execute` takes a slot on the least busy worker (at most
  ``concurrency`` executes in flight on each) or waits in a FIFO queue of at
  most ``queue_limit``; beyond that it fails at once with
  :class:`~noderun.nodetool.errors.QueueFull` (overflow policy: reject the
  newcomer). A slot is released when the worker answers, not when the caller
  leaves, so an abandoned request still counts against its worker. The queue
  holds what to send, not waiting callers: where a slot frees (in the read
  callback of the answer), the next job's frame is written at once, so a busy
  worker never waits for a caller's task to be scheduled.
* A caller cancelled mid-request sends the worker ``cancel`` (a cooperative
  flag); a node still running ``cancel_grace`` later gets its worker killed.
* A worker that exits, or stops answering a liveness probe for
  ``hang_timeout`` while it has work, fails its in-flight requests with
  :class:`~noderun.nodetool.errors.WorkerLost` and is restarted with
  exponential backoff. Requests queued meanwhile wait for it; they fail if a
  restart fails while no worker is up.
* :meth:`WorkerPool.close` stops accepting, fails the queue, closes every
  worker's stdin (it finishes what it has) and kills what is left after a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from noderun.nodetool.errors import (
    NodeToolError,
    PoolClosed,
    QueueFull,
    RemoteNodeError,
    WorkerLost,
    WorkerStartError,
)
from noderun.nodetool.process import Request, WorkerProcess
from noderun.nodetool.wire import WorkerFrame

__all__ = ["Discovery", "PoolOptions", "WorkerPool"]

log = structlog.get_logger(__name__)

#: A frame type the worker does not know: it answers ``error`` at once if its loop is free.
_PROBE = "noderun.ping"


#: What a worker runs first, as ``python -c`` with the server's pid, the module and its
#: arguments: on Linux, ask the kernel to SIGKILL it when the server dies
#: (``PR_SET_PDEATHSIG``): a ``kill -9`` runs none of the server's shutdown, and a worker
#: whose stdin closes still finishes the nodes it runs, forever for a hung one. A server
#: gone before that is noticed by the pid check (the parent is someone else then; a
#: wrapper script that runs the interpreter without ``exec`` is the parent too, so only a
#: server that no longer exists stops the start). Then it runs the module exactly as
#: ``python -m`` does (``runpy._run_module_as_main`` is what ``-m`` calls), in this same
#: interpreter: no second start-up, the interpreter's flags kept.
_BOOTSTRAP = """\
import os, sys
if sys.platform.startswith("linux"):
    import ctypes, signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
server = int(sys.argv[1])
if os.getppid() != server:
    try:
        os.kill(server, 0)
    except ProcessLookupError:
        sys.exit("noderun: the server exited before this NodeTool worker started")
import runpy
module, sys.argv = sys.argv[2], ["-m", *sys.argv[3:]]
runpy._run_module_as_main(module)
"""


@dataclass(frozen=True, slots=True)
class PoolOptions:
    workers: int = 1
    #: The interpreter that has ``nodetool-core`` and the node packages.
    python: str = sys.executable
    #: Namespaces to load (``--namespaces``); empty = every installed package.
    namespaces: tuple[str, ...] = ()
    #: Executes in flight on one worker (a node that blocks its loop stalls them all).
    concurrency: int = 1
    queue_limit: int = 64
    start_timeout: float = 60.0
    cancel_grace: float = 5.0
    #: Seconds a busy worker may leave a liveness probe unanswered; 0 = no probe.
    hang_timeout: float = 60.0
    restart_backoff: float = 0.2
    restart_backoff_max: float = 10.0
    #: Added to the server's environment for the workers (e.g. ``PYTHONPATH``).
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """``python -m nodetool.worker --stdio``, by way of :data:`_BOOTSTRAP`."""
        argv = [self.python, "-c", _BOOTSTRAP, str(os.getpid()), "nodetool.worker", "--stdio"]
        if self.namespaces:
            argv += ["--namespaces", ",".join(self.namespaces)]
        return argv


@dataclass(frozen=True, slots=True)
class Discovery:
    """A worker's ``discover`` answer."""

    protocol_version: int
    nodes: list[dict[str, Any]]
    load_errors: list[dict[str, Any]]


def _plain(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """``values`` as the dict the encoder takes (itself when it is one: it is encoded at once)."""
    if values is None:
        return {}
    return values if type(values) is dict else dict(values)


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class _Slot:
    """One place in the pool: the current process of it and its executes in flight."""

    __slots__ = ("busy", "failures", "index", "name", "process", "started_at", "tasks")

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"nodetool-{index}"
        self.process: WorkerProcess | None = None
        self.busy = 0
        self.started_at = 0.0
        #: Restarts since the process last lived longer than the maximum backoff.
        self.failures = 0
        self.tasks: set[asyncio.Task[None]] = set()


class _Job:
    """One execute: what to send, and the caller's future (queued, then in flight)."""

    __slots__ = ("data", "future", "kind", "node_type", "on_event", "process", "request")

    def __init__(
        self,
        kind: str,
        node_type: str,
        data: dict[str, object],
        on_event: Callable[[WorkerFrame], None] | None,
        future: asyncio.Future[WorkerFrame],
    ) -> None:
        self.kind = kind
        self.node_type = node_type
        self.data = data
        self.on_event = on_event
        self.future = future
        #: Set once sent: the request, and the process it went to.
        self.request: Request | None = None
        self.process: WorkerProcess | None = None


class WorkerPool:
    def __init__(self, options: PoolOptions) -> None:
        if options.workers < 1 or options.concurrency < 1 or options.queue_limit < 0:
            raise ValueError("workers and concurrency must be at least 1, queue_limit at least 0")
        self.options = options
        self._slots = [_Slot(index) for index in range(options.workers)]
        #: Jobs waiting for capacity, oldest first.
        self._waiters: deque[_Job] = deque()
        self._state = _State.NEW
        self.restarts = 0

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> Discovery:
        """Start every worker; the first one's ``discover`` answer. Fails fast."""
        if self._state is not _State.NEW:
            raise RuntimeError(f"pool already {self._state.value}")
        self._state = _State.RUNNING
        try:
            # The first failure cancels the other start-ups: no waiting for a slow one.
            async with asyncio.TaskGroup() as group:
                launches = [group.create_task(self._launch(slot)) for slot in self._slots]
        except BaseException as exc:
            await self.close()
            if isinstance(exc, BaseExceptionGroup):
                raise exc.exceptions[0] from None
            raise
        return launches[0].result()

    async def close(self, deadline: float = 5.0) -> None:
        """Stop taking work, fail the queue, let workers finish in ``deadline``, kill the rest."""
        if self._state in (_State.CLOSING, _State.CLOSED):
            return
        self._state = _State.CLOSING
        while self._waiters:
            job = self._waiters.popleft()
            if not job.future.done():
                job.future.set_exception(PoolClosed(job.node_type))
        # Restarts and watchdogs first: a restart cancelled mid-launch kills what it started.
        tasks = [task for slot in self._slots for task in slot.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(
            *(slot.process.close(deadline) for slot in self._slots if slot.process is not None)
        )
        self._state = _State.CLOSED

    @property
    def alive(self) -> int:
        """Workers up now."""
        return sum(1 for slot in self._slots if slot.process is not None and slot.process.alive)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def busy(self) -> int:
        """Node executions in flight on the workers."""
        return sum(slot.busy for slot in self._slots)

    def worker_pids(self) -> list[int | None]:
        """Each slot's live process id (``None`` while it restarts)."""
        return [
            slot.process.pid if slot.process is not None and slot.process.alive else None
            for slot in self._slots
        ]

    # -- executing ----------------------------------------------------------------

    async def execute(
        self,
        node_type: str,
        fields: Mapping[str, object],
        *,
        stream: bool = False,
        secrets: Mapping[str, str] | None = None,
        blobs: Mapping[str, bytes] | None = None,
        on_event: Callable[[WorkerFrame], None] | None = None,
    ) -> dict[str, Any]:
        """Run ``node_type`` on a worker; its ``result`` data (``outputs``, ``blobs``).

        ``blobs`` are media property values (bytes), ``on_event`` receives the
        request's ``progress``/``chunk``/``update`` frames. Raises
        :class:`RemoteNodeError` (the node raised), :class:`WorkerLost`,
        :class:`QueueFull` or :class:`PoolClosed`.
        """
        if self._state is not _State.RUNNING:
            raise PoolClosed(node_type)
        job = _Job(
            "execute.stream" if stream else "execute",
            node_type,
            {
                "node_type": node_type,
                "fields": _plain(fields),
                "secrets": _plain(secrets),
                "blobs": _plain(blobs),
            },
            on_event,
            asyncio.get_running_loop().create_future(),
        )
        slot = None if self._waiters else self._free_slot()
        if slot is not None:
            self._send(slot, job)
        elif len(self._waiters) >= self.options.queue_limit:
            raise QueueFull(node_type, self.options.queue_limit)
        else:
            self._waiters.append(job)
        try:
            frame = await job.future
        except asyncio.CancelledError:
            if job.request is not None and job.process is not None:
                self._abandon(job.process, job.request)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(job)
            raise
        data = frame.data if isinstance(frame.data, dict) else {}
        if frame.type == "error":
            raise RemoteNodeError(
                node_type, str(data.get("error") or ""), str(data.get("traceback") or "")
            )
        return data

    def _send(self, slot: _Slot, job: _Job) -> None:
        """Send ``job`` on ``slot``'s worker; the slot is the job's until the worker answers,
        whether or not its caller still waits."""
        process = slot.process
        assert process is not None
        slot.busy += 1
        try:
            job.request = process.submit(
                job.kind,
                job.data,
                node_type=job.node_type,
                on_event=job.on_event,
                on_done=lambda: self._release(slot),
                future=job.future,
            )
        except Exception as exc:
            # A value msgpack cannot carry: this job fails, the slot was never used.
            slot.busy -= 1
            if job.future.done():
                return
            job.future.set_exception(exc)
            job.future.exception()
            return
        job.process = process

    def _free_slot(self) -> _Slot | None:
        best: _Slot | None = None
        limit = self.options.concurrency
        for slot in self._slots:
            process = slot.process
            if process is None or not process.alive or slot.busy >= limit:
                continue
            if best is None or slot.busy < best.busy:
                best = slot
        return best

    def _dispatch(self) -> None:
        """Send queued jobs to free capacity, first come first served.

        Called where capacity frees (most often in the read callback that settled the
        previous request), so the worker gets its next frame at once, before any
        caller's task runs.
        """
        waiters = self._waiters
        while waiters:
            slot = self._free_slot()
            if slot is None:
                return
            job = waiters.popleft()
            if job.future.done():
                continue  # its caller gave up while it waited
            self._send(slot, job)

    def _release(self, slot: _Slot) -> None:
        slot.busy -= 1
        self._dispatch()

    def _abandon(self, process: WorkerProcess, request: Request) -> None:
        """The caller stopped waiting: cancel in the worker, kill it if the node goes on."""
        if request.settled:
            return
        process.cancel(request)
        grace = self.options.cancel_grace
        timer = asyncio.get_running_loop().call_later(
            grace,
            self._enforce_cancel,
            process,
            request,
            f"{request.node_type} still running {grace:g}s after cancel",
        )
        on_done = request.on_done

        def settled() -> None:
            timer.cancel()
            if on_done is not None:
                on_done()

        request.on_done = settled

    @staticmethod
    def _enforce_cancel(process: WorkerProcess, request: Request, reason: str) -> None:
        if not request.settled:
            process.kill(reason)

    # -- supervision --------------------------------------------------------------

    async def _launch(self, slot: _Slot) -> Discovery:
        """Start ``slot``'s process and wait for its ``discover`` answer."""
        options = self.options
        try:
            process = await WorkerProcess.spawn(
                slot.name,
                options.argv(),
                {**os.environ, **options.env},
                lambda exited: self._exited(slot, exited),
            )
        except OSError as exc:
            raise WorkerStartError(
                slot.name, f"cannot run {options.python}: {exc.strerror or exc}"
            ) from None
        request = process.submit("discover", {}, node_type="discover")
        try:
            frame = await asyncio.wait_for(request.future, options.start_timeout)
        except TimeoutError:
            process.kill("start-up deadline")
            await process.exited.wait()
            tail = process.stderr_tail()
            raise WorkerStartError(
                slot.name,
                f"no discover answer within {options.start_timeout:g}s"
                + (f" (last output: {tail})" if tail else ""),
            ) from None
        except WorkerLost:
            raise WorkerStartError(slot.name, process.exit_reason or "exited") from None
        except asyncio.CancelledError:
            process.kill("start-up cancelled")
            await process.exited.wait()
            raise
        data = frame.data if isinstance(frame.data, dict) else {}
        nodes = data.get("nodes")
        if frame.type != "discover" or not isinstance(nodes, list):
            process.kill("bad discover answer")
            raise WorkerStartError(slot.name, f"answered discover with {frame.type}: {data!r:.200}")
        if self._state is not _State.RUNNING:
            await process.close(options.cancel_grace)
            raise WorkerStartError(slot.name, "pool closed during start-up")
        slot.process = process
        slot.started_at = time.monotonic()
        log.info("nodetool.worker_ready", worker=slot.name, pid=process.pid, nodes=len(nodes))
        if options.hang_timeout > 0:
            self._spawn_task(slot, self._watch(slot, process))
        self._dispatch()
        errors = data.get("load_errors")
        return Discovery(
            protocol_version=int(data.get("protocol_version") or 0),
            nodes=[node for node in nodes if isinstance(node, dict)],
            load_errors=[error for error in errors or () if isinstance(error, dict)],
        )

    def _spawn_task(self, slot: _Slot, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        slot.tasks.add(task)
        task.add_done_callback(slot.tasks.discard)

    def _exited(self, slot: _Slot, process: WorkerProcess) -> None:
        if slot.process is not process or self._state is not _State.RUNNING:
            return
        log.warning(
            "nodetool.worker_exited", worker=slot.name, pid=process.pid, reason=process.exit_reason
        )
        self._spawn_task(slot, self._restart(slot))

    async def _restart(self, slot: _Slot) -> None:
        options = self.options
        # A worker that lived a while starts the backoff over; a crash loop doubles it.
        if time.monotonic() - slot.started_at > options.restart_backoff_max:
            slot.failures = 0
        while self._state is _State.RUNNING:
            delay = min(options.restart_backoff * 2**slot.failures, options.restart_backoff_max)
            slot.failures += 1
            await asyncio.sleep(delay)
            try:
                await self._launch(slot)
            except NodeToolError as exc:
                log.error("nodetool.worker_restart_failed", worker=slot.name, error=str(exc))
                if self.alive == 0:
                    self._fail_waiters(exc)
                continue
            self.restarts += 1
            return

    def _fail_waiters(self, exc: NodeToolError) -> None:
        while self._waiters:
            job = self._waiters.popleft()
            if not job.future.done():
                job.future.set_exception(exc)

    async def _watch(self, slot: _Slot, process: WorkerProcess) -> None:
        """Kill ``process`` if, while it has work, it leaves a probe unanswered."""
        timeout = self.options.hang_timeout
        while process.alive:
            await asyncio.sleep(timeout / 2)
            if slot.busy == 0 or not process.alive:
                continue
            probe = process.submit(_PROBE, {}, node_type="liveness probe")
            done, _ = await asyncio.wait({probe.future}, timeout=timeout)
            if not done:
                process.kill(f"unresponsive for {timeout:g}s")
