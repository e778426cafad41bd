"""Shared helpers of the store tests: timing constant, records, frames, store lifecycles."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from noderun.contract import RunRecord, RunStore, StoredFrame
from noderun.persistence import StoreOptions, open_store
from tests.support.timing import SECOND

_encoder = msgspec.msgpack.Encoder()


def fast_options(**overrides: Any) -> StoreOptions:
    """Options with short timers, so the tests do not sit through production defaults."""
    values: dict[str, Any] = {
        "heartbeat_interval": SECOND / 10,
        "lease_timeout": SECOND * 30,
        "finish_timeout": SECOND * 5,
        "connect_timeout": SECOND * 2,
        "retry_initial": SECOND / 100,
        "retry_max": SECOND / 10,
        "sqlite_poll_interval": SECOND / 50,
        "sqlite_cancel_poll_interval": SECOND / 50,
        "pg_pool_min": 1,
        "pg_pool_max": 4,
    }
    values.update(overrides)
    return StoreOptions(**values)


def record(job_id: str, workflow_id: str = "wf") -> RunRecord:
    return RunRecord(job_id=job_id, workflow_id=workflow_id, user_id="u1", status="running")


def frame(job_id: str, seq: int, *, size: int = 0) -> bytes:
    """The msgpack bytes of a job message, as the runtime would store them."""
    return _encoder.encode(
        {"type": "job_update", "job_id": job_id, "job_seq": seq, "pad": b"\x00\xff" * size}
    )


def terminal(job_id: str, seq: int, status: str = "completed") -> bytes:
    return _encoder.encode(
        {"type": "job_update", "job_id": job_id, "job_seq": seq, "status": status}
    )


@contextlib.asynccontextmanager
async def started(
    url: str, *, server_id: str | None = None, **overrides: Any
) -> AsyncIterator[RunStore]:
    """A started store that is closed on exit."""
    store = open_store(url, server_id=server_id, options=fast_options(**overrides))
    await store.start()
    try:
        yield store
    finally:
        await store.close()


class Follower:
    """A task following one run (``store.follow``), whose progress the test can watch: it
    has read what is committed and waits for more once :attr:`seqs` holds that, so a test
    writes the next frames then instead of sleeping a guessed time."""

    def __init__(self, store: RunStore, job_id: str, after_seq: int = 0) -> None:
        self.frames: list[StoredFrame] = []
        self.task = asyncio.ensure_future(self._follow(store, job_id, after_seq))

    async def _follow(self, store: RunStore, job_id: str, after_seq: int) -> list[StoredFrame]:
        async for stored in store.follow(job_id, after_seq):
            self.frames.append(stored)
        return self.frames

    @property
    def seqs(self) -> list[int]:
        return [stored.seq for stored in self.frames]
