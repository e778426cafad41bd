"""Test nodes (``noderun.debug.*``): sleeping, blocking, failing, reporting progress."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec

from noderun.runtime.context import NodeContext
from noderun.runtime.node import node

Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)]
Interval = Annotated[float, msgspec.Meta(ge=0.0, le=60.0)]
Steps = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


@node("noderun.debug.Sleep", title="Sleep")
async def sleep(seconds: Seconds = 0.0) -> float:
    """Wait without blocking (async); outputs the seconds slept."""
    await asyncio.sleep(seconds)
    return seconds


@node("noderun.debug.BlockingSleep", title="Blocking Sleep")
def blocking_sleep(seconds: Seconds = 0.0) -> float:
    """Block a thread with ``time.sleep`` (a sync node: runs on the runner pool)."""
    time.sleep(seconds)
    return seconds


@node("noderun.debug.Fail", title="Fail")
async def fail(message: str = "failed on purpose") -> None:
    """Raise ``RuntimeError(message)``."""
    raise RuntimeError(message)


@node("noderun.debug.Progress", title="Progress")
async def progress(ctx: NodeContext, steps: Steps = 3, interval: Interval = 0.0) -> int:
    """Emit one int ``node_progress`` per step, ``interval`` seconds apart; outputs ``steps``."""
    for step in range(1, steps + 1):
        if interval:
            await asyncio.sleep(interval)
        ctx.progress(step, steps)
        await ctx.writable()
    return steps


@node("noderun.debug.Count", title="Count")
async def count(count: Steps = 3, interval: Interval = 0.0) -> AsyncIterator[int]:
    """A streaming node: yields 1..count, ``interval`` seconds apart."""
    for value in range(1, count + 1):
        if interval:
            await asyncio.sleep(interval)
        yield value


NODES = [sleep, blocking_sleep, fail, progress, count]
