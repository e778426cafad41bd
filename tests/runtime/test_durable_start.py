"""Durable runs start while their row commits; a refused row leaves no trace in the hub."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from noderun.contract import Refusal, RunExists, RunRecord, RunStore, StoreError
from noderun.protocol.client import ExecutionOptions
from noderun.runtime.hub import Hub, RuntimeConfig, StartRefused
from noderun.runtime.registry import default_registry
from noderun.runtime.run import Run
from tests.support.hub import node, request
from tests.support.timing import TIMEOUT
from tests.support.waiting import eventually


class SlowCreateStore:
    """Commits a row after the run has already executed; can refuse it."""

    server_id = "test-server"

    def __init__(self, refuse: type[StoreError] | None) -> None:
        self.refuse = refuse
        self.appended: list[int] = []
        self.finished: list[str] = []
        #: Set when the run queues its terminal (``finish``).
        self.terminal_queued = asyncio.Event()

    def create_run(self, record: RunRecord) -> asyncio.Future[None]:
        created: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().create_task(self._commit(created, record.job_id))
        return created

    async def _commit(self, created: asyncio.Future[None], job_id: str) -> None:
        # The run executes and queues its terminal before its row commits.
        await asyncio.wait_for(self.terminal_queued.wait(), TIMEOUT)
        if self.refuse is not None:
            created.set_exception(self.refuse(job_id))
        else:
            created.set_result(None)

    def append(self, job_id: str, seq: int, frame: bytes) -> None:
        self.appended.append(seq)

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
        self.finished.append(status)
        self.terminal_queued.set()
        return self._terminal_commit()

    def _terminal_commit(self) -> asyncio.Future[None]:
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        committed.set_result(None)
        return committed


def durable(job_id: str):  # type: ignore[no-untyped-def]
    frame = request([node("n", "nodetool.text.Concat", a="a", b="b")], job_id=job_id)
    frame.execution_options = ExecutionOptions(persistence="job", event_detail="full")
    return frame


async def start(hub: Hub, job_id: str) -> tuple[Run, StartRefused | None]:
    outcome: asyncio.Future[tuple[Run, StartRefused | None]] = (
        asyncio.get_running_loop().create_future()
    )
    hub.create_durable(durable(job_id), "1", lambda *result: outcome.set_result(result))
    return await outcome


class Exists(RunExists):
    """A store's own refinement of the contract's error."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, "running")


class Unreachable(StoreError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"cannot create {job_id}")


async def test_a_refused_row_abandons_the_run_without_a_trace() -> None:
    store = SlowCreateStore(refuse=Exists)
    hub = Hub(default_registry(debug_nodes=True), None, store=cast(RunStore, store))
    run, refusal = await start(hub, "dup")
    assert refusal is not None and refusal.code is Refusal.JOB_ALREADY_RUNNING
    assert hub.get("dup", "1") is None
    assert not hub.active
    assert run.finished and not run.subscribers


async def test_any_other_store_error_refuses_the_start_as_store_unavailable() -> None:
    store = SlowCreateStore(refuse=Unreachable)
    hub = Hub(default_registry(debug_nodes=True), None, store=cast(RunStore, store))
    _run, refusal = await start(hub, "down")
    assert refusal is not None and refusal.code is Refusal.STORE_UNAVAILABLE
    # The store names the run by its key: the job id scoped to its user.
    assert "cannot create 1/down" in refusal.message
    assert hub.get("down", "1") is None


async def test_a_committed_row_returns_the_run_with_its_messages_held() -> None:
    store = SlowCreateStore(refuse=None)
    hub = Hub(default_registry(debug_nodes=True), None, store=cast(RunStore, store))
    run, refusal = await start(hub, "ok")
    assert refusal is None
    await eventually(lambda: run.finished)  # the terminal's commit called back
    items, incomplete = run.replay(0)
    assert not incomplete
    # Job and node running, the sink's output_update (§3.2), node completed, terminal:
    assert [item.seq for item in items] == [1, 2, 3, 4, 5]  # kept for the ack, then replayed
    assert store.appended == [1, 2, 3, 4] and store.finished == ["completed"]
    assert hub.get("ok", "1") is run and run.status == "completed"


class HeldFinishStore(SlowCreateStore):
    """Commits rows at once but holds every terminal commit until released."""

    def __init__(self) -> None:
        super().__init__(refuse=None)
        self.held: list[asyncio.Future[None]] = []
        self.queued = asyncio.Event()

    def create_run(self, record: RunRecord) -> asyncio.Future[None]:
        created: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        created.set_result(None)
        return created

    def _terminal_commit(self) -> asyncio.Future[None]:
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.held.append(committed)
        self.queued.set()
        return committed


async def test_a_cancel_while_the_terminal_commits_is_too_late() -> None:
    """The terminal being committed is the run's outcome: a cancel then neither
    interrupts the wait nor leaves the run without its terminal."""
    store = HeldFinishStore()
    hub = Hub(default_registry(debug_nodes=True), None, store=cast(RunStore, store))
    frame = request([node("s", "noderun.debug.Sleep", seconds=0)], job_id="slow")
    frame.execution_options = ExecutionOptions(persistence="job", event_detail="terminal")
    outcome: asyncio.Future[StartRefused | None] = asyncio.get_running_loop().create_future()
    run = hub.create_durable(frame, "1", lambda _run, refusal: outcome.set_result(refusal))
    assert await outcome is None
    await asyncio.wait_for(store.queued.wait(), TIMEOUT)  # the run awaits its terminal commit
    task = run.task
    assert task is not None
    assert not run.cancel()
    store.held[0].set_result(None)
    await asyncio.wait_for(task, TIMEOUT)
    assert run.status == "completed" and store.finished == ["completed"]


class ClosedStore(SlowCreateStore):
    """A store that refuses every row at once (closed, or never started)."""

    def create_run(self, record: RunRecord) -> asyncio.Future[None]:
        raise Unreachable(record.job_id)


@pytest.mark.parametrize("store_kind", [SlowCreateStore, ClosedStore])
async def test_a_refused_durable_start_gives_its_in_flight_slot_back(
    store_kind: type[SlowCreateStore],
) -> None:
    """Durable runs count against the per-user limit (never queued: refused past it);
    a start the store refused, at once or later, frees its slot."""
    store = store_kind(refuse=Unreachable)
    hub = Hub(
        default_registry(),
        None,
        RuntimeConfig(max_runs_per_user=1),
        store=cast(RunStore, store),
    )
    for job_id in ("a", "b"):  # the second would be refused if the first kept its slot
        try:
            _run, refusal = await start(hub, job_id)
        except StartRefused as exc:
            refusal = exc
        assert refusal is not None and refusal.code is Refusal.STORE_UNAVAILABLE
    blocker = hub.create(request([node("s", "noderun.debug.Sleep", seconds=30)]), "1", None)
    assert blocker.admitted
    with pytest.raises(StartRefused) as refused:
        hub.create_durable(durable("c"), "1", lambda *result: None)
    assert refused.value.code is Refusal.TOO_MANY_RUNS
    assert "1 runs of this user in flight" in refused.value.message
