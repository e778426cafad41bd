"""Periodic deletion of old finished runs."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import structlog

from noderun.persistence.errors import StoreError

__all__ = ["run_retention"]

log = structlog.get_logger(__name__)


class _Deletes(Protocol):
    async def delete_finished_before(self, cutoff: float) -> int: ...


async def run_retention(store: _Deletes, retention_seconds: float, interval: float) -> None:
    """Every ``interval`` seconds, delete runs finished more than ``retention_seconds`` ago.

    Runs until cancelled. Store errors are logged and retried at the next interval, so a
    store outage never ends the task.
    """
    while True:
        try:
            deleted = await store.delete_finished_before(time.time() - retention_seconds)
        except StoreError as exc:
            log.warning("store.retention_failed", error=str(exc))
        else:
            if deleted:
                log.info("store.retention_deleted", runs=deleted)
        await asyncio.sleep(interval)
