"""The hub: every run this process holds, by user and ``job_id``, and how runs start
and end.

A job id is scoped to its user: two users may run the same ``job_id`` at once,
and one user's id tells another nothing. Active runs live until they finish;
finished runs stay reachable for ``reconnect_job`` for ``finished_ttl`` seconds,
at most ``finished_limit`` of them (oldest evicted first). At most
``max_active_runs`` are held at once: past that, ``run_job`` is refused with
``server_busy`` (named overflow policy: reject). Within that, the per-user and
per-connection limits of :mod:`~noderun.runtime.admission` queue a run, then
refuse it with ``too_many_runs``.

A graph of more than ``max_graph_nodes`` nodes fails before anything runs, like
any invalid graph. A graph of more than :data:`PLAN_AT_ONCE` nodes is not validated
in the frame handler but by its run's task, in slices (:class:`~.graph.Unplanned`):
the ack does not wait for it, and an invalid one ends ``failed`` all the same.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from noderun.contract import Refusal, RunExists, RunRecord, RunStatus, RunStore, store_key
from noderun.protocol.client import ExecutionOptions, RunJob
from noderun.protocol.server import JobUpdate
from noderun.runtime.admission import Admission, Limits
from noderun.runtime.errors import GraphError
from noderun.runtime.graph import Plan, PlanCache, Unplanned
from noderun.runtime.pool import RunnerPool
from noderun.runtime.registry import Registry
from noderun.runtime.run import Run, RunLimits, Subscriber
from noderun.runtime.sink import EPHEMERAL, DurableSink, OutputSink
from noderun.runtime.stats import RUN_SECONDS, RunStats
from noderun.runtime.workflows import WorkflowCatalog, run_error

__all__ = ["MAX_JOB_ID", "PLAN_AT_ONCE", "Hub", "RuntimeConfig", "StartRefused"]

log = structlog.get_logger(__name__)

_DEFAULT_OPTIONS = ExecutionOptions()
#: Longest ``job_id`` a run may have.
MAX_JOB_ID = 256
#: Largest graph validated right in the frame handler; a larger one is validated by
#: its run's task, a slice at a time.
PLAN_AT_ONCE = 256


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    replay_limit: int = 2000
    detach_grace: float = 600.0
    finished_ttl: float = 600.0
    finished_limit: int = 10_000
    max_active_runs: int = 10_000
    #: Most nodes a graph may have; a larger one fails before anything runs.
    max_graph_nodes: int = 10_000
    #: Seconds after which a run still going ends ``failed`` (timeout); 0: never.
    run_timeout: float = 0.0
    max_runs_per_connection: int = 1000
    max_runs_per_user: int = 1000
    max_queued_runs_per_user: int = 1000


class StartRefused(Exception):
    """``run_job`` refused before the run started; ``code`` goes on the error frame."""

    def __init__(self, code: Refusal, message: str, job_id: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.job_id = job_id


def _refusal(error: BaseException, job_id: str) -> StartRefused:
    """The refusal of a durable start whose row the store did not create.

    Anything but :class:`RunExists` (the store unreachable or closed, the wait for the
    commit cancelled) means the store cannot take the run now.
    """
    if isinstance(error, RunExists):
        # The store's key is scoped to the user (contract.store_key): this is the
        # user's own run, running in another process sharing the store.
        code = Refusal.JOB_ALREADY_RUNNING
    else:
        code = Refusal.STORE_UNAVAILABLE
    detail = str(error) or type(error).__name__
    return StartRefused(code, f"{code.replace('_', ' ')}: {detail}", job_id)


class Hub:
    """Starts runs, finds them by id, and shuts them all down."""

    def __init__(
        self,
        registry: Registry,
        pool: RunnerPool | None,
        config: RuntimeConfig | None = None,
        store: RunStore | None = None,
        workflows: WorkflowCatalog | None = None,
    ) -> None:
        self.registry = registry
        #: Stored workflows: what a ``run_job`` without a graph runs, by ``workflow_id``.
        self.workflows = workflows if workflows is not None else WorkflowCatalog()
        self.pool = pool
        self.config = config or RuntimeConfig()
        self.store = store
        self._durable = DurableSink(store) if store is not None else None
        #: Runs not finished yet (queued ones included), by ``contract.store_key``: the
        #: job id scoped to its user, a string so its hash is computed once per run.
        self.active: dict[str, Run] = {}
        #: Finished runs kept for replay, oldest first (their ``finished_at`` ascending).
        self._finished: OrderedDict[str, Run] = OrderedDict()
        config = self.config
        self._admission = Admission(
            Limits(
                per_connection=config.max_runs_per_connection,
                per_user=config.max_runs_per_user,
                queued_per_user=config.max_queued_runs_per_user,
            )
        )
        limit = self.config.finished_limit
        self._prune_at = limit + min(64, max(1, limit // 16))
        self._limits = RunLimits(
            self.config.replay_limit, self.config.detach_grace, self.config.run_timeout
        )
        self._plans = PlanCache(
            registry, at_once=PLAN_AT_ONCE, max_nodes=self.config.max_graph_nodes
        )
        #: Counters for the metrics endpoint (plain integers, read when scraped).
        self.stats = RunStats()

    def get(self, job_id: str, user_id: str) -> Run | None:
        """``user_id``'s run ``job_id`` (active or recently finished), if this process has it."""
        key = store_key(user_id, job_id)
        run = self.active.get(key)
        if run is not None:
            return run
        return self._finished.get(key)

    def get_durable(self, key: str) -> Run | None:
        """The active durable run stored under ``key`` (:func:`~noderun.contract.store_key`),
        if this process holds it: what a store's cancel request names."""
        run = self.active.get(key)
        return run if run is not None and run.durable else None

    def create(
        self,
        frame: RunJob,
        user_id: str,
        subscriber: Subscriber | None,
        connection: object = None,
    ) -> Run:
        """Admit, validate and register an ephemeral run; the caller acks, then starts it
        with ``run.start()`` when ``run.admitted``, else :meth:`enqueue` (it waits for a
        slot of its user or ``connection``).

        Synchronous: the hot path has no await between a frame and its ack.
        """
        job_id, key = self._admit(frame, user_id)
        admission = self._admission
        held_by = admission.acquire(user_id, connection)
        if held_by is not None and admission.queue_full(user_id):
            raise StartRefused(
                Refusal.TOO_MANY_RUNS,
                f"too many runs: {held_by}, and "
                f"{self.config.max_queued_runs_per_user} queued (max_queued_runs_per_user)",
                job_id,
            )
        run = self._register(frame, job_id, key, user_id, EPHEMERAL, subscriber)
        run.connection = connection
        run.admitted = held_by is None
        self.stats.started_ephemeral[run.detail] += 1
        return run

    def enqueue(self, run: Run) -> None:
        """Queue a run :meth:`create` did not admit; it starts when a slot frees."""
        self._admission.enqueue(run)

    def create_durable(
        self,
        frame: RunJob,
        user_id: str,
        on_created: Callable[[Run, StartRefused | None], None],
        connection: object = None,
    ) -> Run:
        """Start a durable run; ``on_created(run, None)`` once its row is committed (the
        caller acks then), ``on_created(run, refusal)`` if the row was refused. Never
        queued: past a limit of :mod:`~noderun.runtime.admission` it is refused.

        The run executes while its row commits: the store commits a run's items in
        the order they were queued, so its messages and terminal state ride the
        same group commit as its row (a trivial run costs one commit), or a later
        one. Nobody sees a message before the caller's ack: the run has no
        subscriber until then (attach and replay after). If the row cannot be
        created, the run is abandoned: no terminal, nothing of it stored.

        Callbacks, not a coroutine: a durable start costs no task. Raises
        :class:`StartRefused` at once when the run cannot even be queued.
        """
        job_id, key = self._admit(frame, user_id)
        sink = self._durable
        if sink is None:
            raise StartRefused(
                Refusal.STORE_UNAVAILABLE, "this server has no run store configured", job_id
            )
        held_by = self._admission.acquire(user_id, connection)
        if held_by is not None:
            # A queued durable run would need a queued row: refused instead.
            raise StartRefused(Refusal.TOO_MANY_RUNS, f"too many runs: {held_by}", job_id)
        store = sink.store
        record = RunRecord(
            job_id=key,
            workflow_id=frame.workflow_id,
            user_id=user_id,
            status=RunStatus.RUNNING,
            server_id=store.server_id,
            created_at=time.time(),
        )
        try:
            created = store.create_run(record)
        except Exception as exc:  # the store is closed or not started
            self._admission.give_back(user_id, connection)
            raise _refusal(exc, job_id) from None
        run = self._register(frame, job_id, key, user_id, sink, None)
        run.connection = connection
        run.admitted = True
        refused_at_once = created.done() and (
            created.cancelled() or created.exception() is not None
        )
        if not refused_at_once:  # e.g. the store is down: nothing to run
            run.start()
        created.add_done_callback(functools.partial(self._created, run, on_created))
        return run

    def _created(
        self,
        run: Run,
        on_created: Callable[[Run, StartRefused | None], None],
        created: asyncio.Future[None],
    ) -> None:
        error = asyncio.CancelledError() if created.cancelled() else created.exception()
        if error is None:
            self.stats.started_durable[run.detail] += 1
            on_created(run, None)
            return
        run.abandon()
        # It may even have finished meanwhile (its terminal commit being a no-op
        # without its row): forget it either way, it never existed.
        job_id = run.job_id
        key = run.store_key
        if self.active.get(key) is run:
            del self.active[key]
        if self._finished.get(key) is run:
            del self._finished[key]
        self._admission.release(run, _start)
        on_created(run, _refusal(error, job_id))

    def _admit(self, frame: RunJob, user_id: str) -> tuple[str, str]:
        """The run's job id and its key (``contract.store_key``), or :class:`StartRefused`."""
        job_id = frame.job_id or uuid.uuid4().hex
        if len(job_id) > MAX_JOB_ID:
            # A bound keeps ids storable and notifiable (PostgreSQL NOTIFY payloads
            # are under 8000 bytes); NodeTool's ids are 32-character UUIDs.
            raise StartRefused(
                Refusal.INVALID_JOB_ID,
                f"job_id longer than {MAX_JOB_ID} characters",
                job_id,
            )
        key = f"{user_id}/{job_id}"  # contract.store_key, written out: once per run
        if key in self.active:
            raise StartRefused(
                Refusal.JOB_ALREADY_RUNNING, f"job {job_id!r} is already running", job_id
            )
        if len(self.active) >= self.config.max_active_runs:
            raise StartRefused(
                Refusal.SERVER_BUSY,
                f"server busy: {self.config.max_active_runs} runs already active",
                job_id,
            )
        return job_id, key

    def _register(
        self,
        frame: RunJob,
        job_id: str,
        key: str,
        user_id: str,
        sink: OutputSink,
        subscriber: Subscriber | None,
    ) -> Run:
        """Plan the graph and register a ``PREPARED`` run (one that fails at start if
        the graph is missing or invalid)."""
        error: str | None = None
        plan: Plan | Unplanned | None = None
        try:
            graph = frame.graph
            if graph is None:
                graph = self.workflows.graph_for(frame.workflow_id, frame.params)
            plan = self._plans.plan(graph, frame.params)
        except GraphError as exc:
            error = run_error(exc)
        options = frame.execution_options or _DEFAULT_OPTIONS
        run = Run(
            job_id=job_id,
            workflow_id=frame.workflow_id,
            user_id=user_id,
            detail=options.event_detail,
            explicit_types=frame.explicit_types,
            require_terminal_result=frame.require_terminal_result,
            limits=self._limits,
            sink=sink,
            plan=plan,
            pool=self.pool,
            error=error,
            subscriber=subscriber,
            on_finished=self._finished_run,
        )
        run.store_key = key
        self.active[key] = run
        finished = self._finished
        if key in finished:  # a membership test: far cheaper than OrderedDict.pop's miss
            del finished[key]
        return run

    def _finished_run(self, run: Run) -> None:
        terminal = run.terminal
        message = terminal.message if terminal is not None else None
        if isinstance(message, JobUpdate):  # counted here, inline: this is the hot path
            stats = self.stats
            stats.finished[message.status] += 1
            try:
                histogram = stats.durations[run.kind]
            except KeyError:
                histogram = stats.histogram(run.kind)
            duration = message.duration or 0.0
            histogram.counts[bisect_left(RUN_SECONDS, duration)] += 1
            histogram.sum += duration
        key = run.store_key
        if self.active.get(key) is run:
            del self.active[key]
        self._admission.release(run, _start)
        finished = self._finished
        run.finished_at = time.monotonic()
        finished[key] = run
        count = len(finished)
        if count >= self._prune_at or count % 64 == 0:
            self._prune_finished()

    def _prune_finished(self) -> None:
        """Evict finished runs past the count limit or the age limit, oldest first.

        Runs in batches (when the count limit is passed by 1/16, at most 64, and
        on every 64th insertion for the age limit) so it costs next to nothing per
        run; an expired run may linger a little until the next batch.
        """
        finished = self._finished
        pop = finished.popitem
        for _ in range(len(finished) - self.config.finished_limit):
            pop(last=False)
        cutoff = time.monotonic() - self.config.finished_ttl
        expired = 0
        for run in finished.values():
            if run.finished_at >= cutoff:
                break
            expired += 1
        for _ in range(expired):
            pop(last=False)

    async def close(self, deadline: float = 10.0) -> None:
        """Shut down: cancel every active run with a reason, wait for their terminal frames."""
        # Nothing queued starts any more; queued runs end cancelled like the rest.
        self._admission.closed = True
        runs = list(self.active.values())
        for run in runs:
            run.cancel("server shutting down")
        tasks = [run.task for run in runs if run.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("hub.close_timeout", pending=len(pending))


def _start(run: Run) -> None:
    run.start()
