"""Where a run's output goes besides its subscribers: the one difference between an
ephemeral and a durable run.

A run hands every message it numbers to its sink (:meth:`OutputSink.keep`) and its
terminal ``job_update`` too (:meth:`OutputSink.conclude`); the sink decides when the
run may publish that terminal to its subscribers:

* :data:`EPHEMERAL` keeps nothing and lets the run publish at once.
* :class:`DurableSink` queues each message for the store's group commit and commits
  the terminal before it lets the run publish (PROTOCOL.md §5: exactly one
  terminal, committed before anyone sees it). When the run was no longer this
  server's to finish (another server failed it while this one could not reach the
  store), the store answers with the terminal it holds, and that one is published.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Protocol

import msgspec
import structlog

from noderun.contract import RunStore, StoredFrame
from noderun.protocol.codec import Outbound
from noderun.protocol.server import JobUpdate

__all__ = ["EPHEMERAL", "Concluding", "DurableSink", "EphemeralSink", "OutputSink"]

log = structlog.get_logger(__name__)


class Concluding(Protocol):
    """What a sink needs of the run it serves."""

    job_id: str
    #: The run's key in the store (``contract.store_key``).
    store_key: str

    def publish(self, item: Outbound) -> None:
        """Deliver the terminal to the subscribers (nothing if the run was abandoned)."""
        ...


class OutputSink(Protocol):
    #: Whether :meth:`keep` wants the run's messages (a run skips the call otherwise).
    keeps: bool

    def keep(self, job_id: str, item: Outbound) -> None:
        """Take one numbered message of the run (never blocks)."""
        ...

    def conclude(
        self, run: Concluding, item: Outbound
    ) -> asyncio.Future[StoredFrame | None] | None:
        """Take the run's terminal; make the run publish it once that is allowed.

        Returns the future the publication waits for (a commit), or ``None`` when
        the run has already published.
        """
        ...


class EphemeralSink:
    """An ephemeral run: nothing is kept, the terminal is published at once."""

    keeps = False

    def keep(self, job_id: str, item: Outbound) -> None:
        raise AssertionError("an ephemeral run keeps nothing")

    def conclude(self, run: Concluding, item: Outbound) -> None:
        run.publish(item)


#: The sink of every ephemeral run (it has no state).
EPHEMERAL = EphemeralSink()


class DurableSink:
    """A durable run: messages go to the store, the terminal is committed, then published."""

    keeps = True

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def keep(self, job_id: str, item: Outbound) -> None:
        self.store.append(job_id, item.seq, item.msgpack())

    def conclude(self, run: Concluding, item: Outbound) -> asyncio.Future[StoredFrame | None]:
        """Commit the terminal state, then publish it.

        Patient: if the store is down the run waits (the store logs the outage and
        its recovery; no per-run timer on the hot path). Telling the client anything
        else meanwhile would contradict what the store says once it commits. A
        server that stops meanwhile leaves the run to crash recovery.
        """
        terminal = item.message
        assert isinstance(terminal, JobUpdate)
        committed = self.store.finish(
            run.store_key,
            terminal.status,
            item.seq,
            item.msgpack(),
            terminal.error,
            patient=True,
        )
        committed.add_done_callback(functools.partial(_committed, run, item))
        return committed


def _committed(
    run: Concluding, item: Outbound, committed: asyncio.Future[StoredFrame | None]
) -> None:
    if committed.cancelled() or committed.exception() is not None:
        # Only a store closing under the run fails a patient finish: the server is
        # stopping, crash recovery will report the run as interrupted.
        log.warning("run.terminal_not_committed", job_id=run.job_id)
        return
    stored = committed.result()
    run.publish(item if stored is None else _stored_terminal(stored))


def _stored_terminal(stored: StoredFrame) -> Outbound:
    """The terminal the store holds for a run this server no longer owned: published
    instead of the run's own (PROTOCOL.md §5, one truth per run)."""
    published = Outbound.from_msgpack(stored.seq, stored.frame)
    published.message = msgspec.msgpack.decode(stored.frame, type=JobUpdate)
    return published
