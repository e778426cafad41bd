"""Helpers of the durable-run tests: real ``noderun serve`` processes, and direct reads
of the store's database (sqlite file or PostgreSQL database).

The tests look at the database with plain SQL rather than through
:mod:`noderun.persistence`, so what they check does not depend on the code under test,
and reading never registers a server or sweeps runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from noderun.contract import store_key
from noderun.server.auth import ANONYMOUS_USER
from tests.support.client import ClientOptions
from tests.support.ports import free_port
from tests.support.timing import LONG_TIMEOUT, SECOND
from tests.support.waiting import eventually

INTERRUPTED = "interrupted: server stopped"

_REPO = Path(__file__).resolve().parents[2]
#: What the test servers get in the environment: short leases, so a killed server's runs
#: are recovered within seconds, and short store deadlines, so outages show promptly.
STORE_ENV = {
    "NODERUN_STORE_HEARTBEAT": str(SECOND / 2),
    "NODERUN_STORE_LEASE_TIMEOUT": str(SECOND * 2),
    "NODERUN_STORE_CONNECT_TIMEOUT": str(SECOND * 2),
    "NODERUN_STORE_FINISH_TIMEOUT": str(SECOND * 2),
}

# -- server processes --------------------------------------------------------------


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without server settings (``NODERUN_*`` other than the
    test switches), plus :data:`STORE_ENV` and ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("NODERUN_")
        or key.startswith("NODERUN_TEST_")
        or key == "NODERUN_REQUIRE_PG"
    }
    env.update(STORE_ENV)
    env.update(extra or {})
    return env


async def _healthy(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status = await reader.readline()
        return status.split()[1:2] == [b"200"]
    except OSError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class ServerProcess:
    """One ``python -m noderun serve`` child process; its stderr goes to a log file."""

    def __init__(
        self,
        store_url: str,
        log_dir: Path,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_level: str = "warning",
        port: int | None = None,
        start_within: float = SECOND * 15,
    ) -> None:
        self.store_url = store_url
        self.start_within = start_within
        self.port = port or free_port()
        self.log_path = log_dir / f"server-{self.port}-{uuid.uuid4().hex[:6]}.log"
        self.command = [
            sys.executable,
            "-m",
            "noderun",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            store_url,
            "--log-level",
            log_level,
            "--ping-interval",
            "0",  # server pings would interleave with the frames a test expects
            "--debug-nodes",
            # A stop cancels runs in flight at once (the tests of the drain set their own).
            "--drain-timeout",
            "0",
            *args,
        ]
        self.env = server_env(env)
        # The servers run in the repository: keep their asset directory with their logs.
        self.env.setdefault("NODERUN_ASSETS_DIR", str(log_dir / "assets"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def client_options(self) -> ClientOptions:
        """Its clients wait longer (a process under load) and buffer without bound: with a
        bound, frames a test leaves unread pause reading, so the server's close frame is
        not seen until the close timeout."""
        return ClientOptions(within=LONG_TIMEOUT, max_queue=None)

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=_REPO
            )
        return self.process

    async def start(self) -> None:
        """Spawn the server and wait until ``GET /health`` answers 200."""
        process = self.spawn()

        async def healthy() -> bool:
            assert process.poll() is None, (
                f"server exited with {process.returncode} at start:\n{self.log()}"
            )
            return await _healthy(self.port)

        await eventually(healthy, self.start_within, explain=self.log)

    async def wait_exit(self, within: float) -> int:
        """Wait for the process to exit; its return code."""
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait, within)

    async def kill(self) -> None:
        """``kill -9``: nothing of the server's shutdown path runs."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            await self.wait_exit(SECOND * 10)

    async def stop(self) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL if it does not exit in time."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await self.wait_exit(SECOND * 10)
        except subprocess.TimeoutExpired:
            await self.kill()
            raise AssertionError(f"server did not stop on SIGTERM:\n{self.log()}") from None


@contextlib.asynccontextmanager
async def serving(
    store_url: str,
    log_dir: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_level: str = "warning",
    clean: bool = True,
    port: int | None = None,
    start_within: float = SECOND * 15,
) -> AsyncIterator[ServerProcess]:
    """A started server (on ``port``, else a free one), stopped (or killed) on exit.

    With ``clean``, a test that passed also asserts the server logged no traceback.
    """
    server = ServerProcess(
        store_url,
        log_dir,
        args=args,
        env=env,
        log_level=log_level,
        port=port,
        start_within=start_within,
    )
    try:
        await server.start()
        yield server
        await server.stop()
        if clean:
            assert "Traceback" not in server.log(), server.log()
    finally:
        await server.kill()


