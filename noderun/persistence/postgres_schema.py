"""Schema of the PostgreSQL store and its migration.

``MIGRATIONS[i]`` takes the schema from version ``i`` to ``i + 1``. Migration runs in one
transaction that first takes a transaction-scoped advisory lock, so servers starting at
the same moment migrate one after the other (``CREATE TABLE IF NOT EXISTS`` alone races
on the catalog).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from noderun.persistence.errors import SchemaTooNew

__all__ = ["CANCEL_CHANNEL", "FRAMES_CHANNEL", "MIGRATIONS", "SCHEMA_VERSION", "migrate"]

#: NOTIFY channel whose payload is the job_id of a run with newly committed frames.
FRAMES_CHANNEL = "noderun_frames"
#: NOTIFY channel whose payload is the JSON array ``[owner_server_id, job_id]``.
CANCEL_CHANNEL = "noderun_cancel"

# Arbitrary constant identifying "noderun schema migration" among advisory locks.
_MIGRATION_LOCK = 0x6E6F646572756E

# A group commit in one statement, so in one round trip and one implicit transaction
# (no BEGIN/COMMIT). Its statements run in this order, each seeing the previous ones'
# rows (a run created in this call takes its frames in it too):
#
# 1. Upsert the creates, replacing only finished rows: a running row makes its create a
#    no-op, not returned, so refused; a replaced row (``xmax <> 0``) loses its frames.
# 2. Lock the written runs still running here, FOR SHARE in job_id order (as every
#    writer locks them: no deadlock between servers); a concurrent sweep waits for (or
#    skips) them. Only they take frames: a run a sweep failed as interrupted must not
#    grow after its terminal frame. Their frames and state are written.
# 3. Notify followers of the locked runs; delivered at commit, once frames are visible.
#
# Returns the job ids created and the job ids written. The ``p_`` prefix keeps the
# parameters apart from column names.
_COMMIT_FUNCTION = f"""CREATE OR REPLACE FUNCTION noderun_commit(
    p_job_ids text[], p_workflow_ids text[], p_user_ids text[], p_statuses text[],
    p_server_ids text[], p_created_at double precision[], p_finished_at double precision[],
    p_last_seqs bigint[], p_errors text[], p_terminal_frames bytea[],
    p_server_id text,
    p_written text[], p_written_last bigint[], p_end_statuses text[], p_end_errors text[],
    p_ended_at double precision[], p_end_seqs bigint[], p_end_frames bytea[],
    p_frame_job_ids text[], p_frame_seqs bigint[], p_frames bytea[],
    OUT created text[], OUT owned text[])
LANGUAGE plpgsql AS $fn$
BEGIN
    created := '{{}}';
    owned := '{{}}';
    IF cardinality(p_job_ids) > 0 THEN
        WITH upserted AS (
            INSERT INTO noderun_runs AS r (job_id, workflow_id, user_id, status, server_id,
                created_at, finished_at, last_seq, error, terminal_frame)
            SELECT * FROM unnest(p_job_ids, p_workflow_ids, p_user_ids, p_statuses,
                p_server_ids, p_created_at, p_finished_at, p_last_seqs, p_errors,
                p_terminal_frames)
            ON CONFLICT (job_id) DO UPDATE SET workflow_id = excluded.workflow_id,
                user_id = excluded.user_id, status = excluded.status,
                server_id = excluded.server_id, created_at = excluded.created_at,
                finished_at = excluded.finished_at, last_seq = excluded.last_seq,
                error = excluded.error, terminal_frame = excluded.terminal_frame,
                cancel_requested = false
            WHERE r.status <> 'running'
            RETURNING r.job_id, r.xmax <> 0 AS replaced
        ), old_frames AS (
            DELETE FROM noderun_frames f USING upserted u
            WHERE f.job_id = u.job_id AND u.replaced
        )
        SELECT COALESCE(array_agg(u.job_id), '{{}}') INTO created FROM upserted u;
    END IF;
    IF cardinality(p_written) > 0 THEN
        WITH locked AS (
            SELECT r.job_id FROM noderun_runs r WHERE r.job_id = ANY(p_written)
                AND r.status = 'running' AND r.server_id = p_server_id
            ORDER BY r.job_id FOR SHARE
        ), frames AS (
            INSERT INTO noderun_frames (job_id, seq, frame)
            SELECT v.job_id, v.seq, v.frame
            FROM unnest(p_frame_job_ids, p_frame_seqs, p_frames) AS v(job_id, seq, frame)
            WHERE v.job_id IN (SELECT l.job_id FROM locked l)
            ON CONFLICT DO NOTHING
        ), runs AS (
            UPDATE noderun_runs r SET
                last_seq = COALESCE(v.end_seq, GREATEST(r.last_seq, v.seq)),
                status = COALESCE(v.status, r.status),
                error = CASE WHEN v.status IS NULL THEN r.error ELSE v.error END,
                finished_at = COALESCE(v.finished_at, r.finished_at),
                terminal_frame = COALESCE(v.frame, r.terminal_frame)
            FROM unnest(p_written, p_written_last, p_end_statuses, p_end_errors,
                        p_ended_at, p_end_seqs, p_end_frames)
                AS v(job_id, seq, status, error, finished_at, end_seq, frame)
            WHERE r.job_id = v.job_id AND r.job_id IN (SELECT l.job_id FROM locked l)
        )
        SELECT COALESCE(array_agg(l.job_id ORDER BY l.job_id), '{{}}') INTO owned
        FROM locked l;
        PERFORM pg_notify('{FRAMES_CHANNEL}', j) FROM unnest(owned) AS j;
    END IF;
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
            cancel_requested boolean NOT NULL DEFAULT false
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
    ),
    (_COMMIT_FUNCTION,),
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
