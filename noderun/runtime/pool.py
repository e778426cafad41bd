"""The runner pool: long-lived plain threads for blocking node calls.

Blocking (plain ``def``) nodes run here so they never stall the server's loop.
A runner is a plain thread that takes one call at a time from its own inbox and
hands the outcome back to the server loop. It runs no event loop: a blocking
call needs none, and a node that awaits is an ``async def`` node on the server
loop. Runners are started by :meth:`RunnerPool.start` and live until
:meth:`RunnerPool.close`: nothing is started per job.

Backpressure: a runner runs one blocking call at a time. When all are busy,
callers wait in FIFO order for the next free runner (the wait is bounded only
by the server's cap on concurrent runs).

A thread cannot be interrupted. When the caller of a blocking call is cancelled
(its run was cancelled, failed elsewhere, or was left alone too long) the pool
*abandons* that runner: the thread finishes the call on its own, its outcome is
dropped and it exits, while a new runner takes its place at once. A call that
never returns therefore holds no capacity. At most ``max_abandoned`` abandoned
threads may be alive at once (each is a thread stuck in somebody's code); past
that, a cancelled call keeps its runner until it returns. Both are logged and
counted in plain integer attributes (:attr:`RunnerPool.started`,
:attr:`~RunnerPool.abandoned`, :attr:`~RunnerPool.abandoned_alive`,
:attr:`~RunnerPool.abandon_refused`) that a metrics collector can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

import structlog

__all__ = ["RunnerPool"]

T = TypeVar("T")
log = structlog.get_logger(__name__)

#: Abandoned runner threads that may be alive at once, by default.
DEFAULT_MAX_ABANDONED = 32

_Job = Callable[[], None]


class _Runner:
    """One plain thread running the jobs put in its inbox; ``None`` stops it."""

    __slots__ = ("abandoned", "busy", "inbox", "thread")

    def __init__(self, index: int) -> None:
        self.inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Both only touched on the server loop.
        self.busy = False
        self.abandoned = False
        self.thread = threading.Thread(
            target=self._main, args=(self.inbox,), name=f"noderun-runner-{index}", daemon=True
        )

    @staticmethod
    def _main(inbox: queue.SimpleQueue[_Job | None]) -> None:
        while (job := inbox.get()) is not None:
            job()


class RunnerPool:
    """``size`` runner threads; :meth:`call` runs a blocking function on a free one."""

    def __init__(self, size: int, *, max_abandoned: int = DEFAULT_MAX_ABANDONED) -> None:
        if size < 1:
            raise ValueError("a runner pool needs at least one runner")
        if max_abandoned < 0:
            raise ValueError("max_abandoned cannot be negative")
        self.size = size
        self.max_abandoned = max_abandoned
        #: Runner threads started so far, replacements included.
        self.started = 0
        #: Runners given up to a cancelled call so far.
        self.abandoned = 0
        #: Abandoned runners whose call has not returned yet.
        self.abandoned_alive = 0
        #: Cancelled calls that kept their runner because ``max_abandoned`` were alive.
        self.abandon_refused = 0
        self._runners: list[_Runner] = []
        self._idle: asyncio.LifoQueue[_Runner] | None = None
        self._busy = 0
        self._closed = False
        self._drained = asyncio.Event()
        self._drained.set()

    @property
    def busy(self) -> int:
        """Runners running a call for a caller that still waits for it."""
        return self._busy

    async def start(self) -> None:
        """Start every runner; fails loudly if one cannot start."""
        self._idle = asyncio.LifoQueue()
        try:
            for _ in range(self.size):
                self._idle.put_nowait(self._spawn())
        except BaseException:
            self._stop_all()
            raise

    async def call(self, fn: Callable[..., T], kwargs: Mapping[str, object]) -> T:
        """Run ``fn(**kwargs)`` on a runner thread and return its result.

        If the caller is cancelled, the call still finishes on its thread; the
        runner is abandoned and replaced (see the module docstring).
        """
        idle = self._idle
        if idle is None or self._closed:
            raise RuntimeError("the runner pool is not running")
        runner = await idle.get()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def finish(result: T | None, error: BaseException | None) -> None:
            # On the server loop: release first, so a cancelled caller can't leak a runner.
            self._release(runner)
            if done.cancelled():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)  # type: ignore[arg-type]

        def work() -> None:
            try:
                outcome: tuple[T | None, BaseException | None] = (fn(**kwargs), None)
            except BaseException as exc:
                outcome = (None, exc)
            # RuntimeError: the loop is closed, nobody waits for this outcome any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(finish, *outcome)

        runner.busy = True
        self._busy += 1
        self._drained.clear()
        runner.inbox.put(work)
        try:
            return await done
        except asyncio.CancelledError:
            if runner.busy:
                self._abandon(runner)
            raise

    def _release(self, runner: _Runner) -> None:
        runner.busy = False
        if runner.abandoned:
            self.abandoned_alive -= 1
            runner.inbox.put(None)
            log.info("runner_pool.abandoned_runner_done", runner=runner.thread.name)
            return
        self._busy -= 1
        if not self._busy:
            self._drained.set()
        if self._closed:
            runner.inbox.put(None)
            return
        assert self._idle is not None
        self._idle.put_nowait(runner)

    def _abandon(self, runner: _Runner) -> None:
        """Give ``runner`` up to its cancelled call and start a replacement."""
        if self._closed or self.abandoned_alive >= self.max_abandoned:
            self.abandon_refused += 1
            log.warning(
                "runner_pool.abandon_refused",
                runner=runner.thread.name,
                abandoned_alive=self.abandoned_alive,
                max_abandoned=self.max_abandoned,
            )
            return
        try:
            replacement = self._spawn()
        except RuntimeError as exc:  # no thread to be had: keep the runner
            self.abandon_refused += 1
            log.error("runner_pool.replacement_failed", runner=runner.thread.name, error=str(exc))
            return
        runner.abandoned = True
        self._runners.remove(runner)
        self.abandoned += 1
        self.abandoned_alive += 1
        self._busy -= 1
        if not self._busy:
            self._drained.set()
        assert self._idle is not None
        self._idle.put_nowait(replacement)
        log.warning(
            "runner_pool.runner_abandoned",
            runner=runner.thread.name,
            replacement=replacement.thread.name,
            abandoned_alive=self.abandoned_alive,
        )

    def _spawn(self) -> _Runner:
        runner = _Runner(self.started)
        runner.thread.start()
        self.started += 1
        self._runners.append(runner)
        return runner

    async def close(self, deadline: float = 5.0) -> None:
        """Stop taking calls, wait up to ``deadline`` s for busy runners, then stop them.

        Abandoned runners are not waited for: they end when their call returns.
        """
        self._closed = True
        try:
            await asyncio.wait_for(self._drained.wait(), deadline)
        except TimeoutError:
            log.warning("runner_pool.close_timeout", busy=self._busy)
        self._stop_all()

    def _stop_all(self) -> None:
        """Stop every runner: idle ones at once, busy ones once their call returns."""
        idle = [runner for runner in self._runners if not runner.busy]
        for runner in self._runners:
            runner.inbox.put(None)
        for runner in idle:
            runner.thread.join(timeout=1.0)
        self._runners.clear()
