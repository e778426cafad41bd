"""The runner pool: long-lived threads, each running its own event loop.

Blocking (plain ``def``) nodes run here so they never stall the server's loop.
Every runner is created by :meth:`RunnerPool.start` and lives until
:meth:`RunnerPool.close`: nothing is started per job.

Backpressure: a runner runs one blocking call at a time. When all are busy,
callers wait in FIFO order for the next free runner (the wait is bounded only
by the server's cap on concurrent runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

import structlog

__all__ = ["RunnerPool"]

T = TypeVar("T")
log = structlog.get_logger(__name__)


class _Runner:
    """One thread with its own event loop, created once."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(
            target=self._main, name=f"noderun-runner-{index}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        if not self._ready.wait(5.0):
            raise RuntimeError(f"runner {self.index} did not start")

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed
            self.loop.call_soon_threadsafe(self.loop.stop)


class RunnerPool:
    """``size`` runner threads; :meth:`call` runs a blocking function on a free one."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a runner pool needs at least one runner")
        self.size = size
        self._runners: list[_Runner] = []
        self._idle: asyncio.Queue[_Runner] | None = None
        self._busy = 0
        self._closed = False
        self._drained = asyncio.Event()
        self._drained.set()

    @property
    def busy(self) -> int:
        return self._busy

    async def start(self) -> None:
        """Start every runner; fails loudly if one cannot start."""
        self._idle = asyncio.LifoQueue(maxsize=self.size)
        try:
            for index in range(self.size):
                runner = _Runner(index)
                runner.start()
                self._runners.append(runner)
                self._idle.put_nowait(runner)
        except BaseException:
            self._stop_all()
            raise

    async def call(self, fn: Callable[..., T], kwargs: Mapping[str, object]) -> T:
        """Run ``fn(**kwargs)`` on a runner thread and return its result.

        If the caller is cancelled, the call still finishes on its thread (a
        thread cannot be interrupted); the runner is released only then.
        """
        if self._idle is None or self._closed:
            raise RuntimeError("the runner pool is not running")
        runner = await self._idle.get()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        idle = self._idle
        self._busy += 1
        self._drained.clear()

        def finish(result: T | None, error: BaseException | None) -> None:
            # On the server loop: release first, so a cancelled caller can't leak a runner.
            self._busy -= 1
            idle.put_nowait(runner)
            if not self._busy:
                self._drained.set()
            if done.cancelled():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)  # type: ignore[arg-type]

        def work() -> None:
            try:
                result = fn(**kwargs)
            except BaseException as exc:
                loop.call_soon_threadsafe(finish, None, exc)
            else:
                loop.call_soon_threadsafe(finish, result, None)

        runner.loop.call_soon_threadsafe(work)
        return await done

    async def close(self, deadline: float = 5.0) -> None:
        """Stop taking calls, wait up to ``deadline`` s for busy runners, then stop them."""
        self._closed = True
        try:
            await asyncio.wait_for(self._drained.wait(), deadline)
        except TimeoutError:
            log.warning("runner_pool.close_timeout", busy=self._busy)
        self._stop_all()

    def _stop_all(self) -> None:
        for runner in self._runners:
            runner.stop()
        for runner in self._runners:
            runner.thread.join(timeout=1.0)
        self._runners.clear()
