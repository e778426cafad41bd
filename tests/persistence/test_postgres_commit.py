"""PostgreSQL group commits: one round trip each on a writer connection of the store's
own (no pool acquire, reset or BEGIN/COMMIT), safe to run concurrently, and a database
at an older schema version is migrated to the commit function.

Round trips are counted on the wire by a proxy between the store and PostgreSQL: each
Sync, Flush or simple Query message a client sends ends one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from noderun.contract import RunStore, StoredFrame
from noderun.persistence import RunExists
from noderun.persistence.base import StoreBase
from noderun.persistence.groupcommit import Append, Finish
from noderun.persistence.postgres import PostgresStore
from noderun.persistence.postgres_schema import FRAMES_CHANNEL, MIGRATIONS, SCHEMA_VERSION

from .helpers import WAIT, frame, record, started, terminal

# Startup-phase requests after which the client sends another untyped message.
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
# Frontend messages after which the client waits for the server's answer: each one
# ends a round trip (asyncpg prepares with Parse, Describe, Flush).
_ROUND_TRIP_ENDS = (b"S", b"H", b"Q")


class WireCounter:
    """A TCP proxy to PostgreSQL that counts each client connection's round trips."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._parts = parts
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Round trips of every connection made through the proxy, in connection order.
        self.round_trips: list[int] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        user = self._parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
        return urlunsplit(self._parts._replace(netloc=netloc))

    @property
    def total(self) -> int:
        return sum(self.round_trips)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WireCounter]:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)
            await self._server.wait_closed()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        index = len(self.round_trips)
        self.round_trips.append(0)
        self._spawn(self._frontend(reader, up_writer, index))
        self._spawn(self._backend(up_reader, writer))

    async def _frontend(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, index: int
    ) -> None:
        untyped = True  # the startup messages carry no type byte
        try:
            while True:
                if untyped:
                    header = await reader.readexactly(8)
                    length, code = struct.unpack("!ii", header)
                    untyped = code in (_SSL_REQUEST, _GSSENC_REQUEST)
                    kind = b""
                    rest = length - 8
                else:
                    header = await reader.readexactly(5)
                    kind = header[:1]
                    rest = struct.unpack("!i", header[1:])[0] - 4
                upstream.write(header + await reader.readexactly(rest))
                if kind in _ROUND_TRIP_ENDS:
                    self.round_trips[index] += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            upstream.close()

    async def _backend(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                client.write(data)
        except ConnectionError:
            pass
        finally:
            client.close()


async def _lifecycle(store: StoreBase, job_id: str, frames: int) -> None:
    """Create a run, append ``frames`` frames and finish it without waiting in between,
    as a short durable run does: its items can share one commit."""
    created = store.create_run(record(job_id))
    for seq in range(1, frames + 1):
        store.append(job_id, seq, frame(job_id, seq))
    end = frames + 1
    await asyncio.gather(
        created, store.finish(job_id, "completed", end, terminal(job_id, end), None)
    )


async def _staggered(store: StoreBase, job_id: str, delay: int) -> None:
    """Like :func:`_lifecycle`, but waiting for each commit and starting ``delay`` loop
    turns late, so that batches mix one run's create with other runs' frames."""
    for _ in range(delay):
        await asyncio.sleep(0)
    await store.create_run(record(job_id))
    store.append(job_id, 1, frame(job_id, 1))
    await store.finish(job_id, "completed", 2, terminal(job_id, 2), None)


# No heartbeat during these tests: a sweep is a transaction of its own.
_QUIET: dict[str, Any] = {"heartbeat_interval": WAIT * 30, "lease_timeout": WAIT * 90}


async def test_a_group_commit_is_one_round_trip(pg_url: str) -> None:
    """Whatever a batch holds (creates, appends, finishes, of one run or of many), its
    commit is one round trip and nothing else touches the database meanwhile."""
    async with WireCounter(pg_url).running() as wire, started(wire.url, **_QUIET) as s:
        store = s
        assert isinstance(store, PostgresStore)
        # A new connection costs round trips once (asyncpg prepares the statement and
        # looks up the array types): open more writers than commits will be in flight.
        await asyncio.gather(*(store._commit([Append("none", 1, b"")]) for _ in range(8)))
        connections, trips, commits = len(wire.round_trips), wire.total, store.group_commits
        for n in range(5):
            await _lifecycle(store, f"seq-{n}", 2)
        await asyncio.gather(*(_lifecycle(store, f"par-{n}", n % 3) for n in range(21)))
        await asyncio.gather(*(_staggered(store, f"stag-{n}", n) for n in range(10)))
        assert store.group_commits - commits >= 5  # several batches, of mixed content
        assert len(wire.round_trips) == connections, "a commit opened a connection"
        assert wire.total - trips == store.group_commits - commits
        run = await store.get_run("par-20")
        assert run is not None
        assert (run.status, run.last_seq) == ("completed", 3)


async def test_concurrent_commits_each_take_a_writer_connection(pg_url: str) -> None:
    """Commits in flight together do not share a connection; all of them commit, and
    the connections are kept for later commits."""
    async with WireCounter(pg_url).running() as wire, started(wire.url, **_QUIET) as s:
        store = s
        assert isinstance(store, PostgresStore)
        rounds = [[f"a{n}" for n in range(8)], [f"b{n}" for n in range(8)]]
        for job_id in (*rounds[0], *rounds[1]):
            await store.create_run(record(job_id))
        loop = asyncio.get_running_loop()

        async def commit(job_id: str) -> None:
            done: asyncio.Future[None] = loop.create_future()
            finish = Finish(job_id, "completed", 2, terminal(job_id, 2), None, 1.0, done)
            assert await store._commit([Append(job_id, 1, frame(job_id, 1)), finish]) == {}

        connections = len(wire.round_trips)
        await asyncio.gather(*(commit(job_id) for job_id in rounds[0]))
        # The writer opened at start was idle; each other commit needed one of its own.
        assert len(wire.round_trips) - connections == len(rounds[0]) - 1
        await asyncio.gather(*(commit(job_id) for job_id in rounds[1]))
        assert len(wire.round_trips) - connections == len(rounds[0]) - 1
        for job_id in (*rounds[0], *rounds[1]):
            run = await store.get_run(job_id)
            assert run is not None
            assert (run.status, run.last_seq) == ("completed", 2)
            assert [f.seq for f in await store.read_frames(job_id, 0)] == [1, 2]


async def test_a_version_1_database_is_migrated_and_its_runs_kept(pg_url: str) -> None:
    """A database a version-1 server created gets the commit function; its finished
    runs can be replaced and its running runs of another server are still refused."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            """CREATE TABLE noderun_schema_version (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        for statement in MIGRATIONS[0]:
            await conn.execute(statement)
        await conn.execute("INSERT INTO noderun_schema_version (version) VALUES (1)")
        await conn.execute(
            """INSERT INTO noderun_servers (server_id) VALUES ('other');
            INSERT INTO noderun_runs (job_id, workflow_id, user_id, status, server_id,
                created_at, finished_at, last_seq)
            VALUES ('old', 'wf', 'u1', 'completed', 'other', 1, 2, 1),
                   ('busy', 'wf', 'u1', 'running', 'other', 1, NULL, 0);
            INSERT INTO noderun_frames VALUES ('old', 1, 'x')"""
        )
        # Version 1 kept a terminal frame both in its row and among the frames.
        await conn.execute(
            """INSERT INTO noderun_runs (job_id, workflow_id, user_id, status, server_id,
                created_at, finished_at, last_seq, terminal_frame)
            VALUES ('done', 'wf', 'u1', 'completed', 'other', 1, 2, 2, 'end');
            INSERT INTO noderun_frames VALUES ('done', 1, 'a'), ('done', 2, 'end')"""
        )
    finally:
        await conn.close()

    async with started(pg_url) as store:
        assert await store.read_frames("done", 0) == [StoredFrame(1, b"a"), StoredFrame(2, b"end")]
        assert await store.read_frames("done", 1) == [StoredFrame(2, b"end")]
        await store.create_run(record("old", workflow_id="new"))
        with pytest.raises(RunExists):
            await store.create_run(record("busy"))
        assert await store.read_frames("old", 0) == []
        store.append("old", 1, frame("old", 1))
        await store.finish("old", "completed", 2, terminal("old", 2), None)
        run = await store.get_run("old")
        assert run is not None
        assert (run.workflow_id, run.status, run.last_seq) == ("new", "completed", 2)

    conn = await asyncpg.connect(pg_url)
    try:
        versions = await conn.fetch("SELECT version FROM noderun_schema_version ORDER BY 1")
        busy = await conn.fetchval("SELECT server_id FROM noderun_runs WHERE job_id = 'busy'")
    finally:
        await conn.close()
    assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))
    assert SCHEMA_VERSION >= 2
    assert busy == "other"


