"""Who may run now: in-flight runs per user and per connection, and each user's queue
of runs waiting for a slot (PROTOCOL.md §7).

A run holds a slot from its start to its terminal. Past ``per_user`` runs of its
user or ``per_connection`` runs of its connection, a new run waits in its user's
queue; past ``queued_per_user`` waiting runs it is refused (named overflow
policy: queue, then reject). When a slot frees, the user's queue is walked from
the head and the first run whose connection has room starts: FIFO per user,
except that a run held back only by its own connection's limit lets the runs
behind it pass. Every run still waiting is told its new position.

A queued run does not depend on its connection (PROTOCOL.md §4): when the client
leaves it stays queued, detached, and is cancelled after the detach grace
period like any detached run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from noderun.runtime.run import Run

__all__ = ["Admission", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    per_connection: int = 100
    per_user: int = 1000
    queued_per_user: int = 1000


class Admission:
    """In-flight counts and wait queues; the hub calls it, it starts queued runs."""

    __slots__ = ("_by_connection", "_by_user", "_limits", "_promoting", "_queues", "closed")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._by_user: dict[str, int] = {}
        self._by_connection: dict[object, int] = {}
        self._queues: dict[str, deque[Run]] = {}
        self._promoting = False
        #: Set on shutdown: nothing queued starts any more.
        self.closed = False

    def acquire(self, user_id: str, connection: object) -> str | None:
        """Take a slot for a new run of ``user_id`` on ``connection``: ``None`` when taken
        (the caller marks its run ``admitted``), else the limit that holds it back.

        No queued run is passed over here: every release starts whatever it can, so a
        run still queued while its user has room is held by its own connection.
        """
        limits = self._limits
        by_user = self._by_user
        count = by_user.get(user_id, 0)
        if count >= limits.per_user:
            return f"{limits.per_user} runs of this user in flight"
        if connection is not None:
            by_connection = self._by_connection
            held = by_connection.get(connection, 0)
            if held >= limits.per_connection:
                return f"{limits.per_connection} runs of this connection in flight"
            by_connection[connection] = held + 1
        by_user[user_id] = count + 1
        return None

    def give_back(self, user_id: str, connection: object) -> None:
        """Return a slot taken by :meth:`acquire`."""
        by_user = self._by_user
        left = by_user[user_id] - 1
        if left:
            by_user[user_id] = left
        else:
            del by_user[user_id]
        if connection is not None:
            by_connection = self._by_connection
            left = by_connection[connection] - 1
            if left:
                by_connection[connection] = left
            else:
                del by_connection[connection]

    def queue_full(self, user_id: str) -> bool:
        queue = self._queues.get(user_id)
        return queue is not None and len(queue) >= self._limits.queued_per_user

    def _take(self, run: Run) -> None:
        run.admitted = True
        user_id = run.user_id
        self._by_user[user_id] = self._by_user.get(user_id, 0) + 1
        connection = run.connection
        if connection is not None:
            self._by_connection[connection] = self._by_connection.get(connection, 0) + 1

    def enqueue(self, run: Run) -> None:
        """Queue ``run`` (the caller checked :meth:`queue_full`) and tell it its position."""
        queue = self._queues.setdefault(run.user_id, deque())
        queue.append(run)
        run.waiting = True
        run.queued(len(queue))

    def release(self, run: Run, start: Callable[[Run], None]) -> None:
        """``run`` ended: free its slot (or its place in the queue) and start whoever may."""
        user_id = run.user_id
        if run.admitted:
            run.admitted = False
            # give_back(), written out: this runs once per run.
            by_user = self._by_user
            left = by_user[user_id] - 1
            if left:
                by_user[user_id] = left
            else:
                del by_user[user_id]
            connection = run.connection
            if connection is not None:
                by_connection = self._by_connection
                left = by_connection[connection] - 1
                if left:
                    by_connection[connection] = left
                else:
                    del by_connection[connection]
            if self._queues:
                self._promote(user_id, start)
        else:
            queue = self._queues.get(user_id)
            if queue is not None and run in queue:
                queue.remove(run)
                self._renumber(user_id, queue)

    def _promote(self, user_id: str, start: Callable[[Run], None]) -> None:
        queue = self._queues.get(user_id)
        if not queue or self.closed or self._promoting:
            return
        # A started run may finish within start() and release its slot again: that
        # nested call leaves the promoting to this loop (no recursion as deep as the
        # queue), which re-reads the counts on every turn.
        self._promoting = True
        try:
            moved = self._start_eligible(user_id, queue, start)
        finally:
            self._promoting = False
        if not queue:
            self._queues.pop(user_id, None)
        elif moved:
            self._renumber(user_id, queue)

    def _start_eligible(
        self, user_id: str, queue: deque[Run], start: Callable[[Run], None]
    ) -> bool:
        limits = self._limits
        moved = False
        while queue and self._by_user.get(user_id, 0) < limits.per_user:
            chosen = None
            for run in queue:
                connection = run.connection
                if connection is None or self._by_connection.get(connection, 0) < (
                    limits.per_connection
                ):
                    chosen = run
                    break
            if chosen is None:
                break
            queue.remove(chosen)
            chosen.waiting = False
            self._take(chosen)
            moved = True
            start(chosen)
            if self.closed:
                break
        return moved

    def _renumber(self, user_id: str, queue: deque[Run]) -> None:
        if not queue:
            self._queues.pop(user_id, None)
            return
        if self.closed:
            return  # shutting down: every queued run is being cancelled
        for position, run in enumerate(queue, 1):
            run.queued(position)
