"""Outage bookkeeping: log once when a store goes down and once when it comes back."""

from __future__ import annotations

import time

import structlog

from noderun.persistence.errors import StoreUnavailable

__all__ = ["Health"]

log = structlog.get_logger(__name__)


class Health:
    """Tracks whether the last store operation succeeded.

    Logs ``store.unavailable`` (warning) on the first failure of an outage and
    ``store.reconnected`` (info) on the first success after it, so a long outage
    does not flood the log with one line per retry.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.last_error: StoreUnavailable | None = None
        self._down_since: float | None = None

    @property
    def up(self) -> bool:
        return self._down_since is None

    def failed(self, error: StoreUnavailable, *, during: str) -> None:
        self.last_error = error
        if self._down_since is None:
            self._down_since = time.monotonic()
            # The driver's own words go to the log only (clients get ``reason``).
            cause = error.__cause__
            log.warning(
                "store.unavailable",
                backend=self.backend,
                during=during,
                reason=error.reason,
                detail=None if cause is None else f"{type(cause).__name__}: {cause}",
            )

    def succeeded(self) -> None:
        if self._down_since is not None:
            log.info(
                "store.reconnected",
                backend=self.backend,
                outage_s=round(time.monotonic() - self._down_since, 3),
            )
            self._down_since = None
            self.last_error = None
