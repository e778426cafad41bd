"""Waiting for something that must happen, without sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tests.support.timing import SECOND, TIMEOUT

__all__ = ["eventually", "eventually_blocking"]

_T = TypeVar("_T")

#: Between two looks; short, as what a test waits for is usually quick.
_POLL = SECOND / 50


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    within: float = TIMEOUT,
    *,
    explain: Callable[[], str] | None = None,
) -> None:
    """Return as soon as ``check()`` (plain or async) is true; fail after ``within`` seconds,
    with ``explain()`` (a server's log, say) in the message.

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
            raise AssertionError(_failure(within, explain))
        await asyncio.sleep(_POLL)


def eventually_blocking(
    check: Callable[[], _T], within: float = TIMEOUT, *, explain: Callable[[], str] | None = None
) -> _T:
    """The first truthy ``check()``; fail after ``within`` seconds, with ``explain()`` (a
    server's log, say) in the message.

    :func:`eventually` for code without an event loop: a test that drives a server process
    or a server thread from plain functions. It blocks the calling thread while it polls.
    """
    deadline = time.monotonic() + within
    while True:
        held = check()
        if held:
            return held
        if time.monotonic() > deadline:
            raise AssertionError(_failure(within, explain))
        time.sleep(_POLL)


def _failure(within: float, explain: Callable[[], str] | None) -> str:
    detail = f":\n{explain()}" if explain is not None else ""
    return f"condition not met within {within}s{detail}"
