"""``/readyz`` against real stores, and the readiness hook for parts that start later."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from noderun.runtime.registry import default_registry
from noderun.server.lifecycle import Lifecycle, Phase
from noderun.server.settings import Settings
from tests.server.process import Process, get
from tests.support.timing import TIMEOUT
from tests.support.waiting import eventually_blocking


def wait_for_status(server: Process, status: int) -> tuple[int, dict[str, object]]:
    """Poll ``/readyz`` until it answers ``status``; its last answer."""
    answers: list[tuple[int, dict[str, object]]] = []

    def answered() -> bool:
        answer = get(server.port, "/readyz")
        assert answer is not None, server.output()
        answers.append(answer)
        return answer[0] == status

    eventually_blocking(
        answered, TIMEOUT * 2, explain=lambda: f"/readyz stayed {answers[-1]}:\n{server.output()}"
    )
    return answers[-1]


def phase(lifecycle: Lifecycle) -> Phase:
    """The phase now (a function, so the type checker does not pin it between asserts)."""
    return lifecycle.phase


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=TIMEOUT)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def test_readyz_turns_503_while_postgresql_refuses_and_200_after(
    processes: list[Process], tmp_path: Path, pg_url: str, pg_admin_dsn: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    server = Process.serve(
        ["--store", pg_url],
        tmp_path,
        {"NODERUN_STORE_CONNECT_TIMEOUT": "1", "NODERUN_PG_COMMAND_TIMEOUT": "1"},
    )
    processes.append(server)
    server.wait_ready()
    assert get(server.port, "/livez") == (200, {"status": "alive"})
    asyncio.run(
        _admin(
            pg_admin_dsn,
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false',
            f"""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = '{database}' AND pid <> pg_backend_pid()""",
        )
    )
    try:
        body = wait_for_status(server, 503)[1]
        reasons = body["reasons"]
        assert isinstance(reasons, list) and any("store" in str(r) for r in reasons), body
        # The process itself is fine: liveness must not fail with the database.
        assert get(server.port, "/livez") == (200, {"status": "alive"})
    finally:
        asyncio.run(_admin(pg_admin_dsn, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
    assert wait_for_status(server, 200)[1] == {"status": "ready"}


def test_readyz_checks_the_embedded_store_too(processes: list[Process], tmp_path: Path) -> None:
    server = Process.serve(["--store", f"sqlite:///{tmp_path / 'runs.db'}"], tmp_path)
    processes.append(server)
    server.wait_ready()
    assert get(server.port, "/readyz") == (200, {"status": "ready"})


async def test_readiness_checks_hold_readiness_until_they_pass() -> None:
    """The hook for parts that become ready later (NodeTool workers, say)."""
    lifecycle = Lifecycle(Settings(store="none"), default_registry())
    assert await lifecycle.not_ready() == ["server new"]
    workers_up = asyncio.Event()

    async def workers() -> str | None:
        return None if workers_up.is_set() else "2 of 4 started"

    lifecycle.add_readiness_check("workers", workers)
    await lifecycle.start()
    try:
        assert await lifecycle.not_ready() == ["workers: 2 of 4 started"]
        workers_up.set()
        assert await lifecycle.not_ready() == []
        await lifecycle.drain(0)
        assert phase(lifecycle) is Phase.DRAINING
        assert await lifecycle.not_ready() == ["server draining"]
    finally:
        await lifecycle.stop()
    assert phase(lifecycle) is Phase.STOPPED
    assert await lifecycle.not_ready() == ["server stopped"]


async def test_impossible_lifecycle_moves_are_refused() -> None:
    lifecycle = Lifecycle(Settings(store="none"), default_registry())
    await lifecycle.stop()
    assert lifecycle.phase is Phase.STOPPED
    await lifecycle.start()  # a stopped server does not start again
    assert phase(lifecycle) is Phase.STOPPED


class _Workers:
    def __init__(self, alive: int) -> None:
        self.alive = alive


async def test_nodetool_workers_gate_readiness_only_when_none_is_alive() -> None:
    from noderun.server.lifecycle import workers_readiness

    pool = _Workers(alive=2)
    check = workers_readiness(pool)
    assert await check() is None
    pool.alive = 1
    assert await check() is None
    pool.alive = 0
    assert await check() == "no worker alive (restarting)"
