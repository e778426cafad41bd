"""The soak: a mixed workload against one real ``noderun serve`` for minutes, judged.

``python -m loadtest.soak [--minutes M] [--connections C] [--rate R]
[--store none|sqlite|postgresql://…] [--interval S] [--warmup S] [--quick] [--json PATH]``

``C`` connections run the kinds of ``loadtest.workload`` (single nodes, a small
graph, ``event_detail=full``, durable runs when there is a store, cancelled
``noderun.debug.Sleep`` runs), ``R`` runs a second in all, every terminal
verified. Every ``S`` seconds the server's RSS, open descriptors and threads are
read from ``/proc`` together with the p50/p99 round trip of the runs that
finished in that window (cancelled runs excluded: their time is the cancel's),
and, when the server has a ``/metrics`` endpoint, its task and run gauges.
At the end ``loadtest.judge`` decides: flat RSS, no descriptor or thread
growth, a stable p99, no failed, lost, duplicated or stray run.

The server runs with ``--debug-nodes`` when its ``serve --help`` offers the
flag (older servers register the debug nodes by default). ``--finished-ttl``
and ``--ping-interval`` set ``NODERUN_FINISHED_TTL`` and ``NODERUN_PING_INTERVAL``
for it; ``--quick`` sets both to 1 s, so the finished-run cache reaches its
steady size and pings arrive between run frames within a 10-second soak.
``postgresql://…`` is an admin DSN: a fresh database is created and dropped.

Exit status: 0 when every verdict passed, 1 when one failed, 2 when the server
or the database could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path

from loadtest.client import RunError, RunSpec, verified_run
from loadtest.database import DatabaseUnavailable
from loadtest.footprint import footprint
from loadtest.judge import Counts, Sample, Verdict, judge
from loadtest.servers import (
    HOST,
    ServerError,
    ServerProcess,
    plan_cpus,
    python_module,
    spawn_servers,
)
from loadtest.stats import median, percentile
from loadtest.stores import parse_store, server_store
from loadtest.workload import RUN_TIMEOUT_S, Driver, Tally

__all__ = ["main", "render"]

_QUICK = {"minutes": 10 / 60, "connections": 10, "rate": 200.0, "interval": 1.0, "warmup": 2.0}
# A short finished-run TTL so the cache is at its steady size within seconds, and
# frequent pings so a short soak still sees them between run frames.
_QUICK_SERVER = {"finished_ttl": 1.0, "ping_interval": 1.0}
#: ``/metrics`` gauges worth a column: asyncio tasks and runs in flight.
_GAUGE = re.compile(r"^(\w*(?:task|in_flight|active)\w*)(?:\{[^}]*\})?\s+([0-9.eE+-]+)$")


def _debug_nodes_flag() -> list[str]:
    """``["--debug-nodes"]`` when this noderun has the flag, else nothing."""
    out = subprocess.run(
        python_module("noderun", "serve", "--help"), capture_output=True, text=True, check=False
    )
    return ["--debug-nodes"] if "--debug-nodes" in out.stdout else []


def _gauges(port: int) -> dict[str, float] | None:
    """The server's task/run gauges from ``/metrics``, or None when it has none."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=2) as r:
            text: str = r.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _GAUGE.match(line.strip())
        if match:
            found[match[1]] = found.get(match[1], 0.0) + float(match[2])
    return found


async def _sample(
    server: ServerProcess, tally: Tally, t_s: float, done: int, metrics: bool
) -> Sample:
    fp = footprint(server.process.pid)
    window = tally.take_window()
    gauges = (await asyncio.to_thread(_gauges, server.port)) if metrics else None
    return Sample(
        t_s,
        fp.rss_kib,
        fp.fds,
        fp.threads,
        done,
        percentile(window, 50) if window else None,
        percentile(window, 99) if window else None,
        gauges or {},
    )


async def _soak(
    server: ServerProcess, args: argparse.Namespace, durable: bool
) -> tuple[list[Sample], Tally]:
    await verified_run(server.ws_uri, RunSpec("terminal"))
    metrics = await asyncio.to_thread(_gauges, server.port) is not None
    tally = Tally()
    stop = asyncio.Event()
    period = args.connections / args.rate
    drivers = [Driver(server.ws_uri, i, durable, period, tally) for i in range(args.connections)]
    tasks = [asyncio.create_task(d.drive(stop)) for d in drivers]
    samples: list[Sample] = []
    started = time.monotonic()
    duration = args.minutes * 60
    completed = 0
    try:
        for n in range(1, int(duration / args.interval) + 1):
            # The sampling clock: waits for the next tick, not for any event.
            await asyncio.sleep(max(0.0, started + n * args.interval - time.monotonic()))
            failed = [t for t in tasks if t.done()]
            if failed:
                failed[0].result()  # a driver died of a bug: let it surface
            sample = await _sample(
                server, tally, time.monotonic() - started, tally.completed - completed, metrics
            )
            completed = tally.completed
            samples.append(sample)
            print(_row(sample), flush=True)
    finally:
        stop.set()
        async with asyncio.timeout(2 * RUN_TIMEOUT_S + args.interval):
            await asyncio.gather(*tasks)
    return samples, tally


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _row(s: Sample) -> str:
    gauges = "  ".join(f"{k}={v:g}" for k, v in sorted(s.gauges.items()))
    return (
        f"{s.t_s:7.0f} {s.rss_kib / 1024:9.1f} {s.fds:6d} {s.threads:8d} {s.runs:7d} "
        f"{_fmt(s.p50_ms):>8} {_fmt(s.p99_ms):>8}  {gauges}"
    ).rstrip()


