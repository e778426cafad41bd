"""Helpers of the durable-run tests: real ``noderun serve`` processes, a WebSocket client,
and direct reads of the store's database (sqlite file or PostgreSQL database).

The tests look at the database with plain SQL rather than through
:mod:`noderun.persistence`, so what they check does not depend on the code under test,
and reading never registers a server or sweeps runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import asyncpg
import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from noderun.contract import store_key
from noderun.server.auth import ANONYMOUS_USER
from tests.support.timing import SECOND

TERMINAL = frozenset({"completed", "failed", "cancelled"})
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

Frame = dict[str, Any]


class Received(NamedTuple):
    """One frame as the client got it: its exact bytes and its decoded map."""

    raw: bytes
    frame: Frame


def new_job_id() -> str:
    return uuid.uuid4().hex


# -- graphs ------------------------------------------------------------------------


def nd(node_id: str, node_type: str, **data: object) -> Frame:
    return {"id": node_id, "type": node_type, "data": data}


def edge(source: str, target: str, target_handle: str = "value") -> Frame:
    return {
        "id": f"{source}-{target}",
        "source": source,
        "sourceHandle": "output",
        "target": target,
        "targetHandle": target_handle,
    }


def progress_graph(steps: int, interval: float) -> Frame:
    """``noderun.debug.Progress`` into an Output named ``steps``: one progress frame a step."""
    return {
        "nodes": [
            nd("p", "noderun.debug.Progress", steps=steps, interval=interval),
            nd("out", "nodetool.output.Output", name="steps"),
        ],
        "edges": [edge("p", "out")],
    }


def sleep_graph(seconds: float) -> Frame:
    return {"nodes": [nd("s", "noderun.debug.Sleep", seconds=seconds)], "edges": []}


# -- server processes --------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        deadline = time.monotonic() + self.start_within
        while not await _healthy(self.port):
            if process.poll() is not None:
                raise AssertionError(
                    f"server exited with {process.returncode} at start:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"server not healthy in time:\n{self.log()}")
            await asyncio.sleep(SECOND / 50)

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


# -- the client --------------------------------------------------------------------


class Client:
    """A WebSocket client speaking MessagePack (JSON text with ``text``); keeps the exact
    bytes of each frame."""

    def __init__(self, ws: ClientConnection, *, text: bool = False) -> None:
        self.ws = ws
        self.text = text

    async def send(self, frame: Mapping[str, object]) -> None:
        if self.text:
            await self.ws.send(msgspec.json.encode(frame).decode())
        else:
            await self.ws.send(msgspec.msgpack.encode(frame))

    async def command(self, command: str, data: Mapping[str, object]) -> None:
        """A command the way the SDK sends it (``type`` and ``request_id`` too)."""
        await self.send({"command": command, "type": command, "request_id": None, "data": data})

    async def run_job(
        self,
        graph: Frame,
        *,
        job_id: str | None = None,
        durable: bool = True,
        workflow_id: str = "wf",
    ) -> str:
        """Send ``run_job`` (durable unless told otherwise); the job id, without waiting."""
        job_id = job_id or new_job_id()
        await self.command(
            "run_job",
            {
                "type": "run_job_request",
                "job_id": job_id,
                "workflow_id": workflow_id,
                "graph": graph,
                "params": None,
                "explicit_types": False,
                "require_terminal_result": True,
                "execution_options": {"persistence": "job" if durable else "session"},
            },
        )
        return job_id

    async def reconnect(self, job_id: str, after_seq: int = 0) -> None:
        await self.command("reconnect_job", {"job_id": job_id, "after_seq": after_seq})

    async def cancel(self, job_id: str) -> None:
        await self.command("cancel_job", {"job_id": job_id})

    async def recv(self, within: float = SECOND * 10) -> Received:
        raw = await asyncio.wait_for(self.ws.recv(), within)
        if self.text:
            assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
            raw = raw.encode()
            frame = msgspec.json.decode(raw)
        else:
            assert isinstance(raw, bytes), f"expected a binary frame, got {raw!r}"
            frame = msgspec.msgpack.decode(raw)
        assert isinstance(frame, dict), f"server sent a non-map frame: {frame!r}"
        return Received(raw, frame)

    async def until(
        self, predicate: Callable[[Frame], bool], within: float = SECOND * 10
    ) -> list[Received]:
        """Every frame up to and including the first that matches ``predicate``."""
        received: list[Received] = []
        deadline = time.monotonic() + within
        while True:
            item = await self.recv(max(deadline - time.monotonic(), 0.001))
            received.append(item)
            if predicate(item.frame):
                return received

    async def until_terminal(self, job_id: str, within: float = SECOND * 10) -> list[Received]:
        return await self.until(lambda frame: is_terminal(frame, job_id), within)


def is_terminal(frame: Mapping[str, object], job_id: str) -> bool:
    return (
        frame.get("type") == "job_update"
        and frame.get("job_id") == job_id
        and frame.get("status") in TERMINAL
    )


def is_ack(frame: Mapping[str, object]) -> bool:
    return frame.get("message") == "Job started"


def run_messages(received: Sequence[Received], job_id: str) -> list[Received]:
    """The messages of run ``job_id`` (they carry ``job_seq``), in arrival order."""
    return [
        item
        for item in received
        if item.frame.get("job_id") == job_id and item.frame.get("job_seq") is not None
    ]


def seqs(received: Sequence[Received]) -> list[int]:
    return [item.frame["job_seq"] for item in received]


def as_stored(received: Sequence[Received]) -> list[tuple[int, bytes]]:
    """Run messages as the store keeps them: ``(job_seq, exact bytes)``."""
    return [(item.frame["job_seq"], item.raw) for item in received]


@contextlib.asynccontextmanager
async def connect(server: ServerProcess, *, text: bool = False) -> AsyncIterator[Client]:
    async with ws_connect(
        server.ws_url,
        compression=None,
        proxy=None,
        ping_interval=None,
        # Unbounded: with websockets' default (16), frames a test leaves unread pause
        # reading, so the server's close frame is not seen until close_timeout.
        max_queue=None,
        open_timeout=SECOND * 5,
        close_timeout=SECOND * 5,
    ) as ws:
        yield Client(ws, text=text)


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
