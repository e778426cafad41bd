"""Schema of the PostgreSQL store and its migration.

``MIGRATIONS[i]`` takes the schema from version ``i`` to ``i + 1``; there is one version
so far (the first release ships it). Migration runs in one transaction that first takes
a transaction-scoped advisory lock, so servers starting at the same moment migrate one
after the other (``CREATE TABLE IF NOT EXISTS`` alone races on the catalog).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from noderun.persistence.errors import SchemaTooNew

__all__ = ["CANCEL_CHANNEL", "FRAMES_CHANNEL", "MIGRATIONS", "SCHEMA_VERSION", "migrate"]

#: NOTIFY channel whose payload is a JSON array of the job ids of runs with newly
#: committed frames.
FRAMES_CHANNEL = "noderun_frames"
#: NOTIFY channel whose payload is the JSON array ``[owner_server_id, job_id]``.
CANCEL_CHANNEL = "noderun_cancel"

# Arbitrary constant identifying "noderun schema migration" among advisory locks.
_MIGRATION_LOCK = 0x6E6F646572756E

# A group commit in one statement, so in one round trip and one implicit transaction
# (no BEGIN/COMMIT). The batch comes as JSON documents rather than as arrays: asyncpg
# checks and encodes every array element in Python (about a microsecond each,
# measured), while a JSON text is one string. One document per list, NULL when empty,
# each parsed once (``json`` is re-parsed by every operator applied to it):
#
#   p_created    runs created, in job_id order: [{"j": job_id, "w": workflow_id,
#                "u": user_id, "t": created_at, "a": last seq in this batch or 0, and,
#                for a run that also ended in it, "s": status, "e": error,
#                "x": finished_at, "f": terminal frame (base64)}]
#   p_new_frames frames of those runs, but their terminals: [{"j", "s": seq, "f"}]
#   p_written    runs written that existed before, in job_id order: [{"j", "a": last
#                append seq or 0, and, if it ended, "q": terminal seq, "s", "e", "x",
#                "f"}]
#   p_frames     frames of those runs, but their terminals: [{"j", "s", "f"}]
#
# A run's terminal frame lives in ``noderun_runs.terminal_frame`` only (readers add it
# to the frames): a short run created and ended in one batch, the common case, is one
# row written once, not a row inserted, locked and updated plus a frame row.
#
# Its statements run in this order, each seeing the previous ones' rows:
#
# 1. Upsert the created runs, in job_id order, replacing only finished rows: a running
#    row makes its create a no-op, not returned, so refused; a replaced row
#    (``xmax <> 0``) loses its frames. Then insert the frames of the runs created.
#    A running row of this server (id and epoch) with the create's ``created_at`` is
#    this create itself, committed by an attempt whose reply was lost (the connection
#    died): it is written again, so a commit replayed on a fresh connection has the
#    same effect.
# 2. Lock the other written runs still running here (this server id and epoch: a run
#    another server failed, or one of an earlier start of this id, is not), FOR SHARE
#    in job_id order (as every writer locks them: no deadlock between servers); a
#    concurrent sweep waits for (or skips) them. Only they take frames: a run a sweep
#    failed as interrupted must not grow after its terminal frame. Their frames and
#    state are written.
# 3. Notify followers of the runs of step 2, a JSON array of job ids per notification
#    (one per job id would cost every listener a message per run), in chunks under
#    the 8000-byte payload limit (a chunk holds < 6000 bytes of ids plus at most one
#    more id, whose JSON form is at most 6 x 256 + 2 bytes: job ids are capped at 256
#    characters); delivered at commit, once frames are visible. Runs created by this
#    call are not notified: nobody can follow a run before its row
#    is visible (a reconnect to it is "job not found"), and a follower that finds it
#    afterwards reads everything this call wrote. So a short run, created and ended
#    in one batch, costs no notification: no queue lock at commit, no wake-up of
#    every listening backend, no message to every server.
#
# Returns the creates refused and the written job ids not running here (both NULL in
# the common case, so the reply is short). The ``p_``/``v_`` prefixes keep parameters
# and variables apart from column names.
_COMMIT_FUNCTION = f"""CREATE OR REPLACE FUNCTION noderun_commit(p_server_id text,
    p_epoch bigint, p_created json, p_new_frames json, p_written json, p_frames json,
    OUT refused text[], OUT ignored text[])
LANGUAGE plpgsql AS $fn$
DECLARE
    v_created text[] := '{{}}';
    v_owned text[] := '{{}}';