# -- the store's database ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRun:
    status: str
    server_id: str
    last_seq: int
    error: str | None
    terminal_frame: bytes | None


class StoreDb:
    """Direct SQL access to a store's database, and PostgreSQL outages.

    ``admin_dsn`` is set for PostgreSQL only: the database that may alter ``url``'s.
    """

    def __init__(self, kind: str, url: str, admin_dsn: str | None) -> None:
        self.kind = kind
        self.url = url
        self.admin_dsn = admin_dsn

    @property
    def database(self) -> str:
        """The sqlite file path, or the PostgreSQL database name."""
        if self.kind == "sqlite":
            return self.url.removeprefix("sqlite:///")
        return urlsplit(self.url).path.lstrip("/")

    async def _query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        """Rows of one query; ``$1``-style placeholders (rewritten to ``?`` for sqlite)."""
        if self.kind == "sqlite":
            return await asyncio.to_thread(self._sqlite_query, sql, args)
        conn = await asyncpg.connect(self.url, timeout=SECOND * 5)
        try:
            return [tuple(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    def _sqlite_query(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        for index in range(len(args), 0, -1):
            sql = sql.replace(f"${index}", "?")
        conn = sqlite3.connect(self.database, timeout=SECOND * 5)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    async def run(self, job_id: str, user_id: str = ANONYMOUS_USER) -> StoredRun | None:
        """The row of ``user_id``'s run ``job_id`` (stored under ``store_key``)."""
        rows = await self._query(
            """SELECT status, server_id, last_seq, error, terminal_frame
                FROM noderun_runs WHERE job_id = $1""",
            store_key(user_id, job_id),
        )
        if not rows:
            return None
        status, server_id, last_seq, error, terminal_frame = rows[0]
        return StoredRun(
            status,
            server_id,
            last_seq,
            error,
            None if terminal_frame is None else bytes(terminal_frame),
        )

    async def frame_rows(
        self, job_id: str, user_id: str = ANONYMOUS_USER
    ) -> list[tuple[int, bytes]]:
        """The run's rows of ``noderun_frames``, as stored."""
        rows = await self._query(
            "SELECT seq, frame FROM noderun_frames WHERE job_id = $1 ORDER BY seq",
            store_key(user_id, job_id),
        )
        return [(seq, bytes(frame)) for seq, frame in rows]

    async def frames(self, job_id: str) -> list[tuple[int, bytes]]:
        """Every stored frame of the run, its terminal included: PostgreSQL keeps the
        terminal frame in the run's row only."""
        frames = await self.frame_rows(job_id)
        run = await self.run(job_id)
        if run is not None and run.terminal_frame is not None:
            terminal = (run.last_seq, run.terminal_frame)
            if terminal not in frames:
                frames.append(terminal)
        return frames

    async def count(self, table: str) -> int:
        assert table in ("noderun_runs", "noderun_frames")
        ((total,),) = await self._query(f"SELECT COUNT(*) FROM {table}")
        count: int = total
        return count

    async def _admin(self, *statements: str) -> None:
        assert self.admin_dsn is not None, "outages are for PostgreSQL databases"
        conn = await asyncpg.connect(self.admin_dsn, timeout=SECOND * 5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def refuse_connections(self) -> None:
        """The database stops accepting connections and its sessions are killed."""
        await self._admin(
            f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false',
            f"""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = '{self.database}' AND pid <> pg_backend_pid()""",
        )

    async def terminate_connections(self) -> int:
        """Kill every session on the database (it keeps accepting new ones); how many."""
        assert self.admin_dsn is not None, "outages are for PostgreSQL databases"
        conn = await asyncpg.connect(self.admin_dsn, timeout=SECOND * 5)
        try:
            killed: int = await conn.fetchval(
                """SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = $1 AND pid <> pg_backend_pid()) AS t""",
                self.database,
            )
        finally:
            await conn.close()
        return killed

    async def allow_connections(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true')
