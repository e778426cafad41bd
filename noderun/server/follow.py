"""Following a durable run that this process does not hold (PROTOCOL.md §4-5).

The run may live on another server of the fleet, or may have ended before a
crash: its committed frames are replayed from the store after the client's
position, then new ones follow live until the terminal frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import structlog

from noderun.contract import RunStore, store_key
from noderun.protocol.codec import Outbound
from noderun.protocol.server import JobResumed
from noderun.runtime.run import Subscriber

__all__ = ["DurableFollower", "Replayer"]


class Replayer(Subscriber, Protocol):
    """A subscriber that also takes replayed messages (past its outbound limit)."""

    def replay(self, item: Outbound) -> None: ...


log = structlog.get_logger(__name__)


class DurableFollower:
    """Replays then follows one stored run for one subscriber."""

    def __init__(
        self,
        store: RunStore,
        job_id: str,
        after_seq: int,
        subscriber: Replayer,
        user_id: str,
    ) -> None:
        self._store = store
        self._user_id = user_id
        self.job_id = job_id
        self._key = store_key(user_id, job_id)
        self._after = after_seq
        self._subscriber = subscriber
        self._task: asyncio.Task[None] | None = None
        self._done_callbacks: list[Callable[[], None]] = []

    async def start(self, workflow_id: str | None) -> bool:
        """Send ``job_resumed`` and the replay; ``False`` when the store has no such run
        (or it is another user's)."""
        store = self._store
        # Scoped by user: another user's run with this id is another row.
        record = await store.get_run(self._key)
        if record is None or record.user_id != self._user_id:
            return False
        frames = await store.read_frames(self._key, self._after)
        resend_terminal = (
            record.finished
            and record.terminal_frame is not None
            and (not frames or frames[-1].frame != record.terminal_frame)
        )
        deliver = self._subscriber.replay
        deliver(
            Outbound(
                JobResumed(
                    job_id=self.job_id,
                    workflow_id=record.workflow_id or workflow_id or "",
                    status=record.status,
                    last_seq=max(record.last_seq, frames[-1].seq if frames else 0),
                    replay_count=len(frames) + (1 if resend_terminal else 0),
                    replay_incomplete=False,
                )
            )
        )
        last = self._after
        for stored in frames:
            deliver(Outbound.from_msgpack(stored.seq, stored.frame))
            last = stored.seq
        if record.finished:
            if resend_terminal and record.terminal_frame is not None:
                deliver(Outbound.from_msgpack(record.last_seq, record.terminal_frame))
            self._finish()
            return True
        self._task = asyncio.get_running_loop().create_task(self._follow(last))
        self._task.add_done_callback(lambda _task: self._finish())
        return True

    async def _follow(self, after: int) -> None:
        deliver = self._subscriber.deliver
        try:
            async for stored in self._store.follow(self._key, after):
                deliver(Outbound.from_msgpack(stored.seq, stored.frame))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("follower.failed", job_id=self.job_id, error=str(exc))

    def on_done(self, callback: Callable[[], None]) -> None:
        self._done_callbacks.append(callback)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _finish(self) -> None:
        callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            callback()
