"""Where a remote node's time goes: the NodeTool worker round trip, layer by layer.

``python -m loadtest.remoteprobe [--runs N] [--layers wire,pool,run] [--workers W]
[--concurrency C] [--worker-env NAME=VALUE]``

Starts one (or ``--workers``) real ``nodetool.worker --stdio`` with the bench's node
package (``loadtest/nodepack``) and runs ``noderunbench.text.Concat`` back to back
through three layers, each measured on its own:

- ``wire``: :class:`~noderun.nodetool.process.WorkerProcess` alone, one
  ``execute`` frame at a time (the transport and the worker, nothing of the pool);
- ``pool``: :meth:`WorkerPool.execute` (adds slot accounting and the caller's await);
- ``run``: a whole ephemeral run through the :class:`~noderun.runtime.hub.Hub`, as
  ``loadtest.inprocess`` does for a native node, with every message encoded as a
  connection would (adds the run, its task and the remote node's spec).

For each: wall time per request (median and p90 of the sequential round trips) and
CPU per request of this process and of the worker processes, from ``/proc`` (CPU
shares hold up better than wall time on a busy machine). ``--concurrency C`` keeps C
requests in flight instead of one (throughput: requests/s over the whole batch).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from loadtest.client import RunSpec
from loadtest.cpu import process_tree_cpu_seconds
from loadtest.inprocess import _Sink
from noderun.nodetool.pool import PoolOptions, WorkerPool
from noderun.nodetool.process import WorkerProcess
from noderun.protocol.codec import Outbound
from noderun.protocol.server import JobUpdate

__all__ = ["main"]

NODEPACK = Path(__file__).resolve().parent / "nodepack"
NODE = "noderunbench.text.Concat"
LAYERS = ("wire", "pool", "run")


#: Extra environment for the workers (``--worker-env``).
_WORKER_ENV: dict[str, str] = {}


def _options(workers: int) -> PoolOptions:
    return PoolOptions(
        workers=workers,
        python=sys.executable,
        namespaces=("noderunbench",),
        queue_limit=100_000,
        hang_timeout=0,
        env={"PYTHONPATH": str(NODEPACK), **_WORKER_ENV},
    )


#: The terminal's result (explicit types, as the SDK asks for them).
_EXPECTED = {"outputs": {"n1": {"output": {"type": "string", "value": "hello world"}}}}


class _CheckedSink(_Sink):
    """The in-process sink, counting only runs that completed with the right output."""

    __slots__ = ("completed",)

    def __init__(self) -> None:
        super().__init__()
        self.completed = 0

    def deliver(self, item: Outbound) -> None:
        super().deliver(item)
        message = item.message
        if (
            isinstance(message, JobUpdate)
            and message.status == "completed"
            and message.result == _EXPECTED
        ):
            self.completed += 1


def _frame(index: int) -> bytes:
    # The benchmark's own request, with a 32-character job id as RunSpec.request wants.
    return RunSpec("terminal", node_type=NODE).request(f"probe{index:+027d}")


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _workers_cpu(pids: Sequence[int]) -> float:
    return sum(process_tree_cpu_seconds(pid) or 0.0 for pid in pids)


async def _timed(
    name: str,
    request: Callable[[int], Awaitable[None]],
    runs: int,
    concurrency: int,
    pids: Sequence[int],
) -> dict[str, Any]:
    for index in range(min(200, runs)):
        await request(-index - 1)
    samples: list[float] = []
    self_before, workers_before = _self_cpu(), _workers_cpu(pids)
    started = time.perf_counter()
    if concurrency == 1:
        for index in range(runs):
            t0 = time.perf_counter()
            await request(index)
            samples.append(time.perf_counter() - t0)
    else:
        counter = iter(range(runs))

        async def lane() -> None:
            for index in counter:
                await request(index)

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    self_cpu = _self_cpu() - self_before
    workers_cpu = _workers_cpu(pids) - workers_before
    result: dict[str, Any] = {
        "layer": name,
        "runs": runs,
        "per_s": runs / elapsed,
        "self_us": self_cpu / runs * 1e6,
        "worker_us": workers_cpu / runs * 1e6,
    }
    if samples:
        samples.sort()
        result["p50_us"] = statistics.median(samples) * 1e6
        result["p90_us"] = samples[int(len(samples) * 0.9)] * 1e6
    return result


async def _wire(runs: int, concurrency: int) -> dict[str, Any]:
    options = _options(1)
    exited = asyncio.Event()
    process = await WorkerProcess.spawn(
        "probe", options.argv(), {**os.environ, **options.env}, lambda _p: exited.set()
    )
    try:
        await process.submit("discover", {}).future

        async def request(index: int) -> None:
            frame: Any = await process.submit(
                "execute",
                {
                    "node_type": NODE,
                    "fields": {"a": "hello ", "b": "world"},
                    "secrets": {},
                    "blobs": {},
                },
            ).future
            assert frame.type == "result", frame

        return await _timed("wire", request, runs, concurrency, [process.pid])
    finally:
        await process.close(5.0)


async def _pool(runs: int, concurrency: int, workers: int) -> dict[str, Any]:
    pool = WorkerPool(_options(workers))
    await pool.start()
    try:

        async def request(index: int) -> None:
            data = await pool.execute(NODE, {"a": "hello ", "b": "world"})
            assert data["outputs"] == {"output": "hello world"}, data

        pids = [pid for pid in pool.worker_pids() if pid is not None]
        return await _timed("pool", request, runs, concurrency, pids)
    finally:
        await pool.close()


async def _run(runs: int, concurrency: int, workers: int) -> dict[str, Any]:
    from noderun.nodetool.startup import start_nodetool
    from noderun.protocol.codec import decode_frame
    from noderun.runtime.hub import Hub
    from noderun.runtime.pool import RunnerPool
    from noderun.runtime.registry import default_registry

    registry = default_registry()
    pool = await start_nodetool(_options(workers), registry)
    runners = RunnerPool(1)
    await runners.start()
    try:
        hub = Hub(registry, runners)
        sink = _CheckedSink()
        frames = {index: _frame(index) for index in range(-min(200, runs), runs)}

        async def request(index: int) -> None:
            run = hub.create(decode_frame(frames.pop(index), text=False), "1", sink)  # type: ignore[arg-type]
            run.start()
            if run.task is not None:
                await run.task

        pids = [pid for pid in pool.worker_pids() if pid is not None]
        result = await _timed("run", request, runs, concurrency, pids)
        if sink.completed != runs + min(200, runs):
            raise RuntimeError(f"{sink.completed} completed of {runs + min(200, runs)} runs")
        return result
    finally:
        await runners.close()
        await pool.close()


def _print(result: dict[str, Any], concurrency: int) -> None:
    latency = (
        f"p50 {result['p50_us']:7.0f} µs  p90 {result['p90_us']:7.0f} µs  "
        if "p50_us" in result
        else f"c={concurrency:<3}                         "
    )
    print(
        f"{result['layer']:5} {latency}{result['per_s']:7.0f}/s  "
        f"CPU/request: ours {result['self_us']:6.0f} µs  worker {result['worker_us']:6.0f} µs",
        flush=True,
    )


async def _main(args: argparse.Namespace) -> None:
    for layer in args.layers:
        if layer == "wire":
            result = await _wire(args.runs, args.concurrency)
        elif layer == "pool":
            result = await _pool(args.runs, args.concurrency, args.workers)
        else:
            result = await _run(args.runs, args.concurrency, args.workers)
        _print(result, args.concurrency)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.remoteprobe")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="pool and run layers only")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the workers' environment (repeatable), e.g. TMPDIR=/dev/shm",
    )
    args = parser.parse_args(argv)
    for item in args.worker_env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--worker-env takes NAME=VALUE, not {item!r}")
        _WORKER_ENV[name] = value
    args.layers = [layer.strip() for layer in args.layers.split(",")]
    unknown = set(args.layers) - set(LAYERS)
    if unknown:
        parser.error(f"unknown layers {sorted(unknown)} (choose from {', '.join(LAYERS)})")
    if args.no_uvloop:
        asyncio.run(_main(args))
    else:
        import uvloop

        uvloop.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
