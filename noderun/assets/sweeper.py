"""The periodic sweep that deletes expired temporary assets."""

from __future__ import annotations

import asyncio

import structlog

from noderun.assets.store import AssetStore

__all__ = ["run_sweeper", "sweep_interval"]

log = structlog.get_logger(__name__)


def sweep_interval(ttl: float) -> float:
    """A quarter of the TTL, between 10 ms and 5 minutes.

    An expired asset is already refused at lookup; the sweep only frees its disk space,
    so a coarse interval costs space, never correctness.
    """
    return min(max(ttl / 4, 0.01), 300.0)


async def run_sweeper(store: AssetStore, interval: float) -> None:
    """Sweep ``store`` every ``interval`` seconds, in a worker thread, until cancelled.

    A failed sweep (a full or vanished disk) is logged and retried at the next interval.
    """
    while True:
        try:
            deleted = await asyncio.to_thread(store.sweep)
        except OSError as exc:
            log.warning("assets.sweep_failed", path=str(store.root), error=str(exc))
        else:
            if deleted:
                log.info("assets.swept", assets=deleted)
        await asyncio.sleep(interval)
