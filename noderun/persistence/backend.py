"""What a database must provide to hold runs: the :class:`Backend` protocol.

:class:`~noderun.persistence.store.Store` does everything that does not depend on the
database (group commit, fencing, recovery schedule, heartbeat, followers, cancel
delivery) and calls a backend for each transaction. There is one backend per database:
:class:`~noderun.persistence.sqlite.SqliteBackend` and
:class:`~noderun.persistence.postgres.PostgresBackend`.

A backend learns who writes (the server id and this start's epoch) and where to report
signals from the database when the store opens it, as an :class:`Owner`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from noderun.contract import RunRecord, StoredFrame
from noderun.persistence.errors import StoreError
from noderun.persistence.groupcommit import Create, Item
from noderun.persistence.health import Health
from noderun.persistence.options import StoreOptions

__all__ = ["Backend", "Owner", "Written"]

#: What a backend's commit returns: the creates it refused (and why), and the job ids
#: of the batch's appends and finishes it dropped because their run no longer runs here.
Written = tuple[Mapping[Create, StoreError], Collection[str]]


@dataclass(frozen=True, slots=True, eq=False)
class Owner:
    """This start of a server, as its backend sees it: who writes, and whom to tell."""

    server_id: str
    #: This incarnation of the server id: the runs it creates carry it, and only its
    #: own runs take its writes. A restart with the same id is another owner.
    epoch: int
    health: Health
    #: Another process committed frames of these runs: their followers look again.
    wake: Callable[[Iterable[str]], None]
    #: A cancel was requested for this run of this server.
    cancel: Callable[[str], None]
    #: Signals may have been lost (the notification connection came back): catch up.
    catch_up: Callable[[], Awaitable[None]]


class Backend(Protocol):
    """One database's transactions; every method but the properties may raise
    :class:`~noderun.persistence.errors.StoreError` (``StoreUnavailable`` when the
    database cannot be reached)."""

    #: ``"sqlite"`` or ``"postgres"``: in logs and in errors.
    name: str
    options: StoreOptions

    @property
    def follow_poll(self) -> float | None:
        """How often a follower looks for frames committed by other processes, or
        ``None`` when the backend wakes followers itself (``Owner.wake``)."""
        ...

    @property
    def cancel_poll(self) -> float | None:
        """How often the owner of running runs looks for cancel requests, or ``None``
        when the backend delivers them itself (``Owner.cancel``)."""
        ...

    async def open(self, owner: Owner) -> None:
        """Connect, create or migrate the schema, and claim ``owner``'s server id (raise
        ServerIdInUse while another live server holds it); raise StoreUnavailable fast."""
        ...

    async def close(self) -> None:
        """Release connections and threads (never raises StoreError)."""
        ...

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """Long-lived tasks the backend needs while open, as ``(name, coroutine)``."""
        ...

    async def sweep(self, *, starting: bool) -> list[str]:
        """Refresh this server's lease and fail the runs of dead servers as interrupted
        (``starting``: also the runs an earlier start of this server id left running)."""
        ...

    async def interrupt_runs(self, job_ids: Sequence[str]) -> list[str]:
        """Fail these runs of this owner that are still running, as interrupted."""
        ...

    async def retire(self) -> list[str]:
        """Interrupt this owner's runs that are still running; drop its lease row."""
        ...

    async def commit(self, batch: Sequence[Item]) -> Written:
        """Commit a batch in one transaction (see groupcommit for the error contract).

        Creates come first: each inserts its row, replacing a finished run of that id
        and its frames; a create whose id is running (or created earlier in the batch)
        is refused with ``RunExists`` in the returned mapping, not raised. Appends and
        finishes of runs that are not running here are dropped; their job ids are
        returned.
        """
        ...

    async def not_running_here(self, job_ids: Sequence[str]) -> list[str]:
        """Those of these runs that are not running here (any more)."""
        ...

    async def terminals(self, job_ids: Sequence[str]) -> dict[str, StoredFrame]:
        """The stored terminal frames of those of these runs that have one."""
        ...

    async def get_run(self, job_id: str) -> RunRecord | None: ...

    async def read_frames(self, job_id: str, after_seq: int) -> list[StoredFrame]: ...

    async def read_tail(
        self, job_id: str, after_seq: int
    ) -> tuple[RunRecord | None, list[StoredFrame]]:
        """The run row, *then* its frames after ``after_seq`` (that order matters)."""
        ...

    async def request_cancel(self, job_id: str) -> str | None:
        """Flag a running run for cancel and notify its owner; return the owner id."""
        ...

    async def pending_cancels(self) -> list[str]:
        """This owner's running runs with a cancel request to deliver (again)."""
        ...

    async def delete_finished_before(self, cutoff: float) -> int: ...
