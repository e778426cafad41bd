"""What the runtime needs from a durable run store.

The runtime sees a store only through this :class:`RunStore` protocol; the
implementations live in :mod:`noderun.persistence` and satisfy it structurally,
so ``runtime`` never imports ``persistence``.

Frames handed to a store are the exact MessagePack bytes of the run's messages
(the bytes a binary client receives), keyed by ``(job_id, seq)``.

Guarantees a store must give (PROTOCOL.md §5):

* :meth:`RunStore.create_run` resolves its future only once the run row is committed.
* :meth:`RunStore.append` never blocks the caller: the store batches appends
  from every run and commits them together (group commit).
* :meth:`RunStore.finish` resolves its future only once every earlier append of
  that run, the terminal frame, the terminal status and the outputs are committed.

``create_run`` and ``finish`` return futures rather than being coroutines: a
durable run on the hot path waits for its commits through callbacks, without a
task per run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from noderun.protocol.records import RunRecord, StoredFrame

__all__ = ["RunStore"]


class RunStore(Protocol):
    """A durable store of runs and their messages."""

    @property
    def server_id(self) -> str:
        """The stable id of this server process in the store (owner of its runs)."""
        ...

    async def start(self) -> None:
        """Connect, create or migrate the schema, and recover interrupted runs.

        Runs left ``running`` by this server id, or by servers whose lease
        expired, are marked ``failed`` with ``interrupted: server stopped``.
        Fails fast with :class:`noderun.persistence.errors.StoreUnavailable`.
        """
        ...

    async def close(self) -> None:
        """Flush pending appends, then release connections and background tasks."""
        ...

    def create_run(self, record: RunRecord) -> asyncio.Future[None]:
        """Queue a new run row (status ``running``, owned by this server) for commit.

        The future fails with ``RunExists`` when a non-terminal run with this
        ``job_id`` exists (a finished run with the same id is replaced), and with
        ``StoreUnavailable`` when the row cannot be committed in time. Cancelling
        it before the commit withdraws the row.
        """
        ...

    def append(self, job_id: str, seq: int, frame: bytes) -> None:
        """Queue one message of a run for the next group commit (never blocks)."""
        ...

    def finish(
        self,
        job_id: str,
        status: str,
        seq: int,
        frame: bytes,
        error: str | None,
        *,
        patient: bool = False,
    ) -> asyncio.Future[None]:
        """Queue the terminal frame and status, after all earlier appends of the run.

        The future fails with ``StoreUnavailable`` when the commit takes longer than
        the store's finish timeout (the finish stays queued and commits later);
        ``patient`` waits for it instead.
        """
        ...

    async def get_run(self, job_id: str) -> RunRecord | None:
        """The run row, or ``None`` when unknown (or deleted by retention)."""
        ...

    async def read_frames(self, job_id: str, after_seq: int) -> list[StoredFrame]:
        """Committed frames of a run with ``seq > after_seq``, in ``seq`` order."""
        ...

    def follow(self, job_id: str, after_seq: int) -> AsyncIterator[StoredFrame]:
        """Committed frames after ``after_seq``, then new ones as they commit,
        ending after the terminal frame (or when the run row disappears)."""
        ...

    async def request_cancel(self, job_id: str) -> bool:
        """Ask the server owning a running durable run to cancel it.

        Returns ``False`` when the run is unknown or already finished.
        """
        ...

    def on_cancel_request(self, callback: Callable[[str], None]) -> None:
        """Register the callback this server runs when a cancel for one of its runs arrives."""
        ...

    async def delete_finished_before(self, cutoff: float) -> int:
        """Delete finished runs (and their frames) that ended before ``cutoff`` (unix s)."""
        ...