async def test_followers_on_another_server_wake_for_any_job_id(pg_url: str) -> None:
    """Notifications carry job ids as JSON, so an id with a comma or a quote (ids are
    the client's strings) still wakes its followers, in chunks under NOTIFY's limit."""
    async with started(pg_url, **_QUIET) as owner, started(pg_url, **_QUIET) as other:
        odd = ["a,b", 'quote"d', "x" * 250]
        many = [f"run-{n}-" + "y" * 200 for n in range(60)]  # > 8000 bytes of ids
        for job_id in (*odd, *many):
            await owner.create_run(record(job_id))
        followers = [asyncio.create_task(_seqs(other, job_id)) for job_id in (*odd, *many)]
        await asyncio.sleep(WAIT / 10)  # each follower has read the (empty) run
        ends = []
        for job_id in (*odd, *many):  # one batch: one commit, several notifications
            owner.append(job_id, 1, frame(job_id, 1))
            ends.append(owner.finish(job_id, "completed", 2, terminal(job_id, 2), None))
        await asyncio.gather(*ends)
        done, pending = await asyncio.wait(followers, timeout=WAIT * 5)
        assert not pending, "a follower was not woken"
        assert all(task.result() == [1, 2] for task in done)


async def _seqs(store: RunStore, job_id: str) -> list[int]:
    return [stored.seq async for stored in store.follow(job_id, 0)]


async def test_a_run_created_in_the_commit_is_not_notified(pg_url: str) -> None:
    """Nobody can follow a run before its row is visible, so a short run (created and
    ended in one group commit) costs no notification; a later write to a run does."""
    notified: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(pg_url)
    try:
        async with started(pg_url, **_QUIET) as s:
            store = s
            assert isinstance(store, StoreBase)
            await store.create_run(record("earlier"))
            await listener.add_listener(
                FRAMES_CHANNEL, lambda _c, _pid, _channel, payload: notified.put_nowait(payload)
            )
            commits = store.group_commits
            # Queued in one turn of the loop: one batch, one commit.
            created = store.create_run(record("short"))
            store.append("short", 1, frame("short", 1))
            await asyncio.gather(
                created, store.finish("short", "completed", 2, terminal("short", 2), None)
            )
            assert store.group_commits == commits + 1
            # Notifications arrive in commit order: once the later one is here, one
            # for the short run would have been first.
            await store.finish("earlier", "completed", 1, terminal("earlier", 1), None)
            first = await asyncio.wait_for(notified.get(), WAIT)
    finally:
        await listener.close()
    assert json.loads(first) == ["earlier"]
    assert notified.empty()
