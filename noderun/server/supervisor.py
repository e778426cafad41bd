"""``noderun serve --workers N``: N server processes on one listening socket, supervised.

The parent binds the socket once and hands it to each child (a spawned
:mod:`multiprocessing` process), as uvicorn's own multiprocess mode does: a taken or
impossible address stays one start-up error of the parent, ``--port 0`` gives every
child the same port, and connections waiting in the shared accept queue survive a
child's death (with ``SO_REUSEPORT`` each child has its own queue, lost with it).

Each child is an ordinary :func:`~noderun.server.serve.serve` with its own runtime,
hub and store connection. Its server id is the base id (``--server-id``, or one
derived from host, directory and port) with ``:wN`` for its index ``N``: distinct
among the children, and the same for a child's replacement, which therefore fails
its predecessor's interrupted durable runs at once (PROTOCOL.md §5).

uvicorn's ``Multiprocess`` supervisor does not fit: its children run a bare
``uvicorn.Server`` (not this server's start-up, with its exit statuses), know no
index to derive an id from, are restarted without backoff, and its exit status does
not say whether they drained cleanly.

Signals: SIGTERM/SIGINT to the parent asks every child once (SIGTERM) to drain and
the parent exits 0 when all exited 0; a second one is passed on, cutting the
children's drains short. SIGHUP is passed on (the workflows are re-read). Children
run in their own process group so that a terminal's Ctrl-C reaches the parent only,
and drain by themselves if the parent dies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

import structlog

from noderun.persistence.identity import default_server_id
from noderun.server.lifecycle import StartupError
from noderun.server.settings import Settings

__all__ = ["restart_delay", "supervise", "worker_server_id"]

log = structlog.get_logger(__name__)

#: Delay before the first replacement of a crashed child; doubled per further crash.
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
#: A child that served this long before crashing starts the backoff afresh.
BACKOFF_RESET = 60.0
#: Exit status when a child crashed or did not drain cleanly.
CHILD_FAILED = 1
_READY = "ready"


def worker_server_id(settings: Settings, port: int, worker: int) -> str:
    """The durable-run owner id of child ``worker``: stable across its replacements."""
    if settings.server_id:
        return f"{settings.server_id}:w{worker}"
    return default_server_id(port, worker=worker)


def restart_delay(crashes: int) -> float:
    """Seconds before replacing a child after its ``crashes``-th crash in a row."""
    return min(FIRST_RESTART_DELAY * 2.0 ** max(crashes - 1, 0), MAX_RESTART_DELAY)


class Phase(enum.Enum):
    SERVING = "serving"
    DRAINING = "draining"


@dataclass(slots=True)
class _Slot:
    """Child ``index``: its current process (None while waiting to be replaced)."""

    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    #: When the current process said it was ready (None: not yet).
    ready_since: float | None = None
    #: Whether any process of this slot was ever ready (a first start that fails is fatal).
    ever_ready: bool = False
    crashes: int = 0
    restart_at: float | None = None


def supervise(settings: Settings) -> int:
    """Serve with ``settings.workers`` children until SIGTERM/SIGINT; the exit status.

    Raises :class:`StartupError` when the address is unusable (nothing started then).
    """
    from noderun.server.serve import bind

    sock = bind(settings.host, settings.port)
    try:
        return _Supervisor(settings, sock).run()
    finally:
        sock.close()


class _Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.port: int = sock.getsockname()[1]
        self.settings = dataclasses.replace(settings, port=self.port)
        self.sock = sock
        self.context = multiprocessing.get_context("spawn")
        self.slots = [_Slot(index) for index in range(settings.workers)]
        self.phase = Phase.SERVING
        self.status = 0

    def run(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        os.set_blocking(wake_read, False)
        watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, lambda _sig, _frame: None) for sig in watched}
        previous_fd = signal.set_wakeup_fd(wake_write)
        log.info("supervisor.started", pid=os.getpid(), workers=len(self.slots), port=self.port)
        try:
            for slot in self.slots:
                self._start(slot)
            while self.phase is Phase.SERVING or self._alive():
                self._step(wake_read)
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)
        log.info("supervisor.stopped", status=self.status)
        return self.status

    def _step(self, wake_read: int) -> None:
        waiting: list[object] = [wake_read]
        for slot in self.slots:
            if slot.process is not None:
                waiting.append(slot.process.sentinel)
                if slot.conn is not None:
                    waiting.append(slot.conn)
        due = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        timeout = max(min(due) - time.monotonic(), 0.0) if due else None
        for ready in wait(waiting, timeout):  # type: ignore[arg-type]
            if ready == wake_read:
                self._signals(wake_read)
            for slot in self.slots:
                if slot.conn is not None and ready is slot.conn:
                    self._message(slot)
                elif slot.process is not None and ready == slot.process.sentinel:
                    self._exited(slot)
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                slot.restart_at = None
                if self.phase is Phase.SERVING:
                    self._start(slot)

    def _alive(self) -> bool:
        return any(slot.process is not None for slot in self.slots)

    def _start(self, slot: _Slot) -> None:
        parent_end, child_end = self.context.Pipe()
        settings = dataclasses.replace(
            self.settings, server_id=worker_server_id(self.settings, self.port, slot.index)
        )
        process = self.context.Process(
            target=_child,
            args=(settings, slot.index, self.sock, child_end),
            name=f"noderun-worker-{slot.index}",
        )
        process.start()
        child_end.close()
        slot.process, slot.conn, slot.ready_since = process, parent_end, None
        log.info("worker.started", worker=slot.index, pid=process.pid)

    def _message(self, slot: _Slot) -> None:
        assert slot.conn is not None
        try:
            message = slot.conn.recv()
        except (EOFError, OSError):  # it is exiting: its sentinel says so
            slot.conn.close()
            slot.conn = None
            return
        if message == _READY:
            slot.ready_since = time.monotonic()
            slot.ever_ready = True

    def _exited(self, slot: _Slot) -> None:
        process = slot.process
        assert process is not None
        process.join()
        code = process.exitcode
        if slot.conn is not None:
            slot.conn.close()
        slot.process, slot.conn = None, None
        if self.phase is Phase.DRAINING:
            # A child our SIGTERM reached before it installed its handlers had nothing to drain.
            clean = code in (0, -signal.SIGTERM)
            log.info("worker.stopped", worker=slot.index, pid=process.pid, exitcode=code)
            if not clean:
                self.status = CHILD_FAILED
            return
        if not slot.ever_ready:
            # The first start failed: the settings or a dependency are unusable, and
            # every replacement would fail the same way.
            log.error("worker.start_failed", worker=slot.index, pid=process.pid, exitcode=code)
            self.status = code if code is not None and code > 0 else CHILD_FAILED
            self._drain(signal.SIGTERM)
            return
        now = time.monotonic()
        if slot.ready_since is not None and now - slot.ready_since >= BACKOFF_RESET:
            slot.crashes = 0
        slot.crashes += 1
        delay = restart_delay(slot.crashes)
        slot.restart_at = now + delay
        log.warning(
            "worker.crashed", worker=slot.index, pid=process.pid, exitcode=code, restart_in=delay
        )

    def _signals(self, wake_read: int) -> None:
        try:
            received = os.read(wake_read, 64)
        except BlockingIOError:
            return
        for number in received:
            if number == signal.SIGHUP:
                self._pass_on(signal.SIGHUP)
            elif number in (signal.SIGINT, signal.SIGTERM):
                if self.phase is Phase.SERVING:
                    log.info("supervisor.signal", signal=signal.Signals(number).name)
                self._drain(signal.SIGTERM)

    def _drain(self, sig: int) -> None:
        """Ask every child to drain (again: cut its drain short); replace none any more."""
        self.phase = Phase.DRAINING
        for slot in self.slots:
            slot.restart_at = None
        self._pass_on(sig)

    def _pass_on(self, sig: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.pid is not None:
                # One that exited already is reported by its sentinel.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, sig)


def _child(settings: Settings, worker: int, sock: socket.socket, conn: Connection) -> None:
    """A child's body: serve on the parent's socket until asked to stop."""
    # The parent alone receives a terminal's Ctrl-C, and asks each child once.
    os.setpgrp()
    from noderun.server.logging import configure_logging
    from noderun.server.serve import serve

    configure_logging(settings.log_level)
    threading.Thread(target=_drain_when_orphaned, args=(conn,), daemon=True).start()
    try:
        serve(settings, sock=sock, worker=worker, on_ready=lambda: conn.send(_READY))
    except StartupError as exc:
        print(f"noderun: {exc}", file=sys.stderr)
        sys.exit(exc.exit_status)


def _drain_when_orphaned(conn: Connection) -> None:
    """The parent never writes: the end of its pipe means it is gone, so drain."""
    try:
        conn.recv()
    except (EOFError, OSError):
        os.kill(os.getpid(), signal.SIGTERM)