HEADER = (
    f"{'t s':>7} {'RSS MiB':>9} {'fds':>6} {'threads':>8} {'runs':>7} {'p50 ms':>8} {'p99 ms':>8}"
)


def _series(name: str, values: Sequence[float], unit: str = "") -> str:
    low, mid, high = min(values), median(values), max(values)
    return f"{name:<8} min {low:g}{unit}  median {mid:g}{unit}  max {high:g}{unit}"


def render(
    samples: Sequence[Sample], tally: Tally, verdicts: Sequence[Verdict], header: str
) -> str:
    lines = [header, HEADER, *(_row(s) for s in samples), ""]
    if samples:
        lines.append(_series("RSS", [round(s.rss_kib / 1024, 1) for s in samples], " MiB"))
        lines.append(_series("fds", [s.fds for s in samples]))
        lines.append(_series("threads", [s.threads for s in samples]))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(tally.by_kind.items()))
    lines.append(
        f"runs: {tally.sent} sent ({kinds}); reconnects {tally.reconnects}; "
        f"frames about no run (pings) {tally.other_frames}"
    )
    for kind, times in sorted(tally.all_ms.items()):
        lines.append(
            f"  {kind:<10} p50 {percentile(times, 50):.2f} ms  p99 {percentile(times, 99):.2f} ms"
        )
    lines += [f"  failure: {f}" for f in tally.failures]
    for v in verdicts:
        lines.append(f"{'ok  ' if v.passed else 'FAIL'} {v.name:<11} {v.detail}")
    lines.append("PASS" if all(v.passed for v in verdicts) else "FAIL")
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--rate", type=float, default=300.0, help="runs a second, all connections together"
    )
    parser.add_argument(
        "--store", default="none", help="none | sqlite | sqlite:///PATH | postgresql://admin-dsn"
    )
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds of samples the verdicts ignore"
    )
    parser.add_argument(
        "--p99-factor", type=float, default=2.0, help="last window's p99 / first's, at most"
    )
    parser.add_argument("--finished-ttl", type=float, help="the server's NODERUN_FINISHED_TTL")
    parser.add_argument(
        "--ping-interval", type=float, help="the server's NODERUN_PING_INTERVAL (seconds)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{_QUICK}, {_QUICK_SERVER}, unless given"
    )
    parser.add_argument("--json", help="also write samples, counts and verdicts here")
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for name, value in {**_QUICK, **_QUICK_SERVER}.items():
            if f"--{name.replace('_', '-')}" not in given:
                setattr(args, name, value)
    if min(args.minutes, args.connections, args.rate, args.interval, args.p99_factor) <= 0:
        parser.error(
            "--minutes, --connections, --rate, --interval and --p99-factor must be positive"
        )
    try:
        args.store_choice = parse_store(args.store)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _run(coro: Coroutine[None, None, tuple[list[Sample], Tally]]) -> tuple[list[Sample], Tally]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    plan = plan_cpus()
    env = {
        f"NODERUN_{name.upper()}": str(value)
        for name in _QUICK_SERVER
        if (value := getattr(args, name)) is not None
    }
    try:
        with server_store(args.store_choice) as (url, store):
            flags = _debug_nodes_flag()
            command = python_module(
                "noderun", "serve", "--store", url, "--log-level", "warning", *flags
            )
            header = (
                f"noderun soak: {args.minutes * 60:g} s, {args.connections} connections, "
                f"{args.rate:g} runs/s, store {store}, sample every {args.interval:g} s, "
                f"warm-up {args.warmup:g} s; {plan.describe()}"
                + "".join(f"; {k}={v}" for k, v in env.items())
            )
            print(header, flush=True)
            print(HEADER, flush=True)
            with spawn_servers({"noderun": command}, plan, env) as servers:
                samples, tally = _run(_soak(servers["noderun"], args, args.store_choice.durable))
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ServerError, RunError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = Counts(
        tally.sent, tally.completed, tally.failed, tally.lost, tally.duplicates, tally.strays
    )
    verdicts = judge(samples, counts, args.warmup, args.p99_factor)
    print()
    print(render(samples, tally, verdicts, header))
    if args.json:
        data = {
            # ``store`` is the description: an admin DSN may carry a password.
            "config": {
                **{k: v for k, v in vars(args).items() if k not in ("json", "store_choice")},
                "store": store,
            },
            "samples": [asdict(s) for s in samples],
            "counts": asdict(counts),
            "by_kind": dict(tally.by_kind),
            "frames_about_no_run": tally.other_frames,
            "reconnects": tally.reconnects,
            "kind_ms": {
                k: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
                for k, v in tally.all_ms.items()
            },
            "failures": tally.failures,
            "verdicts": [asdict(v) for v in verdicts],
            "passed": all(v.passed for v in verdicts),
        }
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
