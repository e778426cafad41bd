"""The periodic sweep: its interval, and that a failing sweep is retried, not fatal."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from noderun.assets import AssetStore
from noderun.assets.sweeper import run_sweeper, sweep_interval
from tests.support.timing import TIMEOUT


def test_sweep_interval_is_a_quarter_of_the_ttl_within_bounds() -> None:
    assert sweep_interval(3600.0) == 300.0
    assert sweep_interval(40.0) == 10.0
    assert sweep_interval(0.001) == 0.01


class FlakyStore(AssetStore):
    """Fails its first sweep as a vanished disk would, then counts the ones that follow."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, max_bytes=10, ttl=0.01)
        self.calls = 0
        self.recovered = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def sweep(self) -> int:
        self.calls += 1
        if self.calls == 1:
            raise FileNotFoundError(2, "No such file or directory", str(self.root))
        self._loop.call_soon_threadsafe(self.recovered.set)
        return super().sweep()


async def test_a_failed_sweep_is_retried_at_the_next_interval(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path)
    store.open()
    task = asyncio.get_running_loop().create_task(run_sweeper(store, 0.01))
    try:
        await asyncio.wait_for(store.recovered.wait(), TIMEOUT)
        assert store.calls >= 2 and not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
