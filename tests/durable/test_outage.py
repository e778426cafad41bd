"""A PostgreSQL store that goes away: new durable runs fail promptly with "store unavailable",
ephemeral runs go on, and the server recovers by itself when the database is back. A
server whose store cannot be reached at start exits at once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.durable.helpers import ServerProcess, StoreDb, serving
from tests.support.client import Client, connect
from tests.support.frames import is_terminal
from tests.support.graphs import progress_graph, sleep_graph
from tests.support.ports import free_port
from tests.support.timing import LONG_TIMEOUT, SECOND
from tests.support.waiting import eventually


async def _terminal(
    client: Client, graph: dict[str, object], *, durable: bool = True
) -> dict[str, object]:
    job_id = await client.run_job(graph, durable=durable)
    return (await client.receive_until_terminal(job_id)).pop().frame


async def test_durable_runs_fail_promptly_while_postgres_is_down_and_work_after(
    pg_store: StoreDb, tmp_path: Path
) -> None:
    """New durable runs are refused at once while the store is down; ephemeral runs go
    on; a durable run that finishes during the outage sends its terminal only once it
    is committed, and the store then says the same thing the client was told."""
    async with (
        serving(pg_store.url, tmp_path, log_level="info", clean=False) as server,
        connect(server) as client,
    ):
        assert (await _terminal(client, progress_graph(2, 0)))["status"] == "completed"
        # In flight when the database goes: its terminal state cannot be committed yet.
        in_flight = await client.run_job(sleep_graph(SECOND / 2), durable=True)
        await client.receive_until(lambda frame: frame.get("type") == "node_update")
        await pg_store.refuse_connections()
        seen: list[dict[str, object]] = []
        try:
            # pg_terminate_backend only signals: a backend may serve (and commit) one
            # more run before it exits. Such a run is legitimately durable; the next
            # one is refused.
            refused: dict[str, object] | None = None
            for _attempt in range(20):
                job_id = await client.run_job(progress_graph(2, 0), durable=True)
                frames = await client.until_terminal(job_id)
                seen += frames
                if frames[-1]["status"] != "completed":
                    refused = frames[-1]
                    break
                await asyncio.sleep(SECOND / 10)
            assert refused is not None, "no durable run was refused while PostgreSQL was down"
            assert refused["status"] == "failed"
            assert "store unavailable" in str(refused["error"])

            job_id = await client.run_job(progress_graph(2, 0), durable=False)
            seen += await client.until_terminal(job_id)
            ephemeral = seen[-1]
            assert ephemeral["status"] == "completed"
            assert ephemeral["result"] == {"outputs": {"steps": [2]}}

            # Past the node's end and the store's finish deadline: still no terminal.
            await asyncio.sleep(SECOND * 3)
            await client.send({"type": "ping"})  # everything sent so far arrives before the pong
            seen += await client.recv_until(lambda f: f.get("type") == "pong")
            assert not any(is_terminal(frame, in_flight) for frame in seen)
        finally:
            await pg_store.allow_connections()
        terminal = (await client.receive_until_terminal(in_flight, SECOND * 20)).pop()
        assert terminal.frame["status"] == "completed"

        async with connect(server) as other:
            await other.reconnect(in_flight)
            replayed = (await other.receive_until_terminal(in_flight)).pop()
        assert replayed.raw == terminal.raw

        async def durable_run_completes() -> bool:
            return (await _terminal(client, progress_graph(2, 0)))["status"] == "completed"

        await eventually(durable_run_completes, LONG_TIMEOUT)

        async def logged_reconnected() -> bool:
            return "store.reconnected" in server.log()

        await eventually(logged_reconnected, LONG_TIMEOUT)
    # asyncpg's pool logs its own retries with a traceback (backing off up to 60 s);
    # noderun itself logs none.
    log = server.log()
    assert log.count("Traceback") == log.count("Failed to restore the pool connection floor"), log


async def test_serve_exits_at_once_when_postgres_is_unreachable(tmp_path: Path) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    server = ServerProcess(closed, tmp_path)
    server.spawn()
    try:
        code = await server.wait_exit(SECOND * 10)
    finally:
        await server.kill()
    assert code != 0
    assert "store unavailable" in server.log(), server.log()


async def test_a_burst_of_durable_runs_rides_out_terminated_database_connections(
    pg_store: StoreDb, tmp_path: Path
) -> None:
    """PostgreSQL stays up but kills the server's connections (``pg_terminate_backend``)
    again and again in the middle of a burst of durable runs: commits are replayed on
    fresh connections and retried within each run's deadline, so runs complete; one
    that cannot within its deadline fails with "store unavailable", never with the
    driver's own words. (tests/persistence/test_postgres_commit.py kills a commit in
    flight deterministically.)"""
    runs, clients = 1000, 4
    async with (
        # Each client's burst is past the default in-flight limit per connection, past
        # which durable runs are refused (PROTOCOL.md §7): this test is about outages.
        serving(
            pg_store.url,
            tmp_path,
            args=["--max-runs-per-connection", str(runs)],
            log_level="info",
            clean=False,
        ) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        connections = [await stack.enter_async_context(connect(server)) for _ in range(clients)]
        terminals: dict[str, dict[str, object]] = {}
        job_ids: list[str] = []
        some_done = asyncio.Event()

        async def burst(client: Client) -> None:
            sent = [
                await client.run_job(progress_graph(2, 0), durable=True)
                for _ in range(runs // clients)
            ]
            job_ids.extend(sent)
            while not all(job_id in terminals for job_id in sent):
                frame = await client.recv(SECOND * 20)
                if is_terminal(frame, str(frame.get("job_id"))):
                    terminals[str(frame["job_id"])] = frame
                    if len(terminals) >= runs // 10:
                        some_done.set()

        bursts = asyncio.gather(*(burst(client) for client in connections))
        await some_done.wait()
        terminated = 0
        # Blips while runs are being created and finished: some land mid-commit.
        for _ in range(20):
            if len(terminals) >= runs * 3 // 4:
                break
            terminated += await pg_store.terminate_connections()
            await asyncio.sleep(SECOND / 50)
        await bursts
    assert terminated >= 3
    assert set(terminals) == set(job_ids)
    failed = [frame for frame in terminals.values() if frame["status"] != "completed"]
    for frame in failed:
        assert frame["status"] == "failed"
        assert str(frame["error"]).startswith("store unavailable"), frame
    for frame in terminals.values():
        for internal in ("switch to state", "another operation", "asyncpg", "Errno"):
            assert internal not in str(frame.get("error")), frame
    # The store says what the clients were told.
    for job_id in job_ids[:: runs // 20]:
        run = await pg_store.run(job_id)
        if terminals[job_id]["status"] == "completed":
            assert run is not None and run.status == "completed"
        else:
            assert run is None or run.status == "failed"
