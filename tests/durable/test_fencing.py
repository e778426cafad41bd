"""One truth per durable run (PROTOCOL.md §5), with real servers: a server cut off from
its store for longer than its lease, whose run another server failed meanwhile, sends
its client the stored terminal (``failed: interrupted``), never its own; the run's node
work stops; ``reconnect_job`` says the same on both servers.

PostgreSQL: the cut-off server reaches the database through a TCP proxy of the test,
which drops its connections and refuses new ones. sqlite: the server is paused
(SIGSTOP) until the other one failed its run, then resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.durable.helpers import INTERRUPTED, ServerProcess, StoreDb, serving
from tests.support.client import Client, connect
from tests.support.frames import is_ack
from tests.support.graphs import sleep_graph
from tests.support.timing import SECOND
from tests.support.waiting import eventually


class TcpProxy:
    """Forwards TCP connections to ``host:port`` until :meth:`cut`, which drops every
    connection and closes new ones at once, until :meth:`restore`."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._cut = False
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self._cut = True
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def restore(self) -> None:
        self._cut = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for end in (writer, up_writer):
            self._links.discard(end)
            end.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def proxied(url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy to the PostgreSQL server of ``url``, and ``url`` through it."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    proxy = TcpProxy(parts.hostname, parts.port or 5432)
    await proxy.start()
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    through = urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))
    try:
        yield proxy, through
    finally:
        await proxy.close()


async def _started(client: Client, job_id: str) -> None:
    await client.receive_until(lambda frame: is_ack(frame) and frame.get("job_id") == job_id)


async def _check_one_truth(store: StoreDb, job_id: str, *servers: ServerProcess) -> bytes:
    """The run is stored as interrupted, and every server replays exactly that terminal."""
    run = await store.run(job_id)
    assert run is not None
    assert (run.status, run.error) == ("failed", INTERRUPTED)
    assert run.terminal_frame is not None
    for server in servers:
        async with connect(server) as client:
            await client.reconnect(job_id)
            received = await client.receive_until_terminal(job_id)
        assert received[0].frame["status"] == "failed"
        assert received[-1].raw == run.terminal_frame
    return run.terminal_frame


async def _failed_in_store(store: StoreDb, job_id: str, within: float) -> None:
    async def failed() -> bool:
        run = await store.run(job_id)
        return run is not None and run.status == "failed"

    await eventually(failed, within)


async def test_a_server_cut_off_from_postgres_sends_the_stored_terminal(
    pg_store: StoreDb, tmp_path: Path
) -> None:
    async with (
        proxied(pg_store.url) as (proxy, through_proxy),
        serving(through_proxy, tmp_path, clean=False) as cut_off,
        serving(pg_store.url, tmp_path) as other,
        connect(cut_off) as client,
    ):
        # Far longer than the test: only the loss of the run can end it in time.
        job_id = await client.run_job(sleep_graph(SECOND * 600), durable=True)
        await _started(client, job_id)
        proxy.cut()
        try:
            await _failed_in_store(pg_store, job_id, SECOND * 15)
        finally:
            proxy.restore()
        received = await client.receive_until_terminal(job_id, SECOND * 20)
        terminal = received[-1]
        assert (terminal.frame["status"], terminal.frame["error"]) == ("failed", INTERRUPTED)
        assert terminal.raw == await _check_one_truth(pg_store, job_id, cut_off, other)
        # The cut-off server works normally again.
        job = await client.run_job(sleep_graph(0), durable=True)
        assert (await client.receive_until_terminal(job))[-1].frame["status"] == "completed"


async def test_a_paused_sqlite_server_sends_the_stored_terminal(
    sqlite_url: str, tmp_path: Path
) -> None:
    store = StoreDb("sqlite", sqlite_url, None)
    async with (
        serving(store.url, tmp_path) as paused,
        serving(store.url, tmp_path) as other,
        connect(paused) as client,
    ):
        job_id = await client.run_job(sleep_graph(SECOND * 600), durable=True)
        await _started(client, job_id)
        process = paused.process
        assert process is not None
        for _attempt in range(5):
            process.send_signal(signal.SIGSTOP)
            try:
                await _failed_in_store(store, job_id, SECOND * 8)
            except AssertionError:
                # Paused inside a write transaction: nobody can write until it goes on.
                continue
            finally:
                process.send_signal(signal.SIGCONT)
            break
        else:
            raise AssertionError("the other server never failed the paused server's run")
        received = await client.receive_until_terminal(job_id, SECOND * 20)
        terminal = received[-1]
        assert (terminal.frame["status"], terminal.frame["error"]) == ("failed", INTERRUPTED)
        assert terminal.raw == await _check_one_truth(store, job_id, paused, other)
