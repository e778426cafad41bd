"""Driving runs without a socket: a hub on its own runner pool, the runtime's typed graph
builders, and a subscriber that collects what a run delivers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from noderun.protocol.client import Edge, ExecutionOptions, Graph, Node, RunJob
from noderun.protocol.codec import Outbound
from noderun.protocol.server import JobUpdate
from noderun.runtime.hub import Hub, RuntimeConfig
from noderun.runtime.pool import RunnerPool
from noderun.runtime.registry import Registry, default_registry
from noderun.runtime.run import Run
from tests.support.frames import TERMINAL
from tests.support.timing import TIMEOUT

__all__ = ["Collector", "edge", "node", "request", "running_hub", "start"]


class Collector:
    """Records every message delivered; ``done`` resolves on the terminal job_update."""

    def __init__(self) -> None:
        self.items: list[Outbound] = []
        self.finished: list[str] = []
        self.done = asyncio.get_running_loop().create_future()

    def deliver(self, item: Outbound) -> None:
        self.items.append(item)
        message = item.message
        if isinstance(message, JobUpdate) and message.status in TERMINAL and not self.done.done():
            self.done.set_result(message)

    def run_finished(self, job_id: str) -> None:
        self.finished.append(job_id)

    def congestion(self) -> asyncio.Future[None] | None:
        """Takes everything at once: never slows a run."""
        return None

    @property
    def messages(self) -> list[Any]:
        return [item.message for item in self.items]

    def of_type(self, kind: type) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]

    async def terminal(self) -> JobUpdate:
        result = await asyncio.wait_for(self.done, TIMEOUT)
        assert isinstance(result, JobUpdate)
        return result


def node(node_id: str, node_type: str, **data: object) -> Node:
    """A typed graph node (what the codec decodes a wire node into)."""
    return Node(id=node_id, type=node_type, data=dict(data))


def edge(source: str, target: str, target_handle: str, source_handle: str = "output") -> Edge:
    """A typed graph edge; the same arguments as the wire :func:`tests.support.graphs.edge`."""
    return Edge(
        source=source, target=target, source_handle=source_handle, target_handle=target_handle
    )


def request(
    nodes: list[Node],
    edges: list[Edge] | None = None,
    *,
    job_id: str | None = None,
    detail: str = "full",
    params: Mapping[str, object] | None = None,
    explicit_types: bool = False,
    require_terminal_result: bool = True,
) -> RunJob:
    """A decoded ``run_job`` of ``nodes`` and ``edges``."""
    return RunJob(
        job_id=job_id,
        workflow_id="wf",
        graph=Graph(nodes=nodes, edges=edges or []),
        params=dict(params) if params is not None else None,
        explicit_types=explicit_types,
        require_terminal_result=require_terminal_result,
        execution_options=ExecutionOptions(event_detail=detail),  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running_hub(
    registry: Registry | None = None, config: RuntimeConfig | None = None, runners: int = 2
) -> AsyncIterator[Hub]:
    """A hub on its own started runner pool (``hub.pool``); both closed on the way out."""
    pool = RunnerPool(runners)
    await pool.start()
    hub = Hub(registry or default_registry(debug_nodes=True), pool, config)
    try:
        yield hub
    finally:
        await hub.close()
        await pool.close()


def start(hub: Hub, frame: RunJob, collector: Collector) -> Run:
    """Create and start a run of ``frame`` for user ``"1"``, delivering to ``collector``."""
    run = hub.create(frame, "1", collector)
    run.start()
    return run
