"""Choose and build a run store from a URL: a :class:`Store` on the backend it names."""

from __future__ import annotations

from noderun.persistence.errors import StoreConfigError
from noderun.persistence.options import StoreOptions
from noderun.persistence.store import Store

__all__ = ["open_store"]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(
    url: str, *, server_id: str | None = None, options: StoreOptions | None = None
) -> Store:
    """Build (not start) the store that ``url`` names.

    The result satisfies :class:`noderun.contract.RunStore` (structurally:
    ``persistence`` imports only ``protocol``, never ``runtime``).

    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
      ``sqlite:///:memory:`` (one process only): the embedded store.
    * ``postgresql://…`` or ``postgres://…`` (an asyncpg DSN): the PostgreSQL store;
      needs the ``postgres`` extra (asyncpg).

    ``server_id`` identifies this process as owner of its runs (a random uuid4 hex when
    omitted). Raises :class:`StoreConfigError` for an unknown scheme or a missing driver.
    Call ``await store.start()`` before use and ``await store.close()`` at shutdown.
    """
    if url.startswith(_SQLITE_PREFIX):
        path = url[len(_SQLITE_PREFIX) :]
        if not path or "?" in path:
            raise StoreConfigError("url", url, "expected sqlite:///PATH without query")
        from noderun.persistence.sqlite import SqliteBackend

        return Store(SqliteBackend(path, options), server_id=server_id)
    if url.startswith(_POSTGRES_SCHEMES):
        try:
            from noderun.persistence.postgres import PostgresBackend
        except ImportError as exc:
            if exc.name != "asyncpg":
                raise
            raise StoreConfigError(
                "url", url, "asyncpg is not installed: pip install 'noderun[postgres]'"
            ) from exc
        return Store(PostgresBackend(url, options), server_id=server_id)
    raise StoreConfigError("url", url, "scheme must be sqlite:/// or postgresql://")
