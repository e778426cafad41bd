"""noderun benchmark: noderun against a bare echo floor, interleaved in one run.

``python -m loadtest.bench [--rounds R] [--seq-runs N] [--duration S]
[--connections C] [--only floor|noderun|all] [--persistence session|job]
[--quick] [--json PATH]``

Targets: ``floor`` (``loadtest.echo``, the same uvicorn settings as noderun),
``noderun terminal`` and ``noderun full`` (``event_detail`` of the single-node
run). Each round measures every target, in an order rotated per round so no
target always runs first (warm caches, thermal state):

- sequential: one connection, ``--warmup`` untimed runs then ``--seq-runs``
  timed runs back to back → p50, p99 of the round trip;
- throughput: ``--connections`` connections each running back to back for
  ``--duration`` seconds → runs/s, with the client's and the server's CPU use.

The report gives medians across rounds and the noderun/floor ratios. The client
(this process, uvloop) is pinned to one CPU and the servers to the others when
the machine has two or more. noderun gets a temporary sqlite store unless
``NODERUN_STORE`` names one (``--persistence job`` measures durable runs).

Exit status: 0 when every run was verified, 1 when some run failed
verification, 2 when a server did not start or a run hung.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from websockets.exceptions import ConnectionClosed

from loadtest.client import RunError, RunSpec
from loadtest.inprocess import measure_inprocess
from loadtest.phases import measure_sequential, measure_throughput
from loadtest.report import Round, TargetSummary, render, to_json
from loadtest.servers import (
    CpuPlan,
    ServerError,
    ServerProcess,
    plan_cpus,
    python_module,
    spawn_servers,
)

__all__ = ["main"]

# Other work above this share of a CPU during throughput phases is worth a warning.
NOISY = 0.1
_DEFAULTS = {"rounds": 5, "seq_runs": 2000, "warmup": 200, "duration": 4.0, "inprocess_runs": 20000}
_QUICK = {"rounds": 1, "seq_runs": 200, "warmup": 20, "duration": 0.5, "inprocess_runs": 1000}


@dataclass(frozen=True)
class Target:
    """One thing measured: a server and what each run asks of it."""

    name: str
    label: str
    server: str
    spec: RunSpec
    expected_frames: int


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description="Benchmark noderun against a bare echo floor in one interleaved run.",
    )
    parser.add_argument("--rounds", type=int, help="rounds over all targets (default 5)")
    parser.add_argument("--seq-runs", type=int, help="timed sequential runs per round (2000)")
    parser.add_argument("--warmup", type=int, help="untimed sequential runs first (200)")
    parser.add_argument("--duration", type=float, help="seconds of each throughput phase (4)")
    parser.add_argument("--connections", type=int, default=32, help="throughput connections")
    parser.add_argument("--inprocess-runs", type=int, help="runs for the in-process cost (20000)")
    parser.add_argument("--only", choices=["floor", "noderun", "all"], default="all")
    parser.add_argument("--persistence", choices=["session", "job"], default="session")
    parser.add_argument("--quick", action="store_true", help="a few seconds; a smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    for key, default in (_QUICK if args.quick else _DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    for key in ("rounds", "seq_runs", "connections", "inprocess_runs"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.duration <= 0:
        parser.error("--warmup must be >= 0 and --duration > 0")
    return args


def _targets(only: str, persistence: str) -> list[Target]:
    mode: Literal["session", "job"] = "session" if persistence == "session" else "job"
    targets = []
    if only in ("floor", "all"):
        targets.append(Target("floor", "floor", "floor", RunSpec("terminal"), 2))
    if only in ("noderun", "all"):
        targets.append(
            Target("terminal", "noderun terminal", "noderun", RunSpec("terminal", mode), 2)
        )
        targets.append(Target("full", "noderun full", "noderun", RunSpec("full", mode), 5))
    return targets


async def _measure(
    targets: list[Target],
    summaries: dict[str, TargetSummary],
    servers: dict[str, ServerProcess],
    args: argparse.Namespace,
) -> None:
    for index in range(args.rounds):
        shift = index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            server = servers[target.server]
            sequential = await measure_sequential(
                server.ws_uri, target.spec, args.warmup, args.seq_runs
            )
            throughput = await measure_throughput(
                server.ws_uri,
                target.spec,
                connections=args.connections,
                duration_s=args.duration,
                server_cpu_s=server.cpu_seconds,
            )
            result = Round(sequential, throughput)
            summaries[target.name].rounds.append(result)
            p50 = "n/a" if result.p50_us is None else f"{result.p50_us:.1f}"
            print(
                f"  round {index + 1}/{args.rounds} {target.label}: "
                f"p50 {p50} µs, "
                f"{throughput.runs_per_s:.0f} runs/s, "
                f"CPU client {_percent(throughput.client_cpu)} "
                f"server {_percent(throughput.server_cpu)} other {_percent(throughput.other_cpu)}",
                file=sys.stderr,
                flush=True,
            )


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _header(args: argparse.Namespace, plan: CpuPlan) -> str:
    return (
        f"noderun benchmark: {args.rounds} round(s) x [{args.seq_runs} sequential runs, "
        f"{args.connections} connections x {args.duration:g} s], medians across rounds\n"
        f"{os.cpu_count()} CPUs, {plan.describe()}; python {platform.python_version()}, "
        f"persistence={args.persistence}, store={_store_description()}"
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _notes(summaries: list[TargetSummary], plan: CpuPlan) -> list[str]:
    notes = [plan.warning] if plan.warning else []
    for t in summaries:
        if t.rounds and t.other_cpu is not None and t.other_cpu >= NOISY:
            notes.append(
                f"{t.label}: other work used {t.other_cpu:.0%} of a CPU during its throughput "
                "phases; the machine was not quiet, so treat absolute numbers with caution"
            )
        if t.rounds and t.bound in ("client", "both"):
            notes.append(
                f"{t.label}: the single client process used {t.client_cpu:.0%} of its CPU "
                f"(server {_percent(t.server_cpu)}), so its runs/s may understate the server"
            )
    return notes


def _store_env(scratch: str) -> dict[str, str]:
    """Point noderun at a throw-away store unless ``NODERUN_STORE`` chooses one: its
    default (``noderun.db`` in the working directory) would fill the checkout."""
    if os.environ.get("NODERUN_STORE"):
        return {}
    return {"NODERUN_STORE": f"sqlite:///{scratch}/bench.db"}


def _store_description() -> str:
    store = os.environ.get("NODERUN_STORE")
    # Only the scheme: a PostgreSQL URL may carry a password.
    return f"{store.split(':', 1)[0]} (NODERUN_STORE)" if store else "sqlite (temporary)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report to stdout; return the exit status."""
    args = _parse(argv)
    targets = _targets(args.only, args.persistence)
    plan = plan_cpus()
    if plan.warning:
        print(f"warning: {plan.warning}", file=sys.stderr)
    commands: dict[str, list[str]] = {}
    if any(t.server == "floor" for t in targets):
        commands["floor"] = python_module("loadtest.echo", "--log-level", "warning")
    if any(t.server == "noderun" for t in targets):
        commands["noderun"] = python_module("noderun", "serve", "--log-level", "warning")
    summaries = {t.name: TargetSummary(t.name, t.label, t.expected_frames) for t in targets}
    started = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="noderun-bench-") as scratch,
            spawn_servers(commands, plan, _store_env(scratch)) as servers,
        ):
            inprocess_us = measure_inprocess(args.inprocess_runs)
            with _event_loop_runner() as runner:
                runner.run(_measure(targets, summaries, servers, args))
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RunError, ConnectionClosed, OSError) as exc:
        print(f"error: a run did not complete: {exc!r}", file=sys.stderr)
        return 2
    results = list(summaries.values())
    print(render(results, _header(args, plan), inprocess_us, _notes(results, plan)))
    print(f"(total {time.monotonic() - started:.0f} s)")
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "json"}
        config["cpu_plan"] = plan.describe()
        config["cpus"] = os.cpu_count()
        config["store"] = _store_description()
        with open(args.json, "w") as f:
            json.dump(to_json(results, config, inprocess_us), f, indent=2)
    return 1 if any(t.failures for t in results) else 0


if __name__ == "__main__":
    sys.exit(main())
