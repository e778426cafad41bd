"""The contract between the runtime and the run stores: what both sides agree on.

``runtime`` and ``persistence`` both import this module and never each other: the
runtime sees a store only through :class:`RunStore` (implementations satisfy it
structurally) and knows a store's deliberate errors by the bases defined here.
This module imports only the standard library, msgspec and ``protocol``.

What it holds:

* :class:`RunStatus` and :class:`Refusal`: string enums whose values are what goes
  on the wire and into the database (``RunStatus("running") == "running"``).
* :class:`RunRecord` and :class:`StoredFrame`: the plain data a store keeps.
* The error bases a store raises::

      StoreError                  root: anything a store raises on purpose
      ├── RunExists               create_run for a job_id that is still running
      └── StoreUnavailable        the store cannot be reached or cannot commit now

  Stores subclass these (``noderun.persistence.errors`` draws the full tree).
* :class:`RunStore`: the protocol a durable store implements.

Frames handed to a store are the exact MessagePack bytes of the run's messages
(the bytes a binary client receives), keyed by ``(job_id, seq)``. Guarantees a
store must give (PROTOCOL.md §5):

* :meth:`RunStore.create_run` resolves its future only once the run row is committed.
* :meth:`RunStore.append` never blocks the caller: the store batches appends
  from every run and commits them together (group commit).
* :meth:`RunStore.finish` resolves its future only once every earlier append of
  that run, the terminal frame, the terminal status and the outputs are committed,
  or, when the run was failed by another server meanwhile, to the stored terminal.
* :meth:`RunStore.on_cancel_request` callbacks also fire for a run of this server
  that another server failed while this one could not reach the store: its node
  work stops, and its finish then resolves to the stored terminal.

``create_run`` and ``finish`` return futures rather than being coroutines: a
durable run on the hot path waits for its commits through callbacks, without a
task per run.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import msgspec

__all__ = [
    "TERMINAL_STATUSES",
    "Refusal",
    "RunExists",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "StoreError",
    "StoreUnavailable",
    "StoredFrame",
    "store_key",
    "wire_job_id",
]


def store_key(user_id: str, job_id: str) -> str:
    """The key a durable run is stored under: its job id scoped to its user.

    Job ids are chosen by clients, so two users may pick the same one; the store's
    key is unique, so it carries the user too, and one user's id never meets
    another's row. User ids never contain ``/`` (``noderun.server.auth``), so the
    key is unambiguous. The wire keeps the client's job id.
    """
    return f"{user_id}/{job_id}"


def wire_job_id(key: str, user_id: str) -> str:
    """The client's job id of a run stored under ``key`` by ``user_id`` (a row written
    before keys were scoped is its own job id)."""
    prefix = f"{user_id}/"
    return key[len(prefix) :] if key.startswith(prefix) else key


class RunStatus(enum.StrEnum):
    """A run's status as clients and stores see it (the ``status`` of ``job_update``)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: The statuses a run ends in: exactly one terminal ``job_update`` carries one of them.
TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class Refusal(enum.StrEnum):
    """Why a ``run_job`` was refused before its run started (the error frame's code)."""

    INVALID_JOB_ID = "invalid_job_id"
    JOB_ALREADY_RUNNING = "job_already_running"
    SERVER_BUSY = "server_busy"
    TOO_MANY_RUNS = "too_many_runs"
    STORE_UNAVAILABLE = "store_unavailable"


class RunRecord(msgspec.Struct, kw_only=True):
    """One durable run, as a store keeps it.

    ``status`` holds a :class:`RunStatus` value; a store reading it back may hand
    out the plain string, which compares equal.
    """

    job_id: str
    workflow_id: str
    user_id: str
    status: str
    server_id: str = ""
    created_at: float = 0.0
    finished_at: float | None = None
    last_seq: int = 0
    error: str | None = None
    #: MessagePack bytes of the terminal frame once the run is finished.
    terminal_frame: bytes | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class StoredFrame(msgspec.Struct, array_like=True):
    """One committed message of a run: its ``job_seq`` and exact MessagePack bytes."""

    seq: int
    frame: bytes


class StoreError(Exception):
    """Root of every error a run store raises on purpose."""


class RunExists(StoreError):
    """A run with this ``job_id`` is still running, so it cannot be created again."""

    def __init__(self, job_id: str, status: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(f"run {job_id!r} already exists with status {status!r}")


class StoreUnavailable(StoreError):
    """The store cannot be reached or cannot commit right now (maybe later)."""

    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__(f"{backend} store unavailable: {reason}")


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
        Fails fast with :class:`StoreUnavailable`.
        """
        ...

    async def close(self) -> None:
        """Flush pending appends, then release connections and background tasks."""
        ...

    def create_run(self, record: RunRecord) -> asyncio.Future[None]:
        """Queue a new run row (status ``running``, owned by this server) for commit.

        The future fails with :class:`RunExists` when a non-terminal run with this
        ``job_id`` exists (a finished run with the same id is replaced), and with
        :class:`StoreUnavailable` when the row cannot be committed in time.
        Cancelling it before the commit withdraws the row.
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
    ) -> asyncio.Future[StoredFrame | None]:
        """Queue the terminal frame and status (a terminal :class:`RunStatus`), after
        all earlier appends of the run.

        The future resolves to ``None`` once this terminal is committed as the run's,
        or to the terminal the store holds when this server no longer owned the run
        (its lease lapsed and another server failed the run): the caller publishes
        that one instead (PROTOCOL.md §5, one truth per run). It fails with
        :class:`StoreUnavailable` when the commit takes longer than the store's finish
        timeout (the finish stays queued and commits later); ``patient`` waits for it
        instead.
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
