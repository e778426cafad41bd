"""Fixtures shared by the store and durable-run tests: an async test runner, and isolated
sqlite and PostgreSQL databases.

PostgreSQL comes from ``NODERUN_TEST_PG_DSN`` (default: local ``postgres`` database).
Each test gets its own database, created from that one and dropped afterwards. When the
server is unreachable, PostgreSQL tests are skipped, or fail if ``NODERUN_REQUIRE_PG=1``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests to completion in a fresh event loop."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    names = inspect.signature(function).parameters
    asyncio.run(function(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=3)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    """DSN of a PostgreSQL database allowed to CREATE DATABASE; skips if unreachable."""
    dsn = os.environ.get("NODERUN_TEST_PG_DSN", DEFAULT_PG_DSN)
    try:
        asyncio.run(_admin(dsn, "SELECT 1"))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable at {dsn} ({exc}); set NODERUN_TEST_PG_DSN"
        if os.environ.get("NODERUN_REQUIRE_PG") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return dsn


@pytest.fixture
def pg_url(pg_admin_dsn: str) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    name = f"noderun_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(pg_admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(pg_admin_dsn, name)
    finally:
        asyncio.run(_admin(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh sqlite file (absolute path form ``sqlite:////…``)."""
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def store_url(store_kind: str, request: pytest.FixtureRequest) -> str:
    """URL of a fresh, empty database of each store kind."""
    url: Any = request.getfixturevalue("pg_url" if store_kind == "postgres" else "sqlite_url")
    assert isinstance(url, str)
    return url
