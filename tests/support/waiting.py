"""Waiting for something that must happen, without sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from tests.support.timing import SECOND, TIMEOUT

__all__ = ["eventually"]

#: Between two looks; short, as what a test waits for is usually quick.
_POLL = SECOND / 50


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = TIMEOUT) -> None:
    """Return as soon as ``check()`` (plain or async) is true; fail after ``within`` seconds.

    For what a test cannot await directly (a fake's counter, a row in a store): it polls,
    so it is as quick as the thing it waits for and waits as long as a slow machine needs.
    """
    deadline = time.monotonic() + within
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(_POLL)
