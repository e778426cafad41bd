"""Does throughput scale with server processes? ``noderun serve --workers N`` side by side.

``python -m loadtest.scaling [--workers 1,2] [--rounds 5] [--duration 3]
[--connections 64] [--json PATH]``

Starts one ``noderun serve --workers N --store none`` per ``N`` and, in rounds whose
order rotates, drives each with ``--connections`` connections of the lean client
(``loadtest.rawclient``) running single-node ``terminal`` runs back to back for
``--duration`` seconds, every terminal verified. Per target it reports the medians
across rounds of runs/s, the server's CPU (its whole process tree, in cores), the
client's CPU, and the server's CPU microseconds per run, then each target's ratio
to the first.

Nothing is pinned: N server processes need N cores. On a machine with as many cores
as server processes, the client takes its share from them, which is why it is the
lean client (a fraction of the server's CPU per run) and not ``loadtest.client``
(about the server's). The ratio it shows is then bounded by the cores the client
leaves free; the server CPU per run says whether the processes themselves scale
(the same per run, whatever N).

Opt-in like ``loadtest.bench``; exit 1 when a run failed verification, 2 when a
server did not start or a connection broke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loadtest.client import RunSpec
from loadtest.cpu import system_busy_cpu_seconds
from loadtest.rawclient import RawClientError, RawConnection, open_connection
from loadtest.servers import (
    HOST,
    ServerError,
    ServerProcess,
    python_module,
    spawn_servers,
    unpinned,
)

__all__ = ["main"]

_SPEC = RunSpec("terminal")
_WARMUP_S = 0.3


@dataclass(frozen=True)
class Window:
    """One throughput window on one target."""

    runs: int
    failures: int
    elapsed_s: float
    server_cpu: float | None
    client_cpu: float
    other_cpu: float | None

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.elapsed_s

    @property
    def server_us_per_run(self) -> float | None:
        if self.server_cpu is None or not self.runs:
            return None
        return self.server_cpu * self.elapsed_s / self.runs * 1e6


@dataclass
class Summary:
    workers: int
    windows: list[Window] = field(default_factory=list)

    def median(self, attribute: str) -> float | None:
        values = [getattr(w, attribute) for w in self.windows]
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None


async def _window(server: ServerProcess, connections: int, duration_s: float) -> Window:
    conns: list[RawConnection] = []
    try:
        for _ in range(connections):
            conns.append(await open_connection(HOST, server.port, _SPEC))
        warm_until = time.perf_counter() + _WARMUP_S
        for conn in conns:
            conn.start(warm_until)
        await asyncio.gather(*(c.idle for c in conns))
        for conn in conns:
            conn.tally.reset()
        server0 = server.cpu_seconds()
        system0 = system_busy_cpu_seconds()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for conn in conns:
            conn.start(t0 + duration_s)
        await asyncio.wait_for(asyncio.gather(*(c.idle for c in conns)), duration_s + 10)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        system1 = system_busy_cpu_seconds()
        server1 = server.cpu_seconds()
    finally:
        for conn in conns:
            conn.close()
    failures = sum(c.tally.failures for c in conns)
    if failures:
        first = next(c.tally.first_failure for c in conns if c.tally.failures)
        print(f"  {failures} runs failed verification, first: {first}", file=sys.stderr)
    server_cpu = (
        (server1 - server0) / elapsed if server0 is not None and server1 is not None else None
    )
    other = None
    if server_cpu is not None and system0 is not None and system1 is not None:
        other = max(0.0, (system1 - system0 - cpu) / elapsed - server_cpu)
    return Window(
        runs=sum(c.tally.completed for c in conns),
        failures=failures,
        elapsed_s=elapsed,
        server_cpu=server_cpu,
        client_cpu=cpu / elapsed,
        other_cpu=other,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _report(summaries: list[Summary]) -> str:
    lines = [
        f"{'server':<12} {'runs/s':>8} {'server CPU':>11} {'client CPU':>11} "
        f"{'other CPU':>10} {'srv µs/run':>11} {'failures':>9}"
    ]
    for s in summaries:
        failures = sum(w.failures for w in s.windows)
        lines.append(
            f"{'--workers ' + str(s.workers):<12} {_fmt(s.median('runs_per_s'), '8.0f')} "
            f"{_fmt(s.median('server_cpu'), '10.2f')}c {_fmt(s.median('client_cpu'), '10.2f')}c "
            f"{_fmt(s.median('other_cpu'), '9.2f')}c "
            f"{_fmt(s.median('server_us_per_run'), '11.1f')} {failures:>9}"
        )
    base = summaries[0]
    for s in summaries[1:]:
        runs = (s.median("runs_per_s") or 0) / (base.median("runs_per_s") or 1)
        b_us, s_us = base.median("server_us_per_run"), s.median("server_us_per_run")
        per_run = "n/a" if b_us is None or s_us is None else f"{s_us / b_us:.2f}x"
        lines.append(
            f"--workers {s.workers} / --workers {base.workers}: runs/s {runs:.2f}x, "
            f"server CPU per run {per_run}"
        )
    return "\n".join(lines)


async def _measure(args: argparse.Namespace, servers: dict[int, ServerProcess]) -> list[Summary]:
    summaries = {n: Summary(n) for n in args.workers}
    order = list(args.workers)
    for index in range(args.rounds):
        shift = index % len(order)
        for n in order[shift:] + order[:shift]:
            window = await _window(servers[n], args.connections, args.duration)
            summaries[n].windows.append(window)
            print(
                f"  round {index + 1}/{args.rounds} --workers {n}: {window.runs_per_s:.0f} runs/s, "
                f"server CPU {_fmt(window.server_cpu, '.2f')}, client CPU {window.client_cpu:.2f}, "
                f"srv µs/run {_fmt(window.server_us_per_run, '.1f')}",
                flush=True,
            )
    return [summaries[n] for n in args.workers]


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.scaling", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--workers",
        type=lambda v: [int(n) for n in v.split(",")],
        default=[1, 2],
        help="comma-separated server process counts, the first the baseline (1,2)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all targets (5)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per window (3)")
    parser.add_argument("--connections", type=int, default=64, help="connections per window (64)")
    parser.add_argument("--json", type=Path, help="also write the windows as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    commands = {
        n: python_module(
            "noderun", "serve", "--log-level", "warning", "--store", "none", "--workers", str(n)
        )
        for n in args.workers
    }
    try:
        with spawn_servers({str(n): argv for n, argv in commands.items()}, unpinned()) as started:
            servers = {n: started[str(n)] for n in args.workers}
            print(
                f"noderun --workers {','.join(map(str, args.workers))}: {args.rounds} rounds x "
                f"{args.connections} connections x {args.duration} s, unpinned, lean client",
                flush=True,
            )
            with _runner() as runner:
                summaries = runner.run(_measure(args, servers))
    except ServerError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (RawClientError, TimeoutError, OSError) as exc:
        print(f"connection broke: {exc!r}", file=sys.stderr)
        return 2
    print(_report(summaries))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                [
                    {"workers": s.workers, "windows": [asdict(w) for w in s.windows]}
                    for s in summaries
                ]
            )
        )
    return 1 if any(w.failures for s in summaries for w in s.windows) else 0


if __name__ == "__main__":
    sys.exit(main())
