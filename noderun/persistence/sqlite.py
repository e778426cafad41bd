"""The embedded run store: one sqlite file, stdlib ``sqlite3`` only.

Every sqlite call runs on one dedicated, long-lived thread that owns the connection, so
the event loop never blocks on disk I/O or on another process's lock. The file is in WAL
mode with ``synchronous=FULL`` (a commit survives power loss); writes use
``BEGIN IMMEDIATE`` and a busy timeout, so several server processes on one machine can
share it.

Two live servers never share a server id (a server fails the runs its id left running
when it starts): each holds an exclusive ``flock`` on a file named after its id beside
the database, which the operating system releases when the process dies, however it
dies.

Cross-process signals are polled, which sqlite cannot avoid: followers look for new
frames every ``sqlite_poll_interval`` (followers in this process are woken right after
each commit), and the owner of running runs looks for cancel requests every
``sqlite_cancel_poll_interval``, only while it owns running runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from noderun.contract import RunRecord, StoredFrame, wire_job_id
from noderun.persistence.base import StoreBase, Written
from noderun.persistence.errors import (
    RunExists,
    ServerIdInUse,
    StoreError,
    StoreFull,
    StoreUnavailable,
    WriteRejected,
)
from noderun.persistence.groupcommit import Append, Create, Finish, Item
from noderun.persistence.options import StoreOptions
from noderun.persistence.recovery import INTERRUPTED_ERROR, interrupted_frame
from noderun.persistence.sqlite_schema import migrate

__all__ = ["SqliteStore"]

log = structlog.get_logger(__name__)

try:
    import fcntl
except ImportError:  # not POSIX: no liveness lock (one server per file there)
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

_RUN_COLUMNS = (
    "job_id, workflow_id, user_id, status, server_id, created_at, finished_at, last_seq,"
    " error, terminal_frame"
)
_DELETE_CHUNK = 500
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


def _id_list(job_ids: Sequence[str]) -> str:
    # One JSON parameter read with json_each() instead of a variable-length IN (?, ?, …).
    return json.dumps(list(job_ids))


def _record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        job_id=row[0],
        workflow_id=row[1],
        user_id=row[2],
        status=row[3],
        server_id=row[4],
        created_at=row[5],
        finished_at=row[6],
        last_seq=row[7],
        error=row[8],
        terminal_frame=row[9],
    )


class SqliteStore(StoreBase):
    """:class:`~noderun.contract.RunStore` on a sqlite file (``path`` or ``:memory:``)."""

    backend = "sqlite"

    def __init__(
        self, path: str, *, server_id: str | None = None, options: StoreOptions | None = None
    ) -> None:
        super().__init__(server_id=server_id, options=options)
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the store thread
        #: The open lock file that says this server id is alive (see the module doc).
        self._id_lock: int | None = None
        self._cancel_kick = asyncio.Event()

    # -- thread plumbing ------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreUnavailable(self.backend, "store not started")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(self.backend, "store not open")
        return self._conn

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction (on the store thread)."""
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    # -- lifecycle ------------------------------------------------------------------

    async def _open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="noderun-sqlite")
        try:
            await self._call(self._open_sync)
        except BaseException:
            await self._close_backend()
            raise

    def _claim_server_id(self) -> None:
        if fcntl is None or self.path == ":memory:" or self.path.startswith("file:"):
            return
        digest = hashlib.sha256(self._server_id.encode()).hexdigest()[:16]
        try:
            fd = os.open(f"{self.path}-server-{digest}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreUnavailable(self.backend, f"cannot open the server lock: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServerIdInUse(self.backend, self._server_id) from None
        except OSError as exc:
            os.close(fd)
            raise StoreUnavailable(self.backend, f"cannot lock the server lock: {exc}") from exc
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
        busy_ms = int(self._options.sqlite_busy_timeout * 1000)
        conn = sqlite3.connect(
            self.path, timeout=self._options.sqlite_busy_timeout, isolation_level=None
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
            self._conn = conn
            self._write(migrate)
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock and sqlite may report
        # SQLITE_BUSY at once, without its busy handler, while another process opens
        # the same file: retry until the busy timeout.
        deadline = time.monotonic() + self._options.sqlite_busy_timeout
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

    async def _close_backend(self) -> None:
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

    # -- leases and recovery --------------------------------------------------------

    def _interrupt(self, conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[str]:
        rows = conn.execute(
            f"""SELECT r.job_id, r.workflow_id, r.user_id, MAX(r.last_seq, COALESCE(
                    (SELECT MAX(f.seq) FROM noderun_frames f WHERE f.job_id = r.job_id), 0))
                FROM noderun_runs r WHERE r.status = 'running' AND ({where})""",
            params,
        ).fetchall()
        now = time.time()
        for job_id, workflow_id, user_id, last_seq in rows:
            seq = last_seq + 1
            frame = interrupted_frame(wire_job_id(job_id, user_id), workflow_id, seq)
            conn.execute(
                "INSERT OR IGNORE INTO noderun_frames (job_id, seq, frame) VALUES (?, ?, ?)",
                (job_id, seq, frame),
            )
            conn.execute(
                """UPDATE noderun_runs SET status = 'failed', error = ?, finished_at = ?,
                    last_seq = ?, terminal_frame = ? WHERE job_id = ?""",
                (INTERRUPTED_ERROR, now, seq, frame, job_id),
            )
        return [row[0] for row in rows]

    def _sweep_sync(self, *, include_self: bool) -> list[str]:
        me = self._server_id
        deadline = time.time() - self._options.lease_timeout

        def work(conn: sqlite3.Connection) -> list[str]:
            live = (
                "SELECT server_id FROM noderun_servers WHERE last_heartbeat >= ? AND server_id <> ?"
            )
            where = f"r.server_id = ? OR r.server_id NOT IN ({live})"
            if not include_self:
                where = f"r.server_id <> ? AND r.server_id NOT IN ({live})"
            interrupted = self._interrupt(conn, where, (me, deadline, me))
            conn.execute(
                "DELETE FROM noderun_servers WHERE last_heartbeat < ? AND server_id <> ?",
                (deadline, me),
            )
            now = time.time()
            conn.execute(
                """INSERT INTO noderun_servers (server_id, started_at, last_heartbeat)
                    VALUES (?, ?, ?) ON CONFLICT (server_id)
                    DO UPDATE SET last_heartbeat = excluded.last_heartbeat""",
                (me, now, now),
            )
            return interrupted

        return self._write(work)

    async def _register_and_recover(self) -> list[str]:
        return await self._call(functools.partial(self._sweep_sync, include_self=True))

    async def _heartbeat_and_sweep(self) -> list[str]:
        return await self._call(functools.partial(self._sweep_sync, include_self=False))

    def _retire_sync(self) -> list[str]:
        def work(conn: sqlite3.Connection) -> list[str]:
            interrupted = self._interrupt(
                conn, "r.server_id = ? AND r.epoch = ?", (self._server_id, self._epoch)
            )
            conn.execute("DELETE FROM noderun_servers WHERE server_id = ?", (self._server_id,))
            return interrupted

        return self._write(work)

    async def _retire(self) -> list[str]:
        return await self._call(self._retire_sync)

    def _interrupt_runs_sync(self, job_ids: Sequence[str]) -> list[str]:
        def work(conn: sqlite3.Connection) -> list[str]:
            where = (
                "r.server_id = ? AND r.epoch = ? AND r.job_id IN (SELECT value FROM json_each(?))"
            )
            return self._interrupt(conn, where, (self._server_id, self._epoch, _id_list(job_ids)))

        return self._write(work)

    async def _interrupt_runs(self, job_ids: Sequence[str]) -> list[str]:
        return await self._call(self._interrupt_runs_sync, job_ids)

    # -- runs and frames ------------------------------------------------------------

    def _create_runs(
        self,
        conn: sqlite3.Connection,
        creates: Sequence[Create],
        ends: dict[str, tuple[int, Finish | None]],
    ) -> tuple[dict[Create, StoreError], set[str]]:
        """Insert the batch's new rows, replacing finished runs of the same ids.

        ``ends`` holds, per job id, the highest seq of its appends in this batch and
        its finish, if any: a run created and ended in one batch (the common short
        run) is inserted in its final state, not inserted then updated. Returns the
        refusals and the job ids created.
        """
        refused: dict[Create, StoreError] = {}
        created: set[str] = set()
        for create in creates:
            record = create.record
            job_id = record.job_id
            if job_id in created:
                refused[create] = RunExists(job_id, "running")
                continue
            row = conn.execute(
                "SELECT status FROM noderun_runs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is not None:
                if row[0] == "running":
                    refused[create] = RunExists(job_id, row[0])
                    continue
                conn.execute("DELETE FROM noderun_frames WHERE job_id = ?", (job_id,))
                conn.execute("DELETE FROM noderun_runs WHERE job_id = ?", (job_id,))
            last_seq, finish = ends.get(job_id, (0, None))
            conn.execute(
                f"""INSERT INTO noderun_runs ({_RUN_COLUMNS}, epoch)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    job_id,
                    record.workflow_id,
                    record.user_id,
                    "running" if finish is None else finish.status,
                    record.server_id,
                    record.created_at,
                    None if finish is None else finish.finished_at,
                    last_seq if finish is None else finish.seq,
                    None if finish is None else finish.error,
                    None if finish is None else finish.frame,
                    self._epoch,
                ),
            )
            created.add(job_id)
        return refused, created

    def _commit_sync(self, items: Sequence[Item]) -> Written:
        """Commit a batch, creates first; returns the refused creates and the job ids
        of appends and finishes that no longer applied."""
        creates = [item for item in items if isinstance(item, Create)]
        batch = [item for item in items if not isinstance(item, Create)]
        # The items of runs created in this batch all follow their create (the group
        # committer sees to it): they describe the new row's final state.
        new_ids = {create.job_id for create in creates}
        ends: dict[str, tuple[int, Finish | None]] = {}
        for item in batch:
            if item.job_id in new_ids:
                seq, finish = ends.get(item.job_id, (0, None))
                if isinstance(item, Finish):
                    ends[item.job_id] = (seq, item)
                else:
                    ends[item.job_id] = (max(seq, item.seq), finish)

        def work(conn: sqlite3.Connection) -> Written:
            refused, created = self._create_runs(conn, creates, ends) if creates else ({}, set())
            if not batch:
                return refused, []
            others = list({item.job_id for item in batch if item.job_id not in new_ids})
            # Only runs still running here take frames: a run another server already
            # failed as interrupted must not grow after its terminal frame.
            owned = (
                created
                | {
                    row[0]
                    for row in conn.execute(
                        """SELECT job_id FROM noderun_runs WHERE status = 'running'
                        AND server_id = ? AND epoch = ?
                        AND job_id IN (SELECT value FROM json_each(?))""",
                        (self._server_id, self._epoch, _id_list(others)),
                    )
                }
                if others
                else created
            )
            conn.executemany(
                "INSERT OR IGNORE INTO noderun_frames (job_id, seq, frame) VALUES (?, ?, ?)",
                [(item.job_id, item.seq, item.frame) for item in batch if item.job_id in owned],
            )
            last: dict[str, int] = {}
            for item in batch:
                if isinstance(item, Append) and item.job_id in owned and item.job_id not in new_ids:
                    last[item.job_id] = max(item.seq, last.get(item.job_id, 0))
            if last:
                conn.executemany(
                    "UPDATE noderun_runs SET last_seq = MAX(last_seq, ?) WHERE job_id = ?",
                    [(seq, job_id) for job_id, seq in last.items()],
                )
            finishes = [item for item in batch if isinstance(item, Finish)]
            updates = [
                (f.status, f.error, f.finished_at, f.seq, f.frame, f.job_id)
                for f in finishes
                if f.job_id in owned and f.job_id not in new_ids
            ]
            if updates:
                conn.executemany(
                    """UPDATE noderun_runs SET status = ?, error = ?, finished_at = ?,
                        last_seq = ?, terminal_frame = ? WHERE job_id = ?""",
                    updates,
                )
            return refused, {item.job_id for item in batch if item.job_id not in owned}

        return self._write(work)

    async def _commit(self, batch: Sequence[Item]) -> Written:
        return await self._call(self._commit_sync, batch)

    def _terminals_sync(self, job_ids: Sequence[str]) -> dict[str, StoredFrame]:
        rows = self._db().execute(
            """SELECT job_id, last_seq, terminal_frame FROM noderun_runs
                WHERE job_id IN (SELECT value FROM json_each(?))
                AND status <> 'running' AND terminal_frame IS NOT NULL""",
            (_id_list(job_ids),),
        )
        return {job_id: StoredFrame(seq, frame) for job_id, seq, frame in rows}

    async def _terminals(self, job_ids: Sequence[str]) -> dict[str, StoredFrame]:
        return await self._call(self._terminals_sync, job_ids)

    def _not_running_here_sync(self, job_ids: Sequence[str]) -> list[str]:
        here = {
            row[0]
            for row in self._db().execute(
                """SELECT job_id FROM noderun_runs WHERE status = 'running' AND server_id = ?
                    AND epoch = ? AND job_id IN (SELECT value FROM json_each(?))""",
                (self._server_id, self._epoch, _id_list(job_ids)),
            )
        }
        return [job_id for job_id in job_ids if job_id not in here]

    async def _not_running_here(self, job_ids: Sequence[str]) -> list[str]:
        return await self._call(self._not_running_here_sync, job_ids)

    def _get_run_sync(self, job_id: str) -> RunRecord | None:
        row = (
            self._db()
            .execute(f"SELECT {_RUN_COLUMNS} FROM noderun_runs WHERE job_id = ?", (job_id,))
            .fetchone()
        )
        return None if row is None else _record(row)

    def _read_frames_sync(self, job_id: str, after_seq: int) -> list[StoredFrame]:
        rows = self._db().execute(
            "SELECT seq, frame FROM noderun_frames WHERE job_id = ? AND seq > ? ORDER BY seq",
            (job_id, after_seq),
        )
        return [StoredFrame(seq, frame) for seq, frame in rows]

    def _read_tail_sync(
        self, job_id: str, after_seq: int
    ) -> tuple[RunRecord | None, list[StoredFrame]]:
        run = self._get_run_sync(job_id)
        return run, self._read_frames_sync(job_id, after_seq)

    async def _get_run(self, job_id: str) -> RunRecord | None:
        return await self._call(self._get_run_sync, job_id)

    async def _read_frames(self, job_id: str, after_seq: int) -> list[StoredFrame]:
        return await self._call(self._read_frames_sync, job_id, after_seq)

    async def _read_tail(
        self, job_id: str, after_seq: int
    ) -> tuple[RunRecord | None, list[StoredFrame]]:
        return await self._call(self._read_tail_sync, job_id, after_seq)

    async def _wait_for_commit(self, event: asyncio.Event) -> None:
        # Commits of other processes are invisible to ``event``: look again after a while.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self._options.sqlite_poll_interval)

    # -- cancel ---------------------------------------------------------------------

    def _request_cancel_sync(self, job_id: str) -> str | None:
        def work(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT server_id FROM noderun_runs WHERE job_id = ? AND status = 'running'",
                (job_id,),
            ).fetchone()
            if row is None:
                return None
            # The owner's poll delivers state 1; a cancel for a run of this process is
            # delivered directly, so it is recorded as delivered (2) at once.
            state = 2 if row[0] == self._server_id else 1
            conn.execute(
                """UPDATE noderun_runs SET cancel_requested = MAX(cancel_requested, ?)
                    WHERE job_id = ?""",
                (state, job_id),
            )
            owner: str = row[0]
            return owner

        return self._write(work)

    async def _request_cancel(self, job_id: str) -> str | None:
        return await self._call(self._request_cancel_sync, job_id)

    def _take_cancels_sync(self) -> list[str]:
        query = """SELECT job_id FROM noderun_runs WHERE server_id = ? AND status = 'running'
            AND cancel_requested = 1"""
        if self._db().execute(query, (self._server_id,)).fetchone() is None:
            return []  # the common case stays a cheap read, no write lock

        def work(conn: sqlite3.Connection) -> list[str]:
            ids = [row[0] for row in conn.execute(query, (self._server_id,))]
            conn.execute(
                """UPDATE noderun_runs SET cancel_requested = 2
                    WHERE job_id IN (SELECT value FROM json_each(?))""",
                (_id_list(ids),),
            )
            return ids

        return self._write(work)

    def _run_added(self) -> None:
        self._cancel_kick.set()

    def _background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return [("cancel-poll", self._cancel_poll_loop())]

    async def _cancel_poll_loop(self) -> None:
        while True:
            if not self._active:
                self._cancel_kick.clear()
                await self._cancel_kick.wait()
            await asyncio.sleep(self._options.sqlite_cancel_poll_interval)
            try:
                job_ids = await self._guard("cancel poll", self._call(self._take_cancels_sync))
            except StoreError:
                continue  # StoreUnavailable is logged by Health; try again next round
            for job_id in job_ids:
                self._deliver_cancel(job_id)

    # -- retention ------------------------------------------------------------------

    def _delete_chunk_sync(self, cutoff: float) -> int:
        def work(conn: sqlite3.Connection) -> int:
            ids = [
                row[0]
                for row in conn.execute(
                    """SELECT job_id FROM noderun_runs WHERE status <> 'running'
                        AND finished_at < ? LIMIT ?""",
                    (cutoff, _DELETE_CHUNK),
                )
            ]
            if ids:
                listed = _id_list(ids)
                conn.execute(
                    "DELETE FROM noderun_frames WHERE job_id IN (SELECT value FROM json_each(?))",
                    (listed,),
                )
                conn.execute(
                    "DELETE FROM noderun_runs WHERE job_id IN (SELECT value FROM json_each(?))",
                    (listed,),
                )
            return len(ids)

        return self._write(work)

    async def _delete_finished_before(self, cutoff: float) -> int:
        total = 0
        # One short transaction per chunk, so other processes' commits are not held up.
        while True:
            deleted = await self._call(self._delete_chunk_sync, cutoff)
            total += deleted
            if deleted < _DELETE_CHUNK:
                return total
