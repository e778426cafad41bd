"""PostgreSQL group commits: one round trip each on a connection of the writers' pool
(no reset on release, no BEGIN/COMMIT), safe to run concurrently, and a database
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
from structlog.testing import capture_logs

from noderun.contract import RunStore, StoredFrame
from noderun.persistence import SchemaTooNew, open_store
from noderun.persistence.groupcommit import Append, Create, Finish, Item
from noderun.persistence.postgres import PostgresBackend
from noderun.persistence.postgres_schema import FRAMES_CHANNEL, MIGRATIONS, SCHEMA_VERSION
from noderun.persistence.store import Store
from tests.support.timing import SECOND
from tests.support.waiting import eventually

from .helpers import Follower, fast_options, frame, record, started, terminal

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


def _postgres(store: RunStore) -> tuple[Store, PostgresBackend]:
    """The store and its backend, whose commit the tests call directly."""
    assert isinstance(store, Store) and isinstance(store.backend, PostgresBackend)
    return store, store.backend


async def _lifecycle(store: RunStore, job_id: str, frames: int) -> None:
    """Create a run, append ``frames`` frames and finish it without waiting in between,
    as a short durable run does: its items can share one commit."""
    created = store.create_run(record(job_id))
    for seq in range(1, frames + 1):
        store.append(job_id, seq, frame(job_id, seq))
    end = frames + 1
    await asyncio.gather(
        created, store.finish(job_id, "completed", end, terminal(job_id, end), None)
    )


async def _staggered(store: RunStore, job_id: str, delay: int) -> None:
    """Like :func:`_lifecycle`, but waiting for each commit and starting ``delay`` loop
    turns late, so that batches mix one run's create with other runs' frames."""
    for _ in range(delay):
        await asyncio.sleep(0)
    await store.create_run(record(job_id))
    store.append(job_id, 1, frame(job_id, 1))
    await store.finish(job_id, "completed", 2, terminal(job_id, 2), None)


# No heartbeat during these tests: a sweep is a transaction of its own.
_QUIET: dict[str, Any] = {"heartbeat_interval": SECOND * 30, "lease_timeout": SECOND * 90}


async def test_a_group_commit_is_one_round_trip(pg_url: str) -> None:
    """Whatever a batch holds (creates, appends, finishes, of one run or of many), its
    commit is one round trip and nothing else touches the database meanwhile."""
    async with WireCounter(pg_url).running() as wire, started(wire.url, **_QUIET) as s:
        store, backend = _postgres(s)
        # A new connection costs round trips once (asyncpg prepares the statement and
        # looks up the array types): the writer (one per commit in flight, one here)
        # has committed before counting.
        await backend.commit([Append("none", 1, b"")])
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
    """Commits in flight together (up to ``commit_concurrency``) do not share a
    connection; all of them commit, and the connections are kept for later commits."""
    async with (
        WireCounter(pg_url).running() as wire,
        started(wire.url, commit_concurrency=8, **_QUIET) as s,
    ):
        store, backend = _postgres(s)
        rounds = [[f"a{n}" for n in range(8)], [f"b{n}" for n in range(8)]]
        for job_id in (*rounds[0], *rounds[1]):
            await store.create_run(record(job_id))
        loop = asyncio.get_running_loop()

        async def commit(job_id: str) -> None:
            done: asyncio.Future[StoredFrame | None] = loop.create_future()
            finish = Finish(job_id, "completed", 2, terminal(job_id, 2), None, 1.0, done)
            refused, not_here = await backend.commit([Append(job_id, 1, frame(job_id, 1)), finish])
            assert (refused, not_here) == ({}, ())

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


async def test_one_schema_version_and_a_newer_database_is_left_alone(pg_url: str) -> None:
    """A fresh database gets the one schema version; a database a newer noderun
    migrated is refused at start, untouched."""
    async with started(pg_url) as store:
        await store.create_run(record("j1"))
    conn = await asyncpg.connect(pg_url)
    try:
        versions = await conn.fetch("SELECT version FROM noderun_schema_version ORDER BY 1")
        assert [row["version"] for row in versions] == [SCHEMA_VERSION] == [len(MIGRATIONS)]
        await conn.execute(
            "INSERT INTO noderun_schema_version (version) VALUES ($1)", SCHEMA_VERSION + 1
        )
    finally:
        await conn.close()
    store = open_store(pg_url, options=fast_options())
    with pytest.raises(SchemaTooNew) as raised:
        await store.start()
    assert (raised.value.found, raised.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)


async def test_followers_on_another_server_wake_for_any_job_id(pg_url: str) -> None:
    """Notifications carry job ids as JSON, so an id with a comma or a quote (ids are
    the client's strings) still wakes its followers, in chunks under NOTIFY's limit."""
    async with started(pg_url, **_QUIET) as owner, started(pg_url, **_QUIET) as other:
        odd = ["a,b", 'quote"d', "x" * 250]
        many = [f"run-{n}-" + "y" * 200 for n in range(60)]  # > 8000 bytes of ids
        for job_id in (*odd, *many):
            await owner.create_run(record(job_id))
            owner.append(job_id, 1, frame(job_id, 1))
        followers = [Follower(other, job_id) for job_id in (*odd, *many)]
        # Each follower has read its run's first frame: it waits for a notification now.
        await eventually(lambda: all(follower.seqs == [1] for follower in followers))
        ends = []
        for job_id in (*odd, *many):  # one batch: one commit, several notifications
            owner.append(job_id, 2, frame(job_id, 2))
            ends.append(owner.finish(job_id, "completed", 3, terminal(job_id, 3), None))
        await asyncio.gather(*ends)
        _done, pending = await asyncio.wait(
            [follower.task for follower in followers], timeout=SECOND * 5
        )
        assert not pending, "a follower was not woken"
        assert all(follower.seqs == [1, 2, 3] for follower in followers)


async def test_a_run_created_in_the_commit_is_not_notified(pg_url: str) -> None:
    """Nobody can follow a run before its row is visible, so a short run (created and
    ended in one group commit) costs no notification; a later write to a run does."""
    notified: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(pg_url)
    try:
        async with started(pg_url, **_QUIET) as s:
            store, _ = _postgres(s)
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
            first = await asyncio.wait_for(notified.get(), SECOND)
    finally:
        await listener.close()
    assert json.loads(first) == ["earlier"]
    assert notified.empty()


_IN_COMMIT = """SELECT pid FROM pg_stat_activity
    WHERE wait_event_type = 'Lock' AND query LIKE '%FROM noderun_commit(%'"""


async def test_a_commit_whose_connection_dies_in_flight_is_replayed_on_a_fresh_one(
    pg_url: str,
) -> None:
    """The writer's backend is terminated while its commit waits (for a row lock the
    test holds): the commit is replayed on a fresh connection, nobody sees an outage,
    and a create queued meanwhile is not refused."""
    with capture_logs() as logs:
        async with started(pg_url) as store:
            await store.create_run(record("j1"))
            blocker = await asyncpg.connect(pg_url)
            # Outside the blocker's transaction, which would see one snapshot of
            # pg_stat_activity throughout.
            observer = await asyncpg.connect(pg_url)
            try:
                async with blocker.transaction():
                    await blocker.execute(
                        "SELECT 1 FROM noderun_runs WHERE job_id = 'j1' FOR UPDATE"
                    )
                    store.append("j1", 1, frame("j1", 1))
                    ended = store.finish("j1", "completed", 2, terminal("j1", 2), None)
                    first = await _waiting_commit(observer)
                    created = store.create_run(record("j2"))
                    await observer.execute("SELECT pg_terminate_backend($1)", first)
                    # The replay waits for the same lock, on another backend.
                    await _waiting_commit(observer, other_than=first)
            finally:
                await blocker.close()
                await observer.close()
            assert await ended is None
            await created
            run = await store.get_run("j1")
            assert run is not None and (run.status, run.last_seq) == ("completed", 2)
            assert [f.seq for f in await store.read_frames("j1", 0)] == [1, 2]
    events = [entry["event"] for entry in logs]
    assert "store.commit_replayed" in events
    assert "store.unavailable" not in events


async def _waiting_commit(conn: asyncpg.Connection[Any], other_than: int = 0) -> int:
    """The pid of a backend whose commit waits for a lock (other than ``other_than``)."""
    found: list[int] = []

    async def waiting() -> bool:
        found[:] = [pid for (pid,) in await conn.fetch(_IN_COMMIT) if pid != other_than]
        return bool(found)

    await eventually(waiting)
    return found[0]


async def test_a_commit_replayed_after_its_reply_was_lost_has_the_same_effect(
    pg_url: str,
) -> None:
    """The commit of an attempt whose reply was lost, sent again: its creates are
    recognised (not refused as already running), its frames are not doubled."""
    async with started(pg_url) as s:
        store, backend = _postgres(s)
        loop = asyncio.get_running_loop()
        running = Create(record("running"), loop.create_future())
        short = Create(record("short"), loop.create_future())
        done: asyncio.Future[StoredFrame | None] = loop.create_future()
        batch: list[Item] = [
            running,
            Append("running", 1, frame("running", 1)),
            short,
            Append("short", 1, frame("short", 1)),
            Finish("short", "completed", 2, terminal("short", 2), None, 1.0, done),
        ]
        for _attempt in range(2):
            refused, not_here = await backend.commit(batch)
            assert (refused, not_here) == ({}, ())
        for job_id, status in (("running", "running"), ("short", "completed")):
            run = await store.get_run(job_id)
            assert run is not None and run.status == status
        assert [f.seq for f in await store.read_frames("running", 0)] == [1]
        assert [f.seq for f in await store.read_frames("short", 0)] == [1, 2]
        # Another server's create of a running id is still refused.
        async with started(pg_url) as other:
            again = Create(record("running"), loop.create_future())
            refused, _ = await _postgres(other)[1].commit([again])
            assert list(refused) == [again]
