"""Durable run stores (PROTOCOL.md §5): one :class:`Store` on a backend per database,
an embedded sqlite file or PostgreSQL.

The store implements :class:`noderun.contract.RunStore`; :func:`open_store` picks its
backend from a URL. The PostgreSQL backend is imported only when asked for, so asyncpg
stays an optional dependency.
"""

from noderun.persistence.errors import (
    RunExists,
    SchemaTooNew,
    ServerIdInUse,
    StoreConfigError,
    StoreError,
    StoreFull,
    StoreUnavailable,
    WriteRejected,
)
from noderun.persistence.factory import open_store
from noderun.persistence.identity import default_server_id
from noderun.persistence.options import StoreOptions
from noderun.persistence.recovery import INTERRUPTED_ERROR
from noderun.persistence.retention import run_retention
from noderun.persistence.store import Store

__all__ = [
    "INTERRUPTED_ERROR",
    "RunExists",
    "SchemaTooNew",
    "ServerIdInUse",
    "Store",
    "StoreConfigError",
    "StoreError",
    "StoreFull",
    "StoreOptions",
    "StoreUnavailable",
    "WriteRejected",
    "default_server_id",
    "open_store",
    "run_retention",
]
