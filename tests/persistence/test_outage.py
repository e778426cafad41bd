"""Store outages: writes queue and retry, finish() reports the outage within its deadline,
and everything queued commits once the store is back."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from urllib.parse import urlsplit

import asyncpg
import pytest
from structlog.testing import capture_logs

from noderun.persistence import StoreUnavailable
from tests.support.timing import SECOND
from tests.support.waiting import eventually

from .helpers import Follower, frame, record, started, terminal


class Outage:
    """Makes a test database refuse writes, then accept them again.

    sqlite: another connection holds the write lock. PostgreSQL: the database stops
    accepting connections and its sessions are killed (what a restart looks like).
    """

    def __init__(self, url: str, admin_dsn: str | None) -> None:
        self.url = url
        self.admin_dsn = admin_dsn
        self._lock: sqlite3.Connection | None = None

    @property
    def database(self) -> str:
        """The sqlite file, or the PostgreSQL database name."""
        if self.admin_dsn is None:
            return self.url.removeprefix("sqlite:///")
        return urlsplit(self.url).path.lstrip("/")

    async def _admin(self, *statements: str) -> None:
        assert self.admin_dsn is not None
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def begin(self) -> None:
        if self.admin_dsn is None:
            self._lock = sqlite3.connect(self.database, isolation_level=None)
            self._lock.execute("BEGIN IMMEDIATE")
            return
        await self._admin(
            f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false',
            f"""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = '{self.database}' AND pid <> pg_backend_pid()""",
        )

    async def end(self) -> None:
        if self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None
            return
        await self._admin(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true')


@pytest.fixture
def outage(store_kind: str, store_url: str, request: pytest.FixtureRequest) -> Outage:
    admin = request.getfixturevalue("pg_admin_dsn") if store_kind == "postgres" else None
    return Outage(store_url, admin)


async def test_finish_raises_during_an_outage_and_commits_after_it(
    store_url: str, outage: Outage
) -> None:
    with capture_logs() as logs:
        async with started(
            store_url,
            finish_timeout=SECOND / 2,
            sqlite_busy_timeout=SECOND / 20,
            connect_timeout=SECOND / 2,
        ) as store:
            await store.create_run(record("j1"))
            store.append("j1", 1, frame("j1", 1))
            await store.finish("j0", "completed", 1, terminal("j0", 1), None)  # not a run here
            await outage.begin()
            try:
                store.append("j1", 2, frame("j1", 2))
                began = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await store.finish("j1", "completed", 3, terminal("j1", 3), None)
                assert SECOND / 2 <= time.monotonic() - began < SECOND * 2
                with pytest.raises(StoreUnavailable):
                    await store.create_run(record("j2"))
            finally:
                await outage.end()

            async def finished() -> bool:
                run = await store.get_run("j1")
                return run is not None and run.status == "completed"

            # The finish that timed out stayed queued and commits once the store is back.
            await eventually(finished)
            assert [f.seq for f in await store.read_frames("j1", 0)] == [1, 2, 3]
            await store.create_run(record("j2"))
    events = [entry["event"] for entry in logs]
    assert "store.unavailable" in events
    assert "store.reconnected" in events


async def test_postgres_followers_and_cancels_survive_a_database_restart(
    pg_url: str, pg_admin_dsn: str
) -> None:
    """The LISTEN connection is re-established after the database kills it."""
    outage = Outage(pg_url, pg_admin_dsn)
    async with started(pg_url) as owner, started(pg_url) as other:
        cancelled: asyncio.Queue[str] = asyncio.Queue()
        owner.on_cancel_request(cancelled.put_nowait)
        await owner.create_run(record("j1"))
        owner.append("j1", 1, frame("j1", 1))
        follower = Follower(other, "j1")
        await eventually(lambda: follower.seqs == [1])  # it read the run; now it waits
        await outage.begin()
        await asyncio.sleep(SECOND / 10)  # the outage lasts a while
        await outage.end()
        owner.append("j1", 2, frame("j1", 2))

        async def can_cancel() -> bool:
            try:
                return await other.request_cancel("j1")
            except StoreUnavailable:
                return False

        await eventually(can_cancel)
        assert await asyncio.wait_for(cancelled.get(), SECOND * 5) == "j1"
        await owner.finish("j1", "cancelled", 3, terminal("j1", 3, "cancelled"), None)
        await asyncio.wait_for(follower.task, SECOND * 5)
        assert follower.seqs == [1, 2, 3]
