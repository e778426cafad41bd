"""The embedded store's queries, each written once as a plain function over a
``sqlite3.Connection``.

:class:`~noderun.persistence.sqlite.SqliteBackend` runs them on its store thread, the
only thread that touches the connection. A query that writes is wrapped in
:func:`transaction` (``BEGIN IMMEDIATE``: the write lock is taken at once, so two
processes sharing the file never deadlock upgrading a read lock); reads run in
autocommit.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from noderun.contract import RunRecord, StoredFrame, wire_job_id
from noderun.persistence.backend import Owner, Written
from noderun.persistence.errors import RunExists, StoreError
from noderun.persistence.groupcommit import Append, Create, Finish, Item
from noderun.persistence.recovery import INTERRUPTED_ERROR, interrupted_frame

__all__ = [
    "DELETE_CHUNK",
    "commit",
    "delete_chunk",
    "get_run",
    "interrupt_runs",
    "not_running_here",
    "pending_cancels",
    "read_frames",
    "read_tail",
    "request_cancel",
    "retire",
    "sweep",
    "terminals",
    "transaction",
]

P = ParamSpec("P")
T = TypeVar("T")

Connection = sqlite3.Connection

_RUN_COLUMNS = (
    "job_id, workflow_id, user_id, status, server_id, created_at, finished_at, last_seq,"
    " error, terminal_frame"
)
#: Runs deleted per retention transaction, so other processes' commits are not held up.
DELETE_CHUNK = 500


def transaction(
    query: Callable[Concatenate[Connection, P], T],
) -> Callable[Concatenate[Connection, P], T]:
    """``query`` in one ``BEGIN IMMEDIATE`` transaction, rolled back if it raises."""

    @functools.wraps(query)
    def write(conn: Connection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = query(conn, *args, **kwargs)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    return write


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


# -- leases and recovery ------------------------------------------------------------


def _interrupt(conn: Connection, where: str, params: Sequence[Any]) -> list[str]:
    """Fail the running runs ``where`` selects as interrupted (inside a transaction)."""
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


@transaction
def sweep(conn: Connection, owner: Owner, lease_timeout: float, *, starting: bool) -> list[str]:
    """Interrupt the runs of servers whose lease lapsed (``starting``: and of this
    server id), forget those servers, and refresh this one's lease."""
    me = owner.server_id
    deadline = time.time() - lease_timeout
    live = "SELECT server_id FROM noderun_servers WHERE last_heartbeat >= ? AND server_id <> ?"
    if starting:
        where = f"r.server_id = ? OR r.server_id NOT IN ({live})"
    else:
        where = f"r.server_id <> ? AND r.server_id NOT IN ({live})"
    interrupted = _interrupt(conn, where, (me, deadline, me))
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


@transaction
def retire(conn: Connection, owner: Owner) -> list[str]:
    interrupted = _interrupt(
        conn, "r.server_id = ? AND r.epoch = ?", (owner.server_id, owner.epoch)
    )
    conn.execute("DELETE FROM noderun_servers WHERE server_id = ?", (owner.server_id,))
    return interrupted


@transaction
def interrupt_runs(conn: Connection, owner: Owner, job_ids: Sequence[str]) -> list[str]:
    where = "r.server_id = ? AND r.epoch = ? AND r.job_id IN (SELECT value FROM json_each(?))"
    return _interrupt(conn, where, (owner.server_id, owner.epoch, _id_list(job_ids)))


# -- runs and frames ----------------------------------------------------------------


def commit(conn: Connection, owner: Owner, items: Sequence[Item]) -> Written:
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
    return _write_batch(conn, owner, creates, batch, new_ids, ends)


def _create_runs(
    conn: Connection,
    owner: Owner,
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
        row = conn.execute("SELECT status FROM noderun_runs WHERE job_id = ?", (job_id,)).fetchone()
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
                owner.epoch,
            ),
        )
        created.add(job_id)
    return refused, created


