"""The runner pool with real blocking calls: results, FIFO capacity, abandoning a
runner to a cancelled call (issue 12.5), its bound, and closing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from structlog.testing import capture_logs

from noderun.runtime.pool import RunnerPool
from tests.support.timing import TIMEOUT


class Gate:
    """A real blocking call: ``block()`` holds its thread on a ``threading.Event``.

    ``entered`` (awaitable on the test's loop) counts the calls that are blocked now.
    """

    def __init__(self) -> None:
        self._open = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._entered = 0
        self._changed = asyncio.Event()
        self.threads: list[threading.Thread] = []

    def block(self, value: object = None) -> object:
        self.threads.append(threading.current_thread())
        self._loop.call_soon_threadsafe(self._enter)
        if not self._open.wait(TIMEOUT * 4):
            raise TimeoutError("the gate was never opened")
        return value

    def _enter(self) -> None:
        self._entered += 1
        self._changed.set()

    async def entered(self, count: int) -> None:
        async def wait() -> None:
            while self._entered < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), TIMEOUT)

    def open(self) -> None:
        self._open.set()


@asynccontextmanager
async def running(size: int, **options: int) -> AsyncIterator[RunnerPool]:
    pool = RunnerPool(size, **options)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close(deadline=TIMEOUT)


async def joined(thread: threading.Thread) -> bool:
    """Whether ``thread`` ended within TIMEOUT (joined off the loop)."""
    await asyncio.to_thread(thread.join, TIMEOUT)
    return not thread.is_alive()


async def test_a_call_runs_on_a_runner_thread_and_returns_its_result() -> None:
    async with running(2) as pool:
        name = await pool.call(lambda: threading.current_thread().name, {})
        assert name.startswith("noderun-runner-")
        assert await pool.call(lambda a, b: a + b, {"a": 2, "b": 3}) == 5
        assert pool.busy == 0 and pool.started == 2


async def test_an_exception_reaches_the_caller_and_the_runner_stays() -> None:
    def boom() -> None:
        raise ValueError("boom")

    async with running(1) as pool:
        with pytest.raises(ValueError, match="boom"):
            await pool.call(boom, {})
        assert await pool.call(lambda: "again", {}) == "again"
        assert pool.started == 1 and pool.abandoned == 0


async def test_callers_past_the_pool_size_wait_for_a_free_runner() -> None:
    gate = Gate()
    async with running(1) as pool:
        first = asyncio.ensure_future(pool.call(gate.block, {"value": 1}))
        await gate.entered(1)
        second = asyncio.ensure_future(pool.call(lambda: 2, {}))
        await asyncio.sleep(0)
        assert not second.done() and pool.busy == 1
        gate.open()
        results = await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)
        assert list(results) == [1, 2]


async def test_a_cancelled_blocking_call_gives_its_runner_up_and_a_new_one_serves() -> None:
    """Issue 12.5: the thread blocks on, but the next call does not wait for it."""
    gate = Gate()
    async with running(1) as pool:
        with capture_logs() as logs:
            blocked = asyncio.ensure_future(pool.call(gate.block, {}))
            await gate.entered(1)
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked
            # The blocked thread is still in its call, and yet:
            assert await asyncio.wait_for(pool.call(lambda: "next", {}), TIMEOUT) == "next"
        abandoned_thread = gate.threads[0]
        assert abandoned_thread.is_alive()
        assert (pool.abandoned, pool.abandoned_alive, pool.started) == (1, 1, 2)
        assert pool.busy == 0
        assert [entry["event"] for entry in logs] == ["runner_pool.runner_abandoned"]
        gate.open()
        assert await joined(abandoned_thread)  # it exits once its call returns
        assert pool.abandoned_alive == 0


async def test_past_max_abandoned_a_cancelled_call_keeps_its_runner() -> None:
    gate = Gate()
    async with running(1, max_abandoned=1) as pool:
        first = asyncio.ensure_future(pool.call(gate.block, {}))
        await gate.entered(1)
        first.cancel()  # abandoned: a replacement starts
        await asyncio.wait({first})
        second = asyncio.ensure_future(pool.call(gate.block, {}))
        await gate.entered(2)
        with capture_logs() as logs:
            second.cancel()  # the bound is reached: the runner stays with its call
            await asyncio.wait({second})
        assert (pool.abandoned, pool.abandon_refused, pool.started) == (1, 1, 2)
        assert [entry["event"] for entry in logs] == ["runner_pool.abandon_refused"]
        third = asyncio.ensure_future(pool.call(lambda: "third", {}))
        await asyncio.sleep(0)
        assert not third.done()  # no free runner until the kept call returns
        gate.open()
        assert await asyncio.wait_for(third, TIMEOUT) == "third"
        assert await joined(gate.threads[0])
        assert pool.abandoned_alive == 0 and pool.busy == 0


async def test_cancelling_a_caller_still_waiting_for_a_runner_abandons_nothing() -> None:
    gate = Gate()
    async with running(1) as pool:
        first = asyncio.ensure_future(pool.call(gate.block, {"value": "first"}))
        await gate.entered(1)
        waiting = asyncio.ensure_future(pool.call(lambda: "never", {}))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.wait({waiting})
        assert pool.abandoned == 0 and pool.started == 1
        gate.open()
        assert await asyncio.wait_for(first, TIMEOUT) == "first"


async def test_close_stops_waiting_for_a_blocked_call_after_its_deadline() -> None:
    gate = Gate()
    pool = RunnerPool(1)
    await pool.start()
    blocked = asyncio.ensure_future(pool.call(gate.block, {}))
    await gate.entered(1)
    with capture_logs() as logs:
        await pool.close(deadline=0.01)
    assert [entry["event"] for entry in logs] == ["runner_pool.close_timeout"]
    with pytest.raises(RuntimeError, match="not running"):
        await pool.call(lambda: None, {})
    gate.open()
    assert await asyncio.wait_for(blocked, TIMEOUT) is None
    assert await joined(gate.threads[0])  # told to stop once its call returned


async def test_close_ends_idle_runner_threads() -> None:
    pool = RunnerPool(2)
    await pool.start()
    threads: list[threading.Thread] = []
    for _ in range(2):
        threads.append(await pool.call(threading.current_thread, {}))
    await pool.close()
    assert all([await joined(thread) for thread in threads])


async def test_a_pool_must_be_started_and_sized() -> None:
    with pytest.raises(ValueError):
        RunnerPool(0)
    with pytest.raises(ValueError):
        RunnerPool(1, max_abandoned=-1)
    never_started = RunnerPool(1)
    call: Callable[[], None] = lambda: None  # noqa: E731
    with pytest.raises(RuntimeError, match="not running"):
        await never_started.call(call, {})
