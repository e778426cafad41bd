"""Per-run wake-ups for followers inside one process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

__all__ = ["Waiters"]


class Waiters:
    """Sets of :class:`asyncio.Event`, one per follower, keyed by ``job_id``.

    A follower registers *before* reading, then clears its event before each read and
    waits on it after: a commit that lands between the read and the wait is not lost.
    """

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}

    def register(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(job_id, set()).add(event)
        return event

    def unregister(self, job_id: str, event: asyncio.Event) -> None:
        events = self._events.get(job_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[job_id]

    def __bool__(self) -> bool:
        """Whether anyone follows a run at all (most commits have nobody to wake)."""
        return bool(self._events)

    def wake(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for event in self._events.get(job_id, ()):
                event.set()

    def wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._events
