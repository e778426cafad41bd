"""Schema of the embedded (sqlite) store and its migration.

``MIGRATIONS[i]`` takes the schema from version ``i`` to ``i + 1``; versions applied are
rows of ``noderun_schema_version``. Migration runs inside ``BEGIN IMMEDIATE``, which
serializes concurrent starts of several processes on one file.
"""

from __future__ import annotations

import sqlite3
import time

from noderun.persistence.errors import SchemaTooNew

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE noderun_servers (
            server_id TEXT PRIMARY KEY,
            started_at REAL NOT NULL,
            last_heartbeat REAL NOT NULL
        )""",
        """CREATE TABLE noderun_runs (
            job_id TEXT PRIMARY KEY,
            workflow_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            status TEXT NOT NULL,
            server_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL,
            last_seq INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            terminal_frame BLOB,
            -- 0 none, 1 requested by another process, 2 delivered to the owner
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            -- the incarnation of server_id that owns the run (a random number per start)
            epoch INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX noderun_runs_running ON noderun_runs (server_id) WHERE status = 'running'",
        """CREATE INDEX noderun_runs_finished ON noderun_runs (finished_at)
            WHERE finished_at IS NOT NULL""",
        """CREATE TABLE noderun_frames (
            job_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            frame BLOB NOT NULL,
            PRIMARY KEY (job_id, seq)
        ) WITHOUT ROWID""",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` (caller holds a write transaction)."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS noderun_schema_version (
            version INTEGER PRIMARY KEY,
            applied_at REAL NOT NULL
        )"""
    )
    (found,) = conn.execute(
        "SELECT COALESCE(MAX(version), 0) FROM noderun_schema_version"
    ).fetchone()
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(found, SCHEMA_VERSION)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version - 1]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO noderun_schema_version (version, applied_at) VALUES (?, ?)",
            (version, time.time()),
        )
    return SCHEMA_VERSION
