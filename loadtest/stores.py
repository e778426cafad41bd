"""``--store`` for the connection test and the soak: what the server under test gets.

``none`` → no store (durable runs refused); ``sqlite`` → a fresh sqlite file in a
temporary directory; ``sqlite:///PATH`` → that file; ``postgresql://…`` → an
admin DSN on which a fresh ``noderun_bench_<hex>`` database is created and
dropped at the end (``loadtest.database``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loadtest.database import fresh_database

__all__ = ["StoreChoice", "parse_store", "server_store"]


@dataclass(frozen=True)
class StoreChoice:
    """A parsed ``--store``: ``kind`` is ``none``, ``sqlite`` or ``postgresql``."""

    kind: str
    value: str

    @property
    def durable(self) -> bool:
        return self.kind != "none"


def parse_store(value: str) -> StoreChoice:
    """Raises ``ValueError`` for anything but the four forms in the module docstring."""
    if value == "none":
        return StoreChoice("none", value)
    if value == "sqlite" or value.startswith("sqlite:///"):
        return StoreChoice("sqlite", value)
    if value.startswith(("postgresql://", "postgres://")):
        return StoreChoice("postgresql", value)
    raise ValueError(f"--store must be none, sqlite, sqlite:///PATH or postgresql://…: {value!r}")


@contextlib.contextmanager
def server_store(choice: StoreChoice) -> Iterator[tuple[str, str]]:
    """Yield ``(url for noderun --store, description without credentials)``.

    Raises ``loadtest.database.DatabaseUnavailable`` when PostgreSQL is unreachable.
    """
    if choice.kind == "none":
        yield "none", "none"
    elif choice.kind == "sqlite" and choice.value == "sqlite":
        with tempfile.TemporaryDirectory(prefix="noderun-loadtest-") as tmp:
            path = Path(tmp) / "runs.db"
            yield f"sqlite:///{path}", "sqlite (temporary file)"
    elif choice.kind == "sqlite":
        yield choice.value, choice.value
    else:
        with fresh_database(choice.value) as db:
            yield db.url, f"{db.describe()} (fresh database)"
