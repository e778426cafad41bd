"""Durable runs start while their row commits; a refused row leaves no trace in the hub."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from noderun.protocol.client import ExecutionOptions
from noderun.protocol.records import RunRecord
from noderun.runtime.hub import Hub, StartRefused
from noderun.runtime.registry import default_registry
from noderun.runtime.store import RunStore
from tests.runtime.support import node, request


class RunExists(Exception):
    """Named like persistence's error, which the hub recognises by name."""


class SlowCreateStore:
    """Commits a row after the run has already executed; can refuse it."""

    server_id = "test-server"

    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.appended: list[int] = []
        self.finished: list[str] = []

    async def create_run(self, record: RunRecord) -> None:
        for _ in range(3):  # let the run execute and queue its terminal first
            await asyncio.sleep(0)
        if self.refuse:
            raise RunExists(record.job_id)

    def append(self, job_id: str, seq: int, frame: bytes) -> None:
        self.appended.append(seq)

    async def finish(
        self,
        job_id: str,
        status: str,
        seq: int,
        frame: bytes,
        error: str | None,
        *,
        patient: bool = False,
    ) -> None:
        self.finished.append(status)


def durable(job_id: str):  # type: ignore[no-untyped-def]
    frame = request([node("n", "nodetool.text.Concat", a="a", b="b")], job_id=job_id)
    frame.execution_options = ExecutionOptions(persistence="job", event_detail="full")
    return frame


async def test_a_refused_row_abandons_the_run_without_a_trace() -> None:
    store = SlowCreateStore(refuse=True)
    hub = Hub(default_registry(), None, store=cast(RunStore, store))
    with pytest.raises(StartRefused) as info:
        await hub.create_durable(durable("dup"), "1")
    assert info.value.code == "job_already_running"
    assert hub.get("dup") is None
    assert not hub.active


async def test_a_committed_row_returns_the_run_with_its_messages_held() -> None:
    store = SlowCreateStore(refuse=False)
    hub = Hub(default_registry(), None, store=cast(RunStore, store))
    run = await hub.create_durable(durable("ok"), "1")
    if run.task is not None:  # it may well have finished while its row committed
        await run.task
    items, incomplete = run.replay(0)
    assert not incomplete
    assert [item.seq for item in items] == [1, 2, 3, 4]  # kept for the ack, then replayed
    assert store.appended == [1, 2, 3] and store.finished == ["completed"]
    assert hub.get("ok") is run and run.status == "completed"