BEGIN
    IF p_created IS NOT NULL THEN
        WITH wanted AS MATERIALIZED (
            SELECT c.j, c.w, c.u, c.t, c.a, c.s, c.e, c.x, c.f
            FROM json_to_recordset(p_created) AS c(j text, w text, u text,
                t double precision, a bigint, s text, e text, x double precision, f text)
        ), upserted AS (
            INSERT INTO noderun_runs AS r (job_id, workflow_id, user_id, status, server_id,
                created_at, finished_at, last_seq, error, terminal_frame, epoch)
            SELECT wanted.j, wanted.w, wanted.u, COALESCE(wanted.s, 'running'), p_server_id,
                wanted.t, wanted.x, COALESCE(wanted.a, 0), wanted.e, decode(wanted.f, 'base64'),
                p_epoch
            FROM wanted ORDER BY wanted.j
            ON CONFLICT (job_id) DO UPDATE SET workflow_id = excluded.workflow_id,
                user_id = excluded.user_id, status = excluded.status,
                server_id = excluded.server_id, created_at = excluded.created_at,
                finished_at = excluded.finished_at, last_seq = excluded.last_seq,
                error = excluded.error, terminal_frame = excluded.terminal_frame,
                cancel_requested = false, epoch = excluded.epoch
            WHERE r.status <> 'running' OR (r.server_id = p_server_id
                AND r.epoch = p_epoch AND r.created_at = excluded.created_at)
            RETURNING r.job_id, r.xmax <> 0 AS replaced
        ), old_frames AS (
            DELETE FROM noderun_frames f USING upserted u
            WHERE f.job_id = u.job_id AND u.replaced
        )
        SELECT (SELECT COALESCE(array_agg(u.job_id), '{{}}') FROM upserted u),
            (SELECT array_agg(wanted.j) FROM wanted
                WHERE wanted.j NOT IN (SELECT u.job_id FROM upserted u))
        INTO v_created, refused;
        IF p_new_frames IS NOT NULL THEN
            INSERT INTO noderun_frames (job_id, seq, frame)
            SELECT n.j, n.s, decode(n.f, 'base64')
            FROM json_to_recordset(p_new_frames) AS n(j text, s bigint, f text)
            WHERE n.j = ANY(v_created)
            ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    IF p_written IS NOT NULL THEN
        WITH runs AS MATERIALIZED (
            SELECT v.j, v.a, v.q, v.s, v.e, v.x, v.f
            FROM json_to_recordset(p_written) AS v(j text, a bigint, q bigint, s text,
                e text, x double precision, f text)
        ), locked AS (
            SELECT r.job_id FROM noderun_runs r WHERE r.job_id IN (SELECT runs.j FROM runs)
                AND r.status = 'running' AND r.server_id = p_server_id AND r.epoch = p_epoch
            ORDER BY r.job_id FOR SHARE
        ), inserted AS (
            INSERT INTO noderun_frames (job_id, seq, frame)
            SELECT w.j, w.s, decode(w.f, 'base64')
            FROM json_to_recordset(p_frames) AS w(j text, s bigint, f text)
            WHERE w.j IN (SELECT l.job_id FROM locked l)
            ON CONFLICT DO NOTHING
        ), updated AS (
            UPDATE noderun_runs r SET
                last_seq = COALESCE(runs.q, GREATEST(r.last_seq, runs.a)),
                status = COALESCE(runs.s, r.status),
                error = CASE WHEN runs.s IS NULL THEN r.error ELSE runs.e END,
                finished_at = COALESCE(runs.x, r.finished_at),
                terminal_frame = COALESCE(decode(runs.f, 'base64'), r.terminal_frame)
            FROM runs
            WHERE r.job_id = runs.j AND r.job_id IN (SELECT l.job_id FROM locked l)
        )
        SELECT (SELECT COALESCE(array_agg(l.job_id ORDER BY l.job_id), '{{}}') FROM locked l),
            (SELECT array_agg(runs.j) FROM runs
                WHERE runs.j NOT IN (SELECT l.job_id FROM locked l))
        INTO v_owned, ignored;
    END IF;
    PERFORM pg_notify('{FRAMES_CHANNEL}', json_agg(o.job_id)::text)
    FROM (SELECT u.job_id,
            sum(octet_length(to_json(u.job_id)::text) + 2) OVER (ORDER BY u.n) AS bytes
          FROM unnest(v_owned) WITH ORDINALITY AS u(job_id, n)) AS o
    GROUP BY o.bytes / 6000;
END
$fn$"""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE noderun_servers (
            server_id text PRIMARY KEY,
            started_at timestamptz NOT NULL DEFAULT now(),
            last_heartbeat timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE noderun_runs (
            job_id text PRIMARY KEY,
            workflow_id text NOT NULL,
            user_id text NOT NULL,
            status text NOT NULL,
            server_id text NOT NULL,
            created_at double precision NOT NULL,
            finished_at double precision,
            last_seq bigint NOT NULL DEFAULT 0,
            error text,
            terminal_frame bytea,
            cancel_requested boolean NOT NULL DEFAULT false,
            -- the incarnation of server_id that owns the run (a random number per start)
            epoch bigint NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX noderun_runs_running ON noderun_runs (server_id) WHERE status = 'running'",
        """CREATE INDEX noderun_runs_finished ON noderun_runs (finished_at)
            WHERE finished_at IS NOT NULL""",
        """CREATE TABLE noderun_frames (
            job_id text NOT NULL,
            seq bigint NOT NULL,
            frame bytea NOT NULL,
            PRIMARY KEY (job_id, seq)
        )""",
        _COMMIT_FUNCTION,
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(conn: asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; safe to run from many servers at once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS noderun_schema_version (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        found: int = await conn.fetchval(
            "SELECT COALESCE(MAX(version), 0) FROM noderun_schema_version"
        )
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found, SCHEMA_VERSION)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO noderun_schema_version (version) VALUES ($1)", version)
    return SCHEMA_VERSION
