"""``GET /metrics``: Prometheus metrics read from counters the server already keeps.

Nothing here runs per run or per frame. The runtime keeps plain integers (the hub's
:class:`~noderun.runtime.stats.RunStats`, the runner pool's counters, the store's
:class:`~noderun.persistence.stats.CommitStats`, the NodeTool pool's gauges, each
connection's outbox length); a custom collector turns them into metric families
only when Prometheus scrapes, on a :class:`CollectorRegistry` of the app's own (so
two apps in one process, as in the tests, do not share metrics and nothing lands
in prometheus-client's global registry).

The route is unauthenticated, like ``/health``: it carries counts, never job ids,
user ids, tokens or payloads. It still tells anyone who can reach it how busy the
server is: operators keep it off the public network.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Collection, Iterator, Sequence
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from noderun.nodetool import WorkerPool
from noderun.persistence.stats import BATCH_RUNS, COMMIT_SECONDS
from noderun.persistence.store import Store
from noderun.runtime.hub import Hub
from noderun.runtime.pool import RunnerPool

__all__ = ["Gauged", "Sources", "metrics_route"]


class Gauged(Protocol):
    """What the collector reads of a live connection."""

    @property
    def queued(self) -> int:
        """Frames waiting in its outbox."""
        ...

    @property
    def slow_consumer_closes(self) -> int:
        """1 once it was closed for letting its outbox fill, else 0."""
        ...


class Sources(Protocol):
    """Where the collector reads, at scrape time (the server's ``Lifecycle``)."""

    @property
    def hub(self) -> Hub | None: ...

    @property
    def workers(self) -> WorkerPool | None: ...

    @property
    def connections(self) -> Collection[Gauged]: ...

    @property
    def slow_consumer_closes(self) -> int:
        """Slow-consumer closes of connections that are gone."""
        ...


def metrics_route(sources: Sources) -> Route:
    """The ``/metrics`` route over a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(sources))

    # A coroutine on purpose: Starlette runs a plain function in a thread, and the
    # counters are only consistent when read from the loop that bumps them.
    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return Route("/metrics", metrics, methods=["GET"])


def _version() -> str:
    try:
        return importlib.metadata.version("noderun")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "unknown"


def _buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Cumulative ``le`` buckets from per-bucket counts (the last one past every bound)."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(bounds, counts[:-1], strict=True):
        total += count
        buckets.append((repr(float(bound)), total))
    buckets.append(("+Inf", total + counts[-1]))
    return buckets


class ServerCollector(Collector):
    """Yields the server's metric families from its plain counters."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources
        self._version = _version()

    def collect(self) -> Iterator[Metric]:
        sources = self._sources
        yield InfoMetricFamily("noderun", "The running noderun server.", {"version": self._version})
        connections = sources.connections
        yield GaugeMetricFamily(
            "noderun_connections", "WebSocket connections open.", len(connections)
        )
        yield GaugeMetricFamily(
            "noderun_outbound_queue_frames",
            "Frames waiting in the outboxes of all connections.",
            sum(connection.queued for connection in connections),
        )
        yield CounterMetricFamily(
            "noderun_slow_consumer_closes",
            "Connections closed with 1013 because their outbox filled up.",
            sources.slow_consumer_closes
            + sum(connection.slow_consumer_closes for connection in connections),
        )
        hub = sources.hub
        if hub is not None:
            yield from _runs(hub)
            if hub.pool is not None:
                yield from _runners(hub.pool)
            if isinstance(hub.store, Store):
                yield from _store(hub.store)
        workers = sources.workers
        if workers is not None:
            yield from _workers(workers)


def _runs(hub: Hub) -> Iterator[Metric]:
    stats = hub.stats
    started = CounterMetricFamily(
        "noderun_runs_started",
        "Runs acked with job_started (durable ones once their row is committed).",
        labels=["event_detail", "durable"],
    )
    for detail, count in stats.started_ephemeral.items():
        started.add_metric([detail, "false"], count)
    for detail, count in stats.started_durable.items():
        started.add_metric([detail, "true"], count)
    yield started
    finished = CounterMetricFamily(
        "noderun_runs_finished",
        "Runs whose terminal job_update was published, by status.",
        labels=["status"],
    )
    for status, count in stats.finished.items():
        finished.add_metric([str(status)], count)
    yield finished
    duration = HistogramMetricFamily(
        "noderun_run_duration_seconds",
        "Run duration (the terminal's duration), by node type for single-node runs "
        "(graph for larger graphs, invalid for graphs refused at planning).",
        labels=["node_type"],
    )
    for kind, histogram in stats.durations.items():
        duration.add_metric([kind], _buckets(histogram.bounds, histogram.counts), histogram.sum)
    yield duration
    yield GaugeMetricFamily(
        "noderun_runs_active", "Runs in flight (admitted, not finished).", len(hub.active)
    )
    refusals = CounterMetricFamily(
        "noderun_refusals",
        "run_job frames refused before a run started, by error code.",
        labels=["reason"],
    )
    for reason, count in stats.refused.items():
        refusals.add_metric([reason.value], count)
    yield refusals


def _runners(pool: RunnerPool) -> Iterator[Metric]:
    yield GaugeMetricFamily("noderun_runner_threads", "Runner threads in the pool.", pool.size)
    yield GaugeMetricFamily(
        "noderun_runner_busy", "Runner threads running a blocking node call.", pool.busy
    )
    yield CounterMetricFamily(
        "noderun_runner_threads_started",
        "Runner threads started, replacements included.",
        pool.started,
    )
    yield CounterMetricFamily(
        "noderun_runner_abandoned",
        "Runner threads given up to a cancelled call (and replaced).",
        pool.abandoned,
    )
    yield GaugeMetricFamily(
        "noderun_runner_abandoned_alive",
        "Abandoned runner threads whose call has not returned yet.",
        pool.abandoned_alive,
    )
    yield CounterMetricFamily(
        "noderun_runner_abandon_refused",
        "Cancelled calls that kept their runner: too many abandoned threads alive.",
        pool.abandon_refused,
    )


def _store(store: Store) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "noderun_store_up", "1 while the run store's last operation succeeded.", int(store.up)
    )
    stats = store.commit_stats
    yield HistogramMetricFamily(
        "noderun_store_commit_seconds",
        "Time to commit one group-commit batch (successful commits).",
        _buckets(COMMIT_SECONDS, stats.seconds_counts),
        stats.seconds_sum,
    )
    yield HistogramMetricFamily(
        "noderun_store_commit_batch_runs",
        "Distinct runs per committed group-commit batch.",
        _buckets(BATCH_RUNS, stats.batch_runs_counts),
        stats.batch_runs_sum,
    )


def _workers(workers: WorkerPool) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "noderun_nodetool_workers", "NodeTool worker processes alive.", workers.alive
    )
    yield GaugeMetricFamily(
        "noderun_nodetool_busy", "NodeTool node executions in flight.", workers.busy
    )
    yield GaugeMetricFamily(
        "noderun_nodetool_queued", "NodeTool node executions waiting for a slot.", workers.queued
    )
    yield CounterMetricFamily(
        "noderun_nodetool_restarts", "NodeTool worker processes restarted.", workers.restarts
    )
