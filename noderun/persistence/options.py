"""Tuning knobs shared by every run store."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from noderun.persistence.errors import StoreConfigError

__all__ = ["ENV_VARIABLES", "StoreOptions"]

# env variable -> (field, converter); only what operators are expected to tune.
_ENV: dict[str, tuple[str, type[int] | type[float]]] = {
    "NODERUN_PG_POOL_MIN": ("pg_pool_min", int),
    "NODERUN_PG_POOL_MAX": ("pg_pool_max", int),
    "NODERUN_PG_COMMAND_TIMEOUT": ("pg_command_timeout", float),
    "NODERUN_PG_IDLE_LIFETIME": ("pg_idle_lifetime", float),
    "NODERUN_STORE_CONNECT_TIMEOUT": ("connect_timeout", float),
    "NODERUN_STORE_HEARTBEAT": ("heartbeat_interval", float),
    "NODERUN_STORE_LEASE_TIMEOUT": ("lease_timeout", float),
    "NODERUN_STORE_FINISH_TIMEOUT": ("finish_timeout", float),
    "NODERUN_STORE_COMMIT_CONCURRENCY": ("commit_concurrency", int),
}

#: The variables :meth:`StoreOptions.from_env` reads → the option each sets.
ENV_VARIABLES: dict[str, str] = {name: field for name, (field, _) in _ENV.items()}


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Settings of a store; every duration is in seconds.

    ``lease_timeout`` must exceed ``heartbeat_interval`` by a margin: a live server whose
    heartbeat is late by more than the lease is treated as dead and its runs are failed.
    """

    #: Time allowed to connect (and to open the sqlite file) in ``start()``.
    connect_timeout: float = 5.0
    #: How often a server refreshes its lease and sweeps runs of dead servers.
    heartbeat_interval: float = 5.0
    #: A server whose heartbeat is older than this is dead; its running runs get failed.
    lease_timeout: float = 20.0
    #: ``finish()`` raises ``StoreUnavailable`` if it cannot commit within this time.
    finish_timeout: float = 5.0
    #: Most queued items (appends and finishes) committed in one transaction.
    batch_max: int = 2000
    #: Group-commit transactions in flight at once (each on its own connection). More
    #: than one pays off only when the database is far away: on a local one, smaller
    #: batches cost the server more CPU per run than the overlap saves (measured).
    commit_concurrency: int = 1
    #: Bound of the append queue. Overflow policy "drop-newest": beyond it ``append``
    #: drops the frame and logs ``store.append_dropped`` once per run; finishes are never
    #: dropped.
    max_pending: int = 200_000
    #: First and largest pause between retries of a failed group commit.
    retry_initial: float = 0.05
    retry_max: float = 2.0
    #: sqlite: wait this long for another process's write lock before failing a commit.
    sqlite_busy_timeout: float = 5.0
    #: sqlite: how often followers look for frames committed by another process.
    sqlite_poll_interval: float = 0.05
    #: sqlite: how often the owner looks for cancel requests (only while it has runs).
    sqlite_cancel_poll_interval: float = 0.1
    pg_pool_min: int = 1
    pg_pool_max: int = 10
    pg_command_timeout: float = 10.0
    #: Close pooled connections idle for longer than this (0 disables).
    pg_idle_lifetime: float = 300.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value < 0 or (value == 0 and field.name not in ("pg_pool_min", "pg_idle_lifetime")):
                raise StoreConfigError(field.name, value, "must be positive")
        if self.pg_pool_min > self.pg_pool_max:
            raise StoreConfigError("pg_pool_min", self.pg_pool_min, "exceeds pg_pool_max")
        if self.lease_timeout <= self.heartbeat_interval:
            raise StoreConfigError("lease_timeout", self.lease_timeout, "must exceed heartbeat")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: float) -> StoreOptions:
        """Options from ``NODERUN_PG_*`` / ``NODERUN_STORE_*`` variables, then ``overrides``.

        Unset or empty variables keep the defaults; a malformed one raises
        :class:`StoreConfigError` naming the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (field, convert) in _ENV.items():
            raw = env.get(name, "").strip()
            if not raw:
                continue
            try:
                values[field] = convert(raw)
            except ValueError:
                raise StoreConfigError(name, raw, f"not a valid {convert.__name__}") from None
        values.update(overrides)
        return dataclasses.replace(cls(), **values)
