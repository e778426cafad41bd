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
