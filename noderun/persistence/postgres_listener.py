"""The PostgreSQL store's listener: one dedicated connection that LISTENs, so nothing
polls the database, and that holds this server's claim on its id.

Channels (see :mod:`postgres_schema`):

* ``noderun_frames``: every group commit (and every recovery sweep) sends the job ids it
  touched, as JSON arrays, with ``pg_notify`` inside its transaction, so the
  notification arrives only once the frames are visible; followers in every server
  wake on it.
* ``noderun_cancel``: ``request_cancel`` notifies the owning server.

When the connection drops, it is re-established with backoff; then the store is told
(``on_reconnected``), so that it wakes every follower and re-reads pending cancel
flags: notifications sent meanwhile are lost. Cancel callbacks are therefore
at-least-once.

The connection also holds a session advisory lock on the server's id: two live servers
never share one (a server fails the runs its id left running when it starts), and the
database releases the lock as soon as the process's connection ends, however the
process died.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

import asyncpg
import structlog

from noderun.persistence.errors import ServerIdInUse, StoreUnavailable
from noderun.persistence.health import Health
from noderun.persistence.options import StoreOptions
from noderun.persistence.postgres_errors import connecting, translated
from noderun.persistence.postgres_schema import CANCEL_CHANNEL, FRAMES_CHANNEL

__all__ = ["Listener"]

log = structlog.get_logger(__name__)

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

# First key of the two-key advisory locks on server ids ("nr"); the second is the
# id's hash. Two-key locks never collide with the migration's one-key lock.
_SERVER_LOCK = 0x6E72


class Listener:
    """The LISTEN connection of one store: ``open()``, then ``run()`` as a task until
    cancelled, then ``close()``."""

    def __init__(
        self,
        dsn: str,
        server_id: str,
        *,
        options: StoreOptions,
        health: Health,
        on_frames: Callable[[Iterable[str]], None],
        on_cancel: Callable[[str], None],
        on_reconnected: Callable[[], Awaitable[None]],
    ) -> None:
        self._dsn = dsn
        self._server_id = server_id
        self._options = options
        self._health = health
        self._on_frames = on_frames
        self._on_cancel = on_cancel
        self._on_reconnected = on_reconnected
        self._conn: Connection | None = None
        self._lost = asyncio.Event()

    async def open(self) -> None:
        """Connect and claim the server id; ServerIdInUse while another live server
        holds it, StoreUnavailable when the database cannot be reached."""
        self._conn = await self._connect()
        await self._claim(self._conn, patience=self._options.connect_timeout)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.remove_termination_listener(self._terminated)
        try:
            await asyncio.wait_for(conn.close(), self._options.connect_timeout)
        except Exception:
            conn.terminate()

    async def run(self) -> None:
        """Keep the connection alive; after a reconnect, let the store catch up."""
        delay = self._options.retry_initial
        while True:
            conn = self._conn
            self._lost.clear()  # before the check, so a loss after it still wakes us
            if conn is not None and not conn.is_closed():
                # Termination callbacks are the fast path; the timeout also catches a
                # connection that died without one.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), self._options.heartbeat_interval)
                continue
            if conn is not None:
                conn.terminate()
                self._conn = None
            try:
                self._conn = conn = await self._connect()
                await self._claim(conn, patience=0)
            except ServerIdInUse:
                # Another server started with this id while this one was cut off: it
                # failed this server's runs, whose finishes now get that terminal.
                log.error("store.server_id_taken", server_id=self._server_id)
            except StoreUnavailable as exc:
                self._health.failed(exc, during="listen")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._options.retry_max)
                continue
            delay = self._options.retry_initial
            self._health.succeeded()
            log.info("store.listener_reconnected", server_id=self._server_id)
            await self._on_reconnected()

    async def _connect(self) -> Connection:
        with connecting():
            conn = await asyncpg.connect(self._dsn, timeout=self._options.connect_timeout)
            try:
                await conn.add_listener(FRAMES_CHANNEL, self._notified)
                await conn.add_listener(CANCEL_CHANNEL, self._notified)
            except BaseException:
                conn.terminate()
                raise
        conn.add_termination_listener(self._terminated)
        return conn

    async def _claim(self, conn: Connection, *, patience: float) -> None:
        """Take this server id's lock on ``conn``, or raise ServerIdInUse.

        With some ``patience``: a server restarted at once after a kill may find the
        lock still held by its predecessor's connection until the database notices
        that connection is gone.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while True:
            with translated():
                claimed = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    _SERVER_LOCK,
                    self._server_id,
                )
            if claimed:
                return
            if loop.time() >= deadline:
                raise ServerIdInUse("postgres", self._server_id)
            await asyncio.sleep(min(self._options.retry_max, patience / 10))

    def _notified(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        if not isinstance(payload, str):
            return
        if channel == FRAMES_CHANNEL:
            job_ids = json.loads(payload)
            if isinstance(job_ids, list):
                self._on_frames(job_id for job_id in job_ids if isinstance(job_id, str))
        elif channel == CANCEL_CHANNEL:
            owner, job_id = json.loads(payload)
            if owner == self._server_id:
                self._on_cancel(job_id)

    def _terminated(self, connection: Any) -> None:
        self._lost.set()
