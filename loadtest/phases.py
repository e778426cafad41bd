"""The benchmark's measurements: sequential round trips and concurrent throughput.

Runs that fail verification (see ``loadtest.client``) are counted and left out
of latencies and throughput. Every phase is bounded: a sequential phase by its
run count, a throughput phase by its duration, each run by ``RUN_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field

from loadtest.client import BenchConnection, RunOutcome, RunSpec, watched
from loadtest.cpu import system_busy_cpu_seconds

__all__ = ["SequentialResult", "ThroughputResult", "measure_sequential", "measure_throughput"]


@dataclass
class _Tally:
    frames: Counter[int] = field(default_factory=Counter)
    failures: int = 0
    first_failure: str | None = None

    def add(self, outcome: RunOutcome) -> bool:
        """Record ``outcome``; True when the run succeeded."""
        self.frames[outcome.frames] += 1
        if outcome.failure is None:
            return True
        self.failures += 1
        if self.first_failure is None:
            self.first_failure = outcome.failure
        return False


@dataclass(frozen=True)
class SequentialResult:
    """Round trips of successful runs, in microseconds, after warm-up."""

    latencies_us: list[float]
    failures: int
    first_failure: str | None
    frames: Counter[int]


@dataclass(frozen=True)
class ThroughputResult:
    """``runs`` successful runs in ``elapsed_s`` seconds over all connections.

    ``client_cpu`` is this process's CPU time over wall time in the timed window
    (1.0 = one core busy); ``server_cpu`` the same for the server, when probed;
    ``db_cpu`` the same for a database server outside it, when probed;
    ``other_cpu`` the same for everything else on the machine (other processes,
    the kernel outside these processes, hypervisor steal), when known.
    """

    runs: int
    elapsed_s: float
    failures: int
    first_failure: str | None
    frames: Counter[int]
    client_cpu: float
    server_cpu: float | None
    other_cpu: float | None
    db_cpu: float | None = None

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def server_us_per_run(self) -> float | None:
        """Server CPU microseconds per successful run, when the server was probed.

        Unlike runs/s this barely moves when other processes compete for the
        machine, so it is the steadier measure of the server's own cost.
        """
        if self.server_cpu is None or not self.runs:
            return None
        return self.server_cpu * self.elapsed_s / self.runs * 1e6


async def _all(coros: Iterable[Coroutine[object, object, None]]) -> None:
    """Run ``coros`` concurrently; the first failure cancels the rest and is raised as is.

    A TaskGroup rather than gather: gather leaves the siblings of a failed
    coroutine running against connections that are about to be closed.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(coro)
    except ExceptionGroup as errors:
        raise errors.exceptions[0] from None


async def measure_sequential(uri: str, spec: RunSpec, warmup: int, runs: int) -> SequentialResult:
    """``warmup`` untimed then ``runs`` timed runs, one after another on one fresh connection."""
    conn = await BenchConnection.open(uri)
    tally = _Tally()
    latencies: list[float] = []

    async def phase() -> None:
        for _ in range(warmup):
            await conn.run_once(spec)
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            outcome = await conn.run_once(spec)
            t1 = time.perf_counter_ns()
            if tally.add(outcome):
                latencies.append((t1 - t0) / 1000)

    try:
        await watched(phase(), [conn])
    finally:
        await conn.close()
    return SequentialResult(latencies, tally.failures, tally.first_failure, tally.frames)


async def measure_throughput(
    uri: str,
    spec: RunSpec,
    *,
    connections: int,
    duration_s: float,
    warmup_per_connection: int = 5,
    server_cpu_s: Callable[[], float | None] | None = None,
    db_cpu_s: Callable[[], float | None] | None = None,
) -> ThroughputResult:
    """Runs/s with ``connections`` sockets each running back to back for ``duration_s``.

    All sockets are opened and warmed up before the clock starts; a run in flight
    at the deadline is finished and counted, and the window ends when the last one
    does, so runs/elapsed is exact. ``server_cpu_s`` returns the server's
    cumulative CPU seconds (or None) and is read at both ends of the window;
    ``db_cpu_s`` the same for the database the server writes to, if separate.
    """
    opened = await asyncio.gather(
        *(BenchConnection.open(uri) for _ in range(connections)), return_exceptions=True
    )
    conns = [c for c in opened if isinstance(c, BenchConnection)]
    if len(conns) < connections:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        error = next(e for e in opened if isinstance(e, BaseException))
        raise error
    tally = _Tally()
    completed = 0

    async def warm(conn: BenchConnection) -> None:
        for _ in range(warmup_per_connection):
            await conn.run_once(spec)

    async def work(conn: BenchConnection, deadline: float) -> None:
        nonlocal completed
        while time.perf_counter() < deadline:
            if tally.add(await conn.run_once(spec)):
                completed += 1

    try:
        await watched(_all(warm(c) for c in conns), conns)
        server0 = server_cpu_s() if server_cpu_s else None
        db0 = db_cpu_s() if db_cpu_s else None
        system0 = system_busy_cpu_seconds()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        await watched(_all(work(c, t0 + duration_s) for c in conns), conns)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        system1 = system_busy_cpu_seconds()
        server1 = server_cpu_s() if server_cpu_s else None
        db1 = db_cpu_s() if db_cpu_s else None
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    server_cpu = (
        (server1 - server0) / elapsed if server0 is not None and server1 is not None else None
    )
    db_cpu = (db1 - db0) / elapsed if db0 is not None and db1 is not None else None
    other_cpu = None
    if server_cpu is not None and system0 is not None and system1 is not None:
        # Clamped: clock-tick rounding can push a quiet machine slightly below 0.
        other_cpu = max(0.0, (system1 - system0 - cpu) / elapsed - server_cpu - (db_cpu or 0.0))
    return ThroughputResult(
        runs=completed,
        elapsed_s=elapsed,
        failures=tally.failures,
        first_failure=tally.first_failure,
        frames=tally.frames,
        client_cpu=cpu / elapsed,
        server_cpu=server_cpu,
        other_cpu=other_cpu,
        db_cpu=db_cpu,
    )
