"""Shared helpers of the store tests: timing constant, records, frames, store lifecycles."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from noderun.contract import RunRecord, RunStore
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
