"""Fixtures of the durable-run tests: a store database of each kind, read directly.

The databases come from the shared fixtures in ``tests/conftest.py``: a fresh sqlite
file, or a fresh PostgreSQL database (skipped when PostgreSQL is unreachable, failed
instead when ``NODERUN_REQUIRE_PG=1``).
"""

from __future__ import annotations

import pytest

from tests.durable.helpers import StoreDb


@pytest.fixture
def store(store_kind: str, store_url: str, request: pytest.FixtureRequest) -> StoreDb:
    """The database of a fresh store of each kind (sqlite, postgres)."""
    admin = request.getfixturevalue("pg_admin_dsn") if store_kind == "postgres" else None
    return StoreDb(store_kind, store_url, admin)


@pytest.fixture
def pg_store(pg_url: str, pg_admin_dsn: str) -> StoreDb:
    """The database of a fresh PostgreSQL store."""
    return StoreDb("postgres", pg_url, pg_admin_dsn)
