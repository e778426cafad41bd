"""How database failures map to store errors, and which way persistence imports point."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

from noderun.persistence import StoreFull, StoreUnavailable, WriteRejected
from noderun.persistence.sqlite import _translate

PACKAGE = Path(__file__).parents[2] / "noderun" / "persistence"


def _sqlite_error(*statements: str) -> sqlite3.Error:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        with pytest.raises(sqlite3.Error) as caught:
            for statement in statements:
                conn.execute(statement)
        return caught.value
    finally:
        conn.close()


def test_sqlite_full_disk_is_store_full_a_kind_of_unavailable() -> None:
    error = _translate(
        _sqlite_error("PRAGMA max_page_count = 2", "INSERT INTO t VALUES (1, zeroblob(100000))")
    )
    assert isinstance(error, StoreFull)
    assert isinstance(error, StoreUnavailable)
    assert error.backend == "sqlite"


def test_sqlite_constraint_violation_is_a_rejected_write() -> None:
    error = _translate(
        _sqlite_error("INSERT INTO t VALUES (1, NULL)", "INSERT INTO t VALUES (1, 0)")
    )
    assert isinstance(error, WriteRejected)
    assert "UNIQUE" in error.reason


def test_sqlite_locked_database_is_unavailable() -> None:
    error = _translate(sqlite3.OperationalError("database is locked"))
    assert type(error) is StoreUnavailable


def test_persistence_imports_only_contract_and_protocol_from_noderun() -> None:
    """STYLE.md: persistence -> contract -> protocol; runtime sees stores only through
    the contract's RunStore."""
    for module in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("noderun."):
                    assert name.startswith(
                        ("noderun.persistence", "noderun.contract", "noderun.protocol")
                    ), f"{module.name} imports {name}"
