"""The ``durable-pg`` target's PostgreSQL: a fresh database per benchmark, and its CPU.

``fresh_database(admin_dsn)`` creates ``noderun_bench_<hex>`` on the server that
``admin_dsn`` reaches (a role allowed to ``CREATE DATABASE``), yields it, and drops
it ``WITH (FORCE)`` on exit, whatever happened (a failed drop is printed as a
warning naming the database, not raised). An unreachable server, a refused
``CREATE DATABASE`` or a missing asyncpg raise ``DatabaseUnavailable`` before
anything is created, so the caller can skip the target.

When PostgreSQL runs on this machine, ``BenchDatabase.cpu_seconds`` reads the CPU
of the whole server (postmaster, backends, WAL writer) from ``/proc``: without it
the database's work would be counted as ``other`` and flag the machine as noisy.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from loadtest.cpu import process_tree_cpu_seconds

__all__ = [
    "DEFAULT_PG_DSN",
    "BenchDatabase",
    "DatabaseUnavailable",
    "describe_dsn",
    "fresh_database",
]

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_S = 3.0


class DatabaseUnavailable(Exception):
    """No benchmark database could be created on ``where`` (see ``reason``)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"PostgreSQL at {where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class BenchDatabase:
    """A database created for this benchmark; ``url`` is what noderun's ``--store`` gets."""

    name: str
    url: str
    postmaster_pid: int | None

    def describe(self) -> str:
        return describe_dsn(self.url)

    def cpu_seconds(self) -> float | None:
        """Cumulative CPU of the PostgreSQL server, or None when it is not local."""
        if self.postmaster_pid is None:
            return None
        return process_tree_cpu_seconds(self.postmaster_pid)


def describe_dsn(dsn: str) -> str:
    """``dsn`` without user and password (a DSN may carry a password)."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{host}{port}", query=""))


def _with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _local_postmaster(backend_pid: int) -> int | None:
    """The postmaster above ``backend_pid`` if both are ``postgres`` processes here.

    A server in a container or on another host reports pids of another namespace;
    checking the command names keeps an unrelated local process from being counted.
    """
    if _comm(backend_pid) != "postgres":
        return None
    parent = _parent(backend_pid)
    return parent if parent is not None and _comm(parent) == "postgres" else None


async def _create(admin_dsn: str, name: str) -> int | None:
    """Create ``name``; return the local postmaster's pid, if any (found while the
    backend still exists)."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        backend_pid: int = await conn.fetchval("SELECT pg_backend_pid()")
        postmaster = _local_postmaster(backend_pid)
        await conn.execute(f'CREATE DATABASE "{name}"')
        return postmaster
    finally:
        await conn.close()


async def _drop(admin_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(admin_dsn: str) -> Iterator[BenchDatabase]:
    """Create a new, empty database, yield it, drop it on exit.

    Raises ``DatabaseUnavailable`` when nothing was created. Runs its own short
    event loops, so call it outside one.
    """
    where = describe_dsn(admin_dsn)
    try:
        import asyncpg
    except ImportError:
        raise DatabaseUnavailable(where, "asyncpg is not installed") from None
    name = f"noderun_bench_{uuid.uuid4().hex[:12]}"
    try:
        postmaster = asyncio.run(_create(admin_dsn, name))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable(where, f"{type(exc).__name__}: {exc}") from None
    try:
        yield BenchDatabase(name, _with_database(admin_dsn, name), postmaster)
    finally:
        try:
            asyncio.run(_drop(admin_dsn, name))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Said, not raised: the measurements are done and still worth reporting.
            print(f"warning: database {name} on {where} was not dropped: {exc!r}", file=sys.stderr)
