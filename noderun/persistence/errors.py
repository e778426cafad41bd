"""Errors raised by the durable run stores.

``StoreError``, ``RunExists`` and ``StoreUnavailable`` are the bases the runtime knows
(:mod:`noderun.contract`); the rest refine them for the stores and the server.

Every exception carries its facts as fields; ``str()`` is derived from them::

    StoreError                      root: anything a store raises on purpose
    ├── StoreConfigError            bad URL, bad option, missing driver (also ValueError)
    ├── SchemaTooNew                the database was migrated by a newer noderun
    ├── RunExists                   create_run for a job_id that is still running
    ├── ServerIdInUse               another live server uses this server id on the store
    ├── WriteRejected               the database refused the data (constraint, bad value);
    │                               retrying cannot help, the writer drops it and goes on
    └── StoreUnavailable            the database cannot be reached or cannot commit now;
        └── StoreFull               … because its disk (or quota) is full

``StoreUnavailable`` is the one the runtime reports to clients as "store unavailable"; the
group-commit writer keeps retrying in the background while it is raised.
"""

from __future__ import annotations

from noderun.contract import RunExists, StoreError, StoreUnavailable

__all__ = [
    "RunExists",
    "SchemaTooNew",
    "ServerIdInUse",
    "StoreConfigError",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "WriteRejected",
]


class StoreConfigError(StoreError, ValueError):
    """A store setting (URL, option, environment variable) is invalid or unusable."""

    def __init__(self, setting: str, value: object, reason: str) -> None:
        self.setting = setting
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {setting} {value!r}: {reason}")


class SchemaTooNew(StoreError):
    """The database schema is newer than this code understands (do not touch it)."""

    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(f"store schema version {found} is newer than supported {supported}")


class WriteRejected(StoreError):
    """The database refused a write for a reason that retrying cannot fix."""

    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__(f"{backend} store rejected a write: {reason}")


class StoreFull(StoreUnavailable):
    """The store's disk or quota is full; writes are retried until space frees up."""


class ServerIdInUse(StoreError):
    """Another live server uses this server id on the same store.

    A server's id names the owner of its runs; a server starting with an id fails the
    runs that id left running (they are its own, from before a crash), so two live
    servers must never share one.
    """

    def __init__(self, backend: str, server_id: str) -> None:
        self.backend = backend
        self.server_id = server_id
        super().__init__(
            f"server id {server_id!r} is in use by another live server on this {backend}"
            " store: give each server its own --server-id (NODERUN_SERVER_ID)"
        )