@transaction
def _write_batch(
    conn: Connection,
    owner: Owner,
    creates: Sequence[Create],
    batch: Sequence[Append | Finish],
    new_ids: set[str],
    ends: dict[str, tuple[int, Finish | None]],
) -> Written:
    refused, created = _create_runs(conn, owner, creates, ends) if creates else ({}, set())
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
                (owner.server_id, owner.epoch, _id_list(others)),
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
    updates = [
        (f.status, f.error, f.finished_at, f.seq, f.frame, f.job_id)
        for f in batch
        if isinstance(f, Finish) and f.job_id in owned and f.job_id not in new_ids
    ]
    if updates:
        conn.executemany(
            """UPDATE noderun_runs SET status = ?, error = ?, finished_at = ?,
                last_seq = ?, terminal_frame = ? WHERE job_id = ?""",
            updates,
        )
    return refused, {item.job_id for item in batch if item.job_id not in owned}


def terminals(conn: Connection, job_ids: Sequence[str]) -> dict[str, StoredFrame]:
    rows = conn.execute(
        """SELECT job_id, last_seq, terminal_frame FROM noderun_runs
            WHERE job_id IN (SELECT value FROM json_each(?))
            AND status <> 'running' AND terminal_frame IS NOT NULL""",
        (_id_list(job_ids),),
    )
    return {job_id: StoredFrame(seq, frame) for job_id, seq, frame in rows}


def not_running_here(conn: Connection, owner: Owner, job_ids: Sequence[str]) -> list[str]:
    here = {
        row[0]
        for row in conn.execute(
            """SELECT job_id FROM noderun_runs WHERE status = 'running' AND server_id = ?
                AND epoch = ? AND job_id IN (SELECT value FROM json_each(?))""",
            (owner.server_id, owner.epoch, _id_list(job_ids)),
        )
    }
    return [job_id for job_id in job_ids if job_id not in here]


def get_run(conn: Connection, job_id: str) -> RunRecord | None:
    row = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM noderun_runs WHERE job_id = ?", (job_id,)
    ).fetchone()
    return None if row is None else _record(row)


def read_frames(conn: Connection, job_id: str, after_seq: int) -> list[StoredFrame]:
    rows = conn.execute(
        "SELECT seq, frame FROM noderun_frames WHERE job_id = ? AND seq > ? ORDER BY seq",
        (job_id, after_seq),
    )
    return [StoredFrame(seq, frame) for seq, frame in rows]


def read_tail(
    conn: Connection, job_id: str, after_seq: int
) -> tuple[RunRecord | None, list[StoredFrame]]:
    run = get_run(conn, job_id)
    return run, read_frames(conn, job_id, after_seq)


# -- cancel and retention -----------------------------------------------------------


@transaction
def request_cancel(conn: Connection, owner: Owner, job_id: str) -> str | None:
    row = conn.execute(
        "SELECT server_id FROM noderun_runs WHERE job_id = ? AND status = 'running'",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    # The owner's poll delivers state 1; a cancel for a run of this process is
    # delivered directly, so it is recorded as delivered (2) at once.
    state = 2 if row[0] == owner.server_id else 1
    conn.execute(
        "UPDATE noderun_runs SET cancel_requested = MAX(cancel_requested, ?) WHERE job_id = ?",
        (state, job_id),
    )
    server_id: str = row[0]
    return server_id


_REQUESTED = """SELECT job_id FROM noderun_runs WHERE server_id = ? AND status = 'running'
    AND cancel_requested = 1"""


def pending_cancels(conn: Connection, owner: Owner) -> list[str]:
    """The cancel requests for this server's runs not delivered yet, now marked
    delivered (2)."""
    if conn.execute(_REQUESTED, (owner.server_id,)).fetchone() is None:
        return []  # the common case stays a cheap read, no write lock
    return _take_cancels(conn, owner)


@transaction
def _take_cancels(conn: Connection, owner: Owner) -> list[str]:
    ids = [row[0] for row in conn.execute(_REQUESTED, (owner.server_id,))]
    conn.execute(
        """UPDATE noderun_runs SET cancel_requested = 2
            WHERE job_id IN (SELECT value FROM json_each(?))""",
        (_id_list(ids),),
    )
    return ids


@transaction
def delete_chunk(conn: Connection, cutoff: float) -> int:
    """Delete up to :data:`DELETE_CHUNK` runs finished before ``cutoff``."""
    ids = [
        row[0]
        for row in conn.execute(
            """SELECT job_id FROM noderun_runs WHERE status <> 'running'
                AND finished_at < ? LIMIT ?""",
            (cutoff, DELETE_CHUNK),
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
