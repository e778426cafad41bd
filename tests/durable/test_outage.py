"""A PostgreSQL store that goes away: new durable runs fail promptly with "store unavailable",
ephemeral runs go on, and the server recovers by itself when the database is back. A
server whose store cannot be reached at start exits at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.durable.helpers import (
    WAIT,
    Client,
    ServerProcess,
    StoreDb,
    connect,
    eventually,
    free_port,
    is_terminal,
    progress_graph,
    serving,
    sleep_graph,
)


async def _terminal(
    client: Client, graph: dict[str, object], *, durable: bool = True
) -> dict[str, object]:
    job_id = await client.run_job(graph, durable=durable)
    return (await client.until_terminal(job_id)).pop().frame


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
        in_flight = await client.run_job(sleep_graph(WAIT / 2))
        await client.until(lambda frame: frame.get("type") == "node_update")
        await pg_store.refuse_connections()
        seen: list[dict[str, object]] = []
        try:
            # pg_terminate_backend only signals: a backend may serve (and commit) one
            # more run before it exits. Such a run is legitimately durable; the next
            # one is refused.
            refused: dict[str, object] | None = None
            for _attempt in range(20):
                job_id = await client.run_job(progress_graph(2, 0))
                received = await client.until_terminal(job_id)
                seen += [item.frame for item in received]
                if received[-1].frame["status"] != "completed":
                    refused = received[-1].frame
                    break
                await asyncio.sleep(WAIT / 10)
            assert refused is not None, "no durable run was refused while PostgreSQL was down"
            assert refused["status"] == "failed"
            assert "store unavailable" in str(refused["error"])

            job_id = await client.run_job(progress_graph(2, 0), durable=False)
            received = await client.until_terminal(job_id)
            seen += [item.frame for item in received]
            ephemeral = received[-1].frame
            assert ephemeral["status"] == "completed"
            assert ephemeral["result"] == {"outputs": {"steps": [2]}}

            # Past the node's end and the store's finish deadline: still no terminal.
            await asyncio.sleep(WAIT * 3)
            await client.send({"type": "ping"})  # everything sent so far arrives before the pong
            seen += [item.frame for item in await client.until(lambda f: f.get("type") == "pong")]
            assert not any(is_terminal(frame, in_flight) for frame in seen)
        finally:
            await pg_store.allow_connections()
        terminal = (await client.until_terminal(in_flight, WAIT * 20)).pop()
        assert terminal.frame["status"] == "completed"

        async with connect(server) as other:
            await other.reconnect(in_flight)
            replayed = (await other.until_terminal(in_flight)).pop()
        assert replayed.raw == terminal.raw

        async def durable_run_completes() -> bool:
            return (await _terminal(client, progress_graph(2, 0)))["status"] == "completed"

        await eventually(durable_run_completes)

        async def logged_reconnected() -> bool:
            return "store.reconnected" in server.log()

        await eventually(logged_reconnected)
    # asyncpg's pool logs its own retries with a traceback (backing off up to 60 s);
    # noderun itself logs none.
    log = server.log()
    assert log.count("Traceback") == log.count("Failed to restore the pool connection floor"), log


async def test_serve_exits_at_once_when_postgres_is_unreachable(tmp_path: Path) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    server = ServerProcess(closed, tmp_path)
    server.spawn()
    try:
        code = await server.wait_exit(WAIT * 10)
    finally:
        await server.kill()
    assert code != 0
    assert "store unavailable" in server.log(), server.log()
