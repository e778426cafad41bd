"""The embedded store's backend: one sqlite file, stdlib ``sqlite3`` only.

Every sqlite call runs on one dedicated, long-lived thread that owns the connection, so
the event loop never blocks on disk I/O or on another process's lock: the queries of
:mod:`sqlite_queries` are plain functions over the connection, which this backend runs
on that thread (``_run``). The file is in WAL
mode with ``synchronous=FULL`` (a commit survives power loss); writes use
``BEGIN IMMEDIATE`` and a busy timeout, so several server processes on one machine can
share it.

Two live servers never share a server id (a server fails the runs its id left running
when it starts): each holds an exclusive ``flock`` on a file named after its id beside
the database, which the operating system releases when the process dies, however it
dies.

Cross-process signals are polled, which sqlite cannot avoid: the store has followers
look for new frames every ``sqlite_poll_interval`` (followers in this process are woken
right after each commit), and the owner of running runs look for cancel requests every
``sqlite_cancel_poll_interval``, only while it owns running runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

import structlog

from noderun.contract import RunRecord, StoredFrame
from noderun.persistence import sqlite_queries as queries
from noderun.persistence.backend import Owner, Written
from noderun.persistence.errors import (
    ServerIdInUse,
    StoreError,
    StoreFull,
    StoreUnavailable,
    WriteRejected,
)
from noderun.persistence.groupcommit import Item
from noderun.persistence.options import StoreOptions
from noderun.persistence.sqlite_queries import transaction
from noderun.persistence.sqlite_schema import migrate

__all__ = ["SqliteBackend"]

log = structlog.get_logger(__name__)

try:
    import fcntl
except ImportError:  # not POSIX: no liveness lock (one server per file there)
    fcntl = None  # type: ignore[assignment]

P = ParamSpec("P")
T = TypeVar("T")

_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def _translate(exc: sqlite3.Error) -> StoreError:
    """Map a sqlite3 exception to the store's error classes."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # primary code, without extended bits
    reason = str(exc)
    if code == sqlite3.SQLITE_FULL:
        return StoreFull("sqlite", reason)
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
        return WriteRejected("sqlite", reason)
    if code in _UNAVAILABLE_CODES or isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable("sqlite", reason)
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return WriteRejected("sqlite", reason)  # our bug: retrying cannot help
    return StoreUnavailable("sqlite", reason)  # corrupt file, not a database, …


class SqliteBackend:
    """The :class:`~noderun.persistence.backend.Backend` of a sqlite file (``path`` or
    ``:memory:``)."""

    name = "sqlite"
    #: Who writes; set by ``open``.
    _owner: Owner

    def __init__(self, path: str, options: StoreOptions | None = None) -> None:
        self.path = path
        self.options = options or StoreOptions()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the store thread
        #: The open lock file that says this server id is alive (see the module doc).
        self._id_lock: int | None = None

    @property
    def follow_poll(self) -> float:
        return self.options.sqlite_poll_interval

    @property
    def cancel_poll(self) -> float:
        return self.options.sqlite_cancel_poll_interval

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return []

    # -- the store thread -----------------------------------------------------------

    async def _call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the store thread, its sqlite errors translated."""
        if self._executor is None:
            raise StoreUnavailable(self.name, "store not started")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs)
            )
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    def _run(
        self,
        query: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Awaitable[T]:
        """A query of :mod:`sqlite_queries` on the store thread's connection."""
        return self._call(self._on_connection, query, *args, **kwargs)

    def _on_connection(
        self,
        query: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable(self.name, "store not open")
        return query(conn, *args, **kwargs)

    # -- lifecycle ------------------------------------------------------------------

    async def open(self, owner: Owner) -> None:
        self._owner = owner
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="noderun-sqlite")
        try:
            await self._call(self._open_sync)
        except BaseException:
            await self.close()
            raise

    def _claim_server_id(self) -> None:
        if fcntl is None or self.path == ":memory:" or self.path.startswith("file:"):
            return
        server_id = self._owner.server_id
        digest = hashlib.sha256(server_id.encode()).hexdigest()[:16]
        try:
            fd = os.open(f"{self.path}-server-{digest}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreUnavailable(self.name, f"cannot open the server lock: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServerIdInUse(self.name, server_id) from None
        except OSError as exc:
            os.close(fd)
            raise StoreUnavailable(self.name, f"cannot lock the server lock: {exc}") from exc
        # The file stays: removing it would let a server that opened it meanwhile lock a
        # file no one else can see.
        self._id_lock = fd

    def _release_server_id(self) -> None:
        fd, self._id_lock = self._id_lock, None
        if fd is not None:
            os.close(fd)  # releases the flock

    def _open_sync(self) -> None:
        self._claim_server_id()
        try:
            self._connect_sync()
        except BaseException:
            self._release_server_id()
            raise

    def _connect_sync(self) -> None:
        options = self.options
        busy_ms = int(options.sqlite_busy_timeout * 1000)
        conn = sqlite3.connect(self.path, timeout=options.sqlite_busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
            transaction(migrate)(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock and sqlite may report
        # SQLITE_BUSY at once, without its busy handler, while another process opens
        # the same file: retry until the busy timeout.
        deadline = time.monotonic() + self.options.sqlite_busy_timeout
        while True:
            try:
                (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)  # on the store thread: the event loop is not blocked
                continue
            if mode != "wal" and self.path != ":memory:":
                log.warning("store.wal_unavailable", path=self.path, journal_mode=mode)
            return

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        # The thread is idle now, so this join is immediate.
        executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
        finally:
            self._release_server_id()

    # -- the queries ----------------------------------------------------------------

    async def sweep(self, *, starting: bool) -> list[str]:
        lease = self.options.lease_timeout
        return await self._run(queries.sweep, self._owner, lease, starting=starting)

    async def interrupt_runs(self, job_ids: Sequence[str]) -> list[str]:
        return await self._run(queries.interrupt_runs, self._owner, job_ids)

    async def retire(self) -> list[str]:
        return await self._run(queries.retire, self._owner)

    async def commit(self, batch: Sequence[Item]) -> Written:
        return await self._run(queries.commit, self._owner, batch)

    async def not_running_here(self, job_ids: Sequence[str]) -> list[str]:
        return await self._run(queries.not_running_here, self._owner, job_ids)

    async def terminals(self, job_ids: Sequence[str]) -> dict[str, StoredFrame]:
        return await self._run(queries.terminals, job_ids)

    async def get_run(self, job_id: str) -> RunRecord | None:
        return await self._run(queries.get_run, job_id)

    async def read_frames(self, job_id: str, after_seq: int) -> list[StoredFrame]:
        return await self._run(queries.read_frames, job_id, after_seq)

    async def read_tail(
        self, job_id: str, after_seq: int
    ) -> tuple[RunRecord | None, list[StoredFrame]]:
        return await self._run(queries.read_tail, job_id, after_seq)

    async def request_cancel(self, job_id: str) -> str | None:
        return await self._run(queries.request_cancel, self._owner, job_id)

    async def pending_cancels(self) -> list[str]:
        return await self._run(queries.pending_cancels, self._owner)

    async def delete_finished_before(self, cutoff: float) -> int:
        total = 0
        # One short transaction per chunk, so other processes' commits are not held up.
        while True:
            deleted = await self._run(queries.delete_chunk, cutoff)
            total += deleted
            if deleted < queries.DELETE_CHUNK:
                return total
