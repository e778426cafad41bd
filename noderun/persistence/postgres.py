"""The PostgreSQL store's backend (asyncpg).

Two asyncpg pools. Group commits go through the writers' pool, one connection per
commit in flight (``commit_concurrency``): each commit is one call of the
``noderun_commit`` function (see :mod:`postgres_schema`), so one round trip with no
BEGIN/COMMIT. A writer stays checked out between commits (no release, reset and
acquire each time); one that fails is terminated, which gives it back to the pool, and
the pool connects a fresh one. The other pool serves reads, sweeps, cancels and
retention; its size, command timeout and idle lifetime come from
:class:`StoreOptions`. A dedicated connection LISTENs for commits and cancels, and
holds this server's claim on its id (:mod:`postgres_listener`).

Leases use the database clock (``now()``), so servers on different hosts agree on who
is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeAlias

import asyncpg
import structlog

from noderun.contract import RunRecord, StoredFrame, wire_job_id
from noderun.persistence.backend import Owner, Written
from noderun.persistence.errors import (
    RunExists,
    StoreError,
    StoreUnavailable,
    WriteRejected,
)
from noderun.persistence.groupcommit import Create, Item
from noderun.persistence.options import StoreOptions
from noderun.persistence.postgres_batch import encode_batch
from noderun.persistence.postgres_errors import connecting, translated
from noderun.persistence.postgres_listener import Listener
from noderun.persistence.postgres_schema import CANCEL_CHANNEL, FRAMES_CHANNEL, migrate
from noderun.persistence.recovery import INTERRUPTED_ERROR, interrupted_frame

__all__ = ["PostgresBackend"]

log = structlog.get_logger(__name__)

# Strings: asyncpg's classes are generic only in the stubs.
Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

_RUN_COLUMNS = (
    "job_id, workflow_id, user_id, status, server_id, created_at, finished_at, last_seq,"
    " error, terminal_frame"
)
_DELETE_CHUNK = 1000
_COMMIT = """SELECT refused, ignored
    FROM noderun_commit($1::text, $2::bigint, $3::json, $4::json, $5::json, $6::json)"""
# A run's terminal frame lives in its row only, never among its frames.
_FRAMES_AFTER = """SELECT seq, frame FROM noderun_frames WHERE job_id = $1 AND seq > $2
    UNION ALL SELECT r.last_seq, r.terminal_frame FROM noderun_runs r
        WHERE r.job_id = $1 AND r.terminal_frame IS NOT NULL AND r.last_seq > $2
    ORDER BY seq"""


def _record(row: asyncpg.Record) -> RunRecord:
    return RunRecord(
        job_id=row["job_id"],
        workflow_id=row["workflow_id"],
        user_id=row["user_id"],
        status=row["status"],
        server_id=row["server_id"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        last_seq=row["last_seq"],
        error=row["error"],
        terminal_frame=row["terminal_frame"],
    )


async def _notify_frames(conn: Conn, job_ids: Sequence[str]) -> None:
    if job_ids:
        await conn.execute(
            "SELECT pg_notify($1, json_build_array(j)::text) FROM unnest($2::text[]) AS j",
            FRAMES_CHANNEL,
            job_ids,
        )


def _usable(conn: Conn) -> bool:
    """Whether a writer kept between commits is still open; if not, it is given back."""
    try:
        if not conn.is_closed():
            return True
    except asyncpg.InterfaceError:  # given back to its pool already, as it closed
        return False
    _drop(conn)
    return False


def _drop(conn: Conn) -> None:
    """Terminate a connection in an unknown state; that returns it to its pool, which
    opens a fresh one when next asked."""
    with contextlib.suppress(asyncpg.InterfaceError):  # released already by its close
        conn.terminate()


async def _close_pool(pool: Pool | None, patience: float) -> None:
    if pool is None:
        return
    try:
        await asyncio.wait_for(pool.close(), patience)
    except Exception:
        pool.terminate()


class PostgresBackend:
    """The :class:`~noderun.persistence.backend.Backend` of a PostgreSQL database,
    reached through ``dsn``."""

    name = "postgres"
    #: Followers and cancels are woken by notifications: nothing polls.
    follow_poll = None
    cancel_poll = None
    #: Who writes; set by ``open``.
    _owner: Owner

    def __init__(self, dsn: str, options: StoreOptions | None = None) -> None:
        self.dsn = dsn
        self.options = options or StoreOptions()
        #: Made by ``open``, for its owner.
        self._listener: Listener | None = None
        self._pool: Pool | None = None
        #: The group commit's connections, as many as commits in flight at once.
        self._writers: Pool | None = None
        #: Writers checked out of the pool and kept between commits: a release and
        #: an acquire cost a task and three turns of the loop each commit, more CPU
        #: than the commit's own work in the client (docs/performance.md).
        self._idle: list[Conn] = []

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable(self.name, "store not started")
        with connecting():
            conn = await pool.acquire(timeout=self.options.connect_timeout)
        try:
            with translated():
                yield conn
        finally:
            try:
                # Shielded: a cancelled caller must not leak the connection.
                await asyncio.shield(pool.release(conn))
            except Exception:
                # asyncpg could not reset it (a query was interrupted, the server went
                # away) and terminated it; the pool opens a fresh one when needed.
                log.debug("store.connection_dropped", exc_info=True)

    # -- lifecycle ------------------------------------------------------------------

    async def open(self, owner: Owner) -> None:
        self._owner = owner
        options = self.options
        self._listener = listener = Listener(
            self.dsn,
            owner.server_id,
            options=options,
            health=owner.health,
            on_frames=owner.wake,
            on_cancel=owner.cancel,
            on_reconnected=owner.catch_up,
        )
        try:
            with connecting():
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=options.pg_pool_min,
                    max_size=options.pg_pool_max,
                    command_timeout=options.pg_command_timeout,
                    max_inactive_connection_lifetime=options.pg_idle_lifetime,
                    timeout=options.connect_timeout,
                )
            async with self._connection() as conn:
                await migrate(conn)
            await listener.open()
            self._writers = await self._writers_pool()
        except WriteRejected as exc:
            # E.g. no right to create the tables: the store cannot be used at all.
            await self.close()
            raise StoreUnavailable(self.name, exc.reason) from exc
        except BaseException:
            await self.close()
            raise

    async def _writers_pool(self) -> Pool:
        """The writers: one connected now, so the first commit does not wait for one;
        kept however long they idle, for the same reason."""
        options = self.options
        with connecting():
            return await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=options.commit_concurrency,
                command_timeout=options.pg_command_timeout,
                max_inactive_connection_lifetime=0,
                timeout=options.connect_timeout,
            )

    async def close(self) -> None:
        writers, self._writers = self._writers, None
        idle, self._idle = self._idle, []
        if writers is not None:
            for conn in idle:
                with contextlib.suppress(Exception):  # a dead one is terminated
                    await writers.release(conn, timeout=self.options.connect_timeout)
        await _close_pool(writers, self.options.connect_timeout)
        if self._listener is not None:
            await self._listener.close()
        pool, self._pool = self._pool, None
        await _close_pool(pool, self.options.finish_timeout)

    # -- notifications --------------------------------------------------------------

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        assert self._listener is not None, "background() before open()"
        return [("listener", self._listener.run())]

    async def pending_cancels(self) -> list[str]:
        """Every cancel flag of this server's running runs: after a reconnect, the
        notifications sent meanwhile are lost (cancels are at-least-once)."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                """SELECT job_id FROM noderun_runs
                    WHERE server_id = $1 AND status = 'running' AND cancel_requested""",
                self._owner.server_id,
            )
        return [row["job_id"] for row in rows]

    # -- leases and recovery --------------------------------------------------------

    async def _interrupt(self, conn: Conn, where: str, *args: object) -> list[str]:
        # SKIP LOCKED: a run locked by a commit in flight (or by another sweeper) is
        # left for the next sweep instead of risking a deadlock.
        rows = await conn.fetch(
            f"""SELECT job_id, workflow_id, user_id FROM noderun_runs r
                WHERE status = 'running' AND ({where})
                ORDER BY job_id FOR UPDATE SKIP LOCKED""",
            *args,
        )
        if not rows:
            return []
        job_ids = [row["job_id"] for row in rows]
        workflows = {row["job_id"]: row["workflow_id"] for row in rows}
        # The frame names the client's job id, not the store's key.
        wire_ids = {row["job_id"]: wire_job_id(row["job_id"], row["user_id"]) for row in rows}
        lasts = await conn.fetch(
            """SELECT r.job_id, GREATEST(r.last_seq, COALESCE(
                    (SELECT MAX(f.seq) FROM noderun_frames f WHERE f.job_id = r.job_id), 0))
                    AS last_seq
                FROM noderun_runs r WHERE r.job_id = ANY($1::text[])""",
            job_ids,
        )
        seqs = {row["job_id"]: row["last_seq"] + 1 for row in lasts}
        frames = [interrupted_frame(wire_ids[j], workflows[j], seqs[j]) for j in job_ids]
        ordered_seqs = [seqs[j] for j in job_ids]
        # The terminal frame lives in the row (see _FRAMES_AFTER).
        await conn.execute(
            """UPDATE noderun_runs r SET status = 'failed', error = $4, finished_at = $5,
                    last_seq = v.seq, terminal_frame = v.frame
                FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS v(job_id, seq, frame)
                WHERE r.job_id = v.job_id""",
            job_ids,
            ordered_seqs,
            frames,
            INTERRUPTED_ERROR,
            time.time(),
        )
        await _notify_frames(conn, job_ids)
        return job_ids

    async def sweep(self, *, starting: bool) -> list[str]:
        live = """SELECT server_id FROM noderun_servers
            WHERE last_heartbeat >= now() - make_interval(secs => $2) AND server_id <> $1"""
        if starting:
            where = f"r.server_id = $1 OR r.server_id NOT IN ({live})"
        else:
            where = f"r.server_id <> $1 AND r.server_id NOT IN ({live})"
        lease = self.options.lease_timeout
        me = self._owner.server_id
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO noderun_servers (server_id) VALUES ($1)
                    ON CONFLICT (server_id) DO UPDATE SET last_heartbeat = now()""",
                me,
            )
            interrupted = await self._interrupt(conn, where, me, lease)
            await conn.execute(
                """DELETE FROM noderun_servers WHERE server_id <> $1
                    AND last_heartbeat < now() - make_interval(secs => $2)""",
                me,
                lease,
            )
        return interrupted

    async def interrupt_runs(self, job_ids: Sequence[str]) -> list[str]:
        async with self._connection() as conn, conn.transaction():
            return await self._interrupt(
                conn,
                "r.job_id = ANY($1::text[]) AND r.server_id = $2 AND r.epoch = $3",
                job_ids,
                self._owner.server_id,
                self._owner.epoch,
            )

    async def retire(self) -> list[str]:
        owner = self._owner
        async with self._connection() as conn, conn.transaction():
            interrupted = await self._interrupt(
                conn, "r.server_id = $1 AND r.epoch = $2", owner.server_id, owner.epoch
            )
            await conn.execute("DELETE FROM noderun_servers WHERE server_id = $1", owner.server_id)
        return interrupted

    # -- runs and frames ------------------------------------------------------------

    async def commit(self, batch: Sequence[Item]) -> Written:
        """Commit ``batch`` with one call of ``noderun_commit`` on a writer connection.

        Of two creates of one id, the first is kept and the second refused here; the
        function refuses a create whose id is running and drops the appends and finishes
        of runs not running here.
        """
        encoded = encode_batch(batch)
        owner = self._owner
        row = await self._call_commit(owner.server_id, owner.epoch, *encoded.arguments)
        refused: dict[Create, StoreError] = {
            create: RunExists(create.job_id, "running") for create in encoded.duplicates
        }
        for job_id in row["refused"] or ():
            refused[encoded.creates[job_id]] = RunExists(job_id, "running")
        return refused, row["ignored"] or ()

    async def _call_commit(self, *args: object) -> asyncpg.Record:
        """Run the commit statement on an idle writer connection, or one of the pool.

        A connection that failed for any reason but a rejected statement (the server
        went away, a timeout, a cancelled caller) is in an unknown state: it is
        terminated (the pool opens a fresh one when next asked). When the connection
        died under the commit (its backend was terminated, a proxy restarted), the
        commit is replayed once at once on a fresh one, so a blip costs the batch a
        reconnect, not a refusal of its runs; replaying is safe, as the commit function
        recognises a create that the lost attempt committed. A second failure, a
        timeout or a failure to connect is an outage: the group committer retries with
        backoff.
        """
        writers = self._writers
        if writers is None:
            raise StoreUnavailable(self.name, "store not open")
        idle = self._idle
        replayed = False
        while True:
            conn = idle.pop() if idle else None
            if conn is None or not _usable(conn):  # the server ended it while idle
                with connecting():
                    # The group committer never has more commits in flight than
                    # the pool has connections: the timeout is for a connect.
                    conn = await writers.acquire(timeout=self.options.connect_timeout)
            try:
                with translated():
                    row = await conn.fetchrow(_COMMIT, *args)
            except WriteRejected:
                # The server rolled the statement back; the connection is still usable.
                self._keep(conn)
                raise
            except StoreUnavailable as exc:
                _drop(conn)
                if replayed or isinstance(exc.__cause__, TimeoutError):
                    raise
                log.info("store.commit_replayed", reason=exc.reason)
                replayed = True
                continue
            except BaseException:
                _drop(conn)
                raise
            self._keep(conn)
            assert row is not None  # the function returns exactly one row
            return row

    def _keep(self, conn: Conn) -> None:
        if self._writers is None:  # closed meanwhile
            _drop(conn)
        else:
            self._idle.append(conn)

    async def terminals(self, job_ids: Sequence[str]) -> dict[str, StoredFrame]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                """SELECT job_id, last_seq, terminal_frame FROM noderun_runs
                    WHERE job_id = ANY($1::text[]) AND status <> 'running'
                    AND terminal_frame IS NOT NULL""",
                job_ids,
            )
        return {row["job_id"]: StoredFrame(row["last_seq"], row["terminal_frame"]) for row in rows}

    async def not_running_here(self, job_ids: Sequence[str]) -> list[str]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                """SELECT job_id FROM noderun_runs WHERE job_id = ANY($1::text[])
                    AND status = 'running' AND server_id = $2 AND epoch = $3""",
                job_ids,
                self._owner.server_id,
                self._owner.epoch,
            )
        here = {row["job_id"] for row in rows}
        return [job_id for job_id in job_ids if job_id not in here]

    async def get_run(self, job_id: str) -> RunRecord | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_RUN_COLUMNS} FROM noderun_runs WHERE job_id = $1", job_id
            )
        return None if row is None else _record(row)

    async def _fetch_frames(self, conn: Conn, job_id: str, after_seq: int) -> list[StoredFrame]:
        rows = await conn.fetch(
            _FRAMES_AFTER,
            job_id,
            after_seq,
        )
        return [StoredFrame(row["seq"], row["frame"]) for row in rows]

    async def read_frames(self, job_id: str, after_seq: int) -> list[StoredFrame]:
        async with self._connection() as conn:
            return await self._fetch_frames(conn, job_id, after_seq)

    async def read_tail(
        self, job_id: str, after_seq: int
    ) -> tuple[RunRecord | None, list[StoredFrame]]:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_RUN_COLUMNS} FROM noderun_runs WHERE job_id = $1", job_id
            )
            frames = await self._fetch_frames(conn, job_id, after_seq)
        return (None if row is None else _record(row)), frames

    # -- cancel and retention -------------------------------------------------------

    async def request_cancel(self, job_id: str) -> str | None:
        async with self._connection() as conn, conn.transaction():
            owner: str | None = await conn.fetchval(
                """UPDATE noderun_runs SET cancel_requested = true
                    WHERE job_id = $1 AND status = 'running' RETURNING server_id""",
                job_id,
            )
            if owner is not None and owner != self._owner.server_id:
                await conn.execute(
                    "SELECT pg_notify($1, $2)", CANCEL_CHANNEL, json.dumps([owner, job_id])
                )
        return owner

    async def delete_finished_before(self, cutoff: float) -> int:
        total = 0
        while True:
            async with self._connection() as conn, conn.transaction():
                rows = await conn.fetch(
                    """SELECT job_id FROM noderun_runs WHERE status <> 'running'
                        AND finished_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED""",
                    cutoff,
                    _DELETE_CHUNK,
                )
                job_ids = [row["job_id"] for row in rows]
                if job_ids:
                    await conn.execute(
                        "DELETE FROM noderun_frames WHERE job_id = ANY($1::text[])", job_ids
                    )
                    await conn.execute(
                        "DELETE FROM noderun_runs WHERE job_id = ANY($1::text[])", job_ids
                    )
            total += len(job_ids)
            if len(job_ids) < _DELETE_CHUNK:
                return total
