"""In-process cost of a trivial run: the runtime without a socket around it.

What one ``run_job`` of a single ``nodetool.text.Concat`` costs the server
outside uvicorn and the WebSocket framing: decode the frame, admit, validate and
run it through the hub, and encode every message it emits to MessagePack (as the
connection would). Frames are encoded before timing, each with its own job id;
the loop is uvloop and the garbage collector is set up as the server sets it up
(``settle_heap``), and restored afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Coroutine
from typing import Any, Literal

from noderun.protocol.codec import Outbound, decode_frame, encode_msgpack
from noderun.protocol.server import JobUpdate
from noderun.runtime.hub import Hub
from noderun.runtime.pool import RunnerPool
from noderun.runtime.registry import default_registry
from noderun.server.heap import settle_heap

__all__ = ["measure_inprocess"]

Detail = Literal["terminal", "full"]


class _Sink:
    """A subscriber that encodes what it gets, as a connection does, and counts terminals."""

    __slots__ = ("terminals",)

    def __init__(self) -> None:
        self.terminals = 0

    def deliver(self, item: Outbound) -> None:
        item.msgpack()
        message = item.message
        if isinstance(message, JobUpdate) and message.status != "running":
            self.terminals += 1

    def run_finished(self, job_id: str) -> None:
        pass

    def congestion(self) -> asyncio.Future[None] | None:
        return None


def _frame(job_id: str, detail: Detail) -> bytes:
    return encode_msgpack(
        {
            "command": "run_job",
            "type": "run_job",
            "request_id": None,
            "data": {
                "type": "run_job_request",
                "job_id": job_id,
                "workflow_id": "n1",
                "graph": {
                    "nodes": [
                        {
                            "id": "n1",
                            "type": "nodetool.text.Concat",
                            "data": {"a": "hello ", "b": "world"},
                        }
                    ],
                    "edges": [],
                },
                "params": {},
                "explicit_types": True,
                "require_terminal_result": True,
                "execution_options": {"persistence": "session", "event_detail": detail},
            },
        }
    )


async def _measure(n: int, detail: Detail) -> float:
    pool = RunnerPool(1)
    await pool.start()
    try:
        hub = Hub(default_registry(), pool)
        frames = [_frame(f"job-{detail}-{index}", detail) for index in range(n)]
        sink = _Sink()
        threshold = gc.get_threshold()
        settle_heap()
        started = time.perf_counter()
        for payload in frames:
            frame = decode_frame(payload, text=False)
            run = hub.create(frame, "1", sink)  # type: ignore[arg-type]
            run.start()
            if run.task is not None:  # never for Concat: a synchronous run
                await run.task
        elapsed = time.perf_counter() - started
        gc.unfreeze()
        gc.set_threshold(*threshold)
    finally:
        await pool.close()
    if sink.terminals != n:
        raise RuntimeError(f"{n - sink.terminals} of {n} in-process runs did not finish")
    return elapsed / n * 1e6


def measure_inprocess(n: int, detail: Detail = "terminal") -> float:
    """Microseconds per trivial in-process run (best of three batches of ``n``)."""
    return min(_run(_measure(n, detail)) for _ in range(3))


def _run(coro: Coroutine[Any, Any, float]) -> float:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    profile: Detail
    for profile in ("terminal", "full"):
        print(f"{profile}: {measure_inprocess(20_000, profile):.1f} µs per run")
