"""noderun benchmark: ephemeral and durable noderun runs against a bare echo floor,
interleaved in one run.

``python -m loadtest.bench [--rounds R] [--seq-runs N] [--duration S]
[--connections C] [--only TARGETS] [--pg-dsn DSN] [--quick] [--json PATH]``

Targets (``TARGETS`` is a comma-separated list of these names or of the groups
in ``GROUPS``):

- ``floor``: ``loadtest.echo``, the same uvicorn settings as noderun;
- ``terminal``, ``full``: ephemeral runs (``persistence="session"``) with that
  ``event_detail``, on a noderun whose store is a temporary sqlite file;
- ``durable-sqlite``: durable runs (``persistence="job"``, ``event_detail=
  "terminal"``) on a noderun of their own whose store is another temporary sqlite
  file;
- ``durable-pg``: the same on a noderun of their own whose store is a fresh
  PostgreSQL database (``loadtest.database``) on the server ``--pg-dsn`` reaches;
  skipped with a note when that server is unreachable, unless
  ``NODERUN_REQUIRE_PG=1`` makes that an error;
- ``terminal-w2``: ``terminal`` on a noderun of its own serving with ``--workers 2``
  (two server processes on one port; the server CPU is that of the whole process tree);
- ``remote``: ephemeral ``terminal`` runs of the same concatenation as a NodeTool
  node (``loadtest/nodepack``) in one NodeTool worker, on a noderun of its own;
  skipped with a note without ``nodetool-core``, unless
  ``NODERUN_REQUIRE_NODETOOL=1`` makes that an error. Goal (issue 10): p50 at most
  1.5 ms above ``terminal``'s;
- ``remote-w2``: the same with two NodeTool workers (``--nodetool-workers 2``).
  Goal (issue 10): at least 1,000 runs/s.

Each round measures every target, in an order rotated per round so no target
always runs first (warm caches, thermal state):

- sequential: one connection, ``--warmup`` untimed runs then ``--seq-runs``
  timed runs back to back → p50, p99 of the round trip;
- throughput: ``--connections`` connections each running back to back for
  ``--duration`` seconds → runs/s, with the client's, the server's and (for
  ``durable-pg``, when PostgreSQL is local) the database's CPU use.

The report gives medians across rounds, the noderun/floor ratios, and for the
durable and remote targets the ratios against ephemeral ``terminal`` of the same
rounds. The client (this process, uvloop) is pinned to one CPU and the servers to
the others when the machine has two or more. The remote targets' servers are the
exception (``--remote-cpus spread``, the default): a remote run's work is split
between the server and its worker processes, which together need more than the
one CPU a 2-core machine leaves beside the client, so they may use every CPU, the
client's included, and the client competes with them for it. Their throughput is
then what the whole machine does, load generator included; their server CPU is
the process tree's (server and workers). ``--remote-cpus server`` keeps them on
the servers' CPUs like every other server (server and workers then share one
core on a 2-core machine).

Exit status: 0 when every run was verified, 1 when some run failed
verification, 2 when a server did not start, a run hung, or PostgreSQL was
required and unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from loadtest.client import RunError, RunSpec
from loadtest.database import (
    DEFAULT_PG_DSN,
    BenchDatabase,
    DatabaseUnavailable,
    describe_dsn,
    fresh_database,
)
from loadtest.inprocess import measure_inprocess
from loadtest.phases import measure_sequential, measure_throughput
from loadtest.report import Goal, Round, TargetSummary, render, to_json
from loadtest.servers import (
    CpuPlan,
    ServerError,
    ServerProcess,
    plan_cpus,
    python_module,
    spawn_servers,
    unpinned,
)

__all__ = ["GROUPS", "TARGETS", "main", "select_targets"]

NODEPACK = Path(__file__).resolve().parent / "nodepack"
# Other work above this share of a CPU during throughput phases is worth a warning.
NOISY = 0.1
# The goal for durable runs on PostgreSQL, against ephemeral ``terminal``.
DURABLE_PG_GOAL = Goal(min_throughput=0.5, max_p50_delta_ms=1.0)
# Issue 10's goals for a remote trivial node: p50 against ephemeral ``terminal``, and
# runs/s with two workers.
REMOTE_GOAL = Goal(max_p50_delta_ms=1.5)
REMOTE_W2_GOAL = Goal(min_runs_per_s=1000)
_DEFAULTS = {"rounds": 5, "seq_runs": 1000, "warmup": 100, "duration": 3.0, "inprocess_runs": 20000}
_QUICK = {"rounds": 1, "seq_runs": 200, "warmup": 20, "duration": 0.5, "inprocess_runs": 1000}


@dataclass(frozen=True)
class Target:
    """One thing measured: a server and what each run asks of it."""

    name: str
    label: str
    server: str
    spec: RunSpec
    expected_frames: int
    baseline: str | None = None
    goal: Goal | None = None


TARGETS = (
    Target("floor", "floor", "floor", RunSpec("terminal"), 2),
    Target("terminal", "noderun terminal", "noderun", RunSpec("terminal"), 2),
    Target("full", "noderun full", "noderun", RunSpec("full"), 6),
    Target(
        "durable-sqlite",
        "durable-sqlite",
        "noderun-sqlite",
        RunSpec("terminal", "job"),
        2,
        baseline="terminal",
    ),
    Target(
        "durable-pg",
        "durable-pg",
        "noderun-pg",
        RunSpec("terminal", "job"),
        2,
        baseline="terminal",
        goal=DURABLE_PG_GOAL,
    ),
    Target(
        "terminal-w2",
        "noderun terminal --workers 2",
        "noderun-w2",
        RunSpec("terminal"),
        2,
        baseline="terminal",
    ),
    Target(
        "remote",
        "remote node",
        "noderun-nodetool",
        RunSpec("terminal", node_type="noderunbench.text.Concat"),
        2,
        baseline="terminal",
        goal=REMOTE_GOAL,
    ),
    Target(
        "remote-w2",
        "remote, 2 workers",
        "noderun-nodetool-w2",
        RunSpec("terminal", node_type="noderunbench.text.Concat"),
        2,
        baseline="terminal",
        goal=REMOTE_W2_GOAL,
    ),
)
#: The servers whose NodeTool workers may use every CPU (``--remote-cpus spread``).
REMOTE_SERVERS = frozenset({"noderun-nodetool", "noderun-nodetool-w2"})
GROUPS = {
    "all": tuple(t.name for t in TARGETS),
    "noderun": (
        "terminal",
        "full",
        "durable-sqlite",
        "durable-pg",
        "terminal-w2",
        "remote",
        "remote-w2",
    ),
    "ephemeral": ("terminal", "full"),
    "durable": ("durable-sqlite", "durable-pg"),
    "workers": ("terminal", "terminal-w2"),
    "remotes": ("terminal", "remote", "remote-w2"),
}


def select_targets(only: str) -> list[Target]:
    """The targets that ``only`` (comma-separated names and groups) names, in
    ``TARGETS`` order; raises ``ValueError`` for an unknown word or an empty list."""
    names: set[str] = set()
    known = {t.name for t in TARGETS}
    for word in (w.strip() for w in only.split(",")):
        if word in GROUPS:
            names.update(GROUPS[word])
        elif word in known:
            names.add(word)
        else:
            choices = ", ".join([*GROUPS, *(t.name for t in TARGETS)])
            raise ValueError(f"unknown target {word!r} (choose from {choices})")
    return [t for t in TARGETS if t.name in names]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description="Benchmark ephemeral and durable noderun runs against a bare echo floor "
        "in one interleaved run.",
    )
    parser.add_argument("--rounds", type=int, help="rounds over all targets (default 5)")
    parser.add_argument("--seq-runs", type=int, help="timed sequential runs per round (1000)")
    parser.add_argument("--warmup", type=int, help="untimed sequential runs first (100)")
    parser.add_argument("--duration", type=float, help="seconds of each throughput phase (3)")
    parser.add_argument("--connections", type=int, default=32, help="throughput connections")
    parser.add_argument("--inprocess-runs", type=int, help="runs for the in-process cost (20000)")
    parser.add_argument(
        "--only",
        default="all",
        metavar="TARGETS",
        help="comma-separated targets (floor, terminal, full, durable-sqlite, durable-pg, "
        "terminal-w2, remote, remote-w2) and groups (all, noderun, ephemeral, durable, "
        "workers, remotes); default all",
    )
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("NODERUN_BENCH_PG_DSN", DEFAULT_PG_DSN),
        help="PostgreSQL server for durable-pg, as a role allowed to CREATE DATABASE "
        f"(NODERUN_BENCH_PG_DSN, default {DEFAULT_PG_DSN})",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the client and the servers to separate CPUs",
    )
    parser.add_argument(
        "--remote-cpus",
        choices=("spread", "server"),
        default="spread",
        help="CPUs of the remote targets' servers and their NodeTool workers: every CPU, "
        "the client's included (spread, default), or the servers' CPUs only (server)",
    )
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
    try:
        args.targets = select_targets(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    return args


@dataclass(frozen=True)
class _Server:
    """How to start one server, what its store is, and the CPU of its database."""

    argv: list[str]
    store: str
    db_cpu_s: Callable[[], float | None] | None = None


def _noderun(store_url: str) -> list[str]:
    # An explicit --store wins over NODERUN_STORE, whose default would fill the checkout.
    return python_module("noderun", "serve", "--log-level", "warning", "--store", store_url)


def _servers(targets: list[Target], scratch: Path, db: BenchDatabase | None) -> dict[str, _Server]:
    """The servers ``targets`` need; ``db`` is the durable-pg database, if any."""
    wanted = {t.server for t in targets}
    servers: dict[str, _Server] = {}
    if "floor" in wanted:
        servers["floor"] = _Server(python_module("loadtest.echo", "--log-level", "warning"), "-")
    if "noderun" in wanted:
        url = f"sqlite:///{scratch / 'ephemeral.db'}"
        servers["noderun"] = _Server(_noderun(url), "temporary sqlite (unused by session runs)")
    if "noderun-w2" in wanted:
        url = f"sqlite:///{scratch / 'workers.db'}"
        argv = [*_noderun(url), "--workers", "2"]
        servers["noderun-w2"] = _Server(argv, "temporary sqlite (unused by session runs)")
    if "noderun-sqlite" in wanted:
        url = f"sqlite:///{scratch / 'durable.db'}"
        servers["noderun-sqlite"] = _Server(_noderun(url), "temporary sqlite")
    for name, workers in (("noderun-nodetool", "1"), ("noderun-nodetool-w2", "2")):
        if name in wanted:
            url = f"sqlite:///{scratch / (name + '.db')}"
            argv = [
                *_noderun(url),
                *("--nodetool-workers", workers, "--nodetool-namespace", "noderunbench"),
            ]
            servers[name] = _Server(argv, "temporary sqlite (unused by session runs)")
    if "noderun-pg" in wanted and db is not None:
        probe = db.cpu_seconds if db.postmaster_pid is not None else None
        servers["noderun-pg"] = _Server(_noderun(db.url), f"fresh {db.describe()}", probe)
    return servers


async def _measure(
    targets: list[Target],
    summaries: dict[str, TargetSummary],
    servers: dict[str, ServerProcess],
    db_probes: dict[str, Callable[[], float | None] | None],
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
                db_cpu_s=db_probes.get(target.server),
            )
            result = Round(sequential, throughput)
            summaries[target.name].rounds.append(result)
            p50 = "n/a" if result.p50_us is None else f"{result.p50_us:.1f}"
            db = "" if throughput.db_cpu is None else f" db {_percent(throughput.db_cpu)}"
            print(
                f"  round {index + 1}/{args.rounds} {target.label}: "
                f"p50 {p50} µs, "
                f"{throughput.runs_per_s:.0f} runs/s, "
                f"CPU client {_percent(throughput.client_cpu)} "
                f"server {_percent(throughput.server_cpu)}{db} "
                f"other {_percent(throughput.other_cpu)}",
                file=sys.stderr,
                flush=True,
            )


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _header(
    args: argparse.Namespace, plan: CpuPlan, stores: dict[str, str], spread: frozenset[str]
) -> str:
    by_store: dict[str, list[str]] = {}
    for name, store in stores.items():
        by_store.setdefault(store, []).append(name)
    store_text = "; ".join(f"{', '.join(names)}: {store}" for store, names in by_store.items())
    return (
        f"noderun benchmark: {args.rounds} round(s) x [{args.seq_runs} sequential runs, "
        f"{args.connections} connections x {args.duration:g} s], medians across rounds\n"
        f"{os.cpu_count()} CPUs, {plan.describe()}"
        f"{_spread_note(plan, spread)}; python {platform.python_version()}\n"
        f"stores: {store_text or 'none'}"
    )


def _spread_note(plan: CpuPlan, spread: frozenset[str]) -> str:
    if not spread or plan.client is None:
        return ""
    return " (remote servers and their workers on every CPU)"


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


def _has_nodetool() -> bool:
    try:
        return importlib.util.find_spec("nodetool.worker") is not None
    except ModuleNotFoundError:
        return False


def _env(scratch: Path) -> dict[str, str]:
    """The servers' environment: the bench's node package on the NodeTool workers' path,
    a worker queue deep enough for every throughput connection, and (like the store) an
    asset directory in the scratch directory rather than the checkout."""
    path = [str(NODEPACK), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        "PYTHONPATH": os.pathsep.join(path),
        "NODERUN_NODETOOL_QUEUE": "100000",
        "NODERUN_ASSETS_DIR": str(scratch / "assets"),
    }


def _target_stores(targets: list[Target], servers: dict[str, _Server]) -> dict[str, str]:
    """Each noderun target's store, for the header and the JSON."""
    return {t.name: servers[t.server].store for t in targets if t.server != "floor"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report to stdout; return the exit status."""
    args = _parse(argv)
    targets: list[Target] = args.targets
    plan = unpinned() if args.no_pin else plan_cpus()
    if plan.warning:
        print(f"warning: {plan.warning}", file=sys.stderr)
    skipped: list[str] = []
    started = time.monotonic()
    try:
        # Exits in reverse: servers stop, then the database is dropped, then scratch goes.
        with contextlib.ExitStack() as stack:
            scratch = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="noderun-bench-"))
            )
            db = None
            if any(t.server == "noderun-pg" for t in targets):
                try:
                    db = stack.enter_context(fresh_database(args.pg_dsn))
                except DatabaseUnavailable as exc:
                    if os.environ.get("NODERUN_REQUIRE_PG") == "1":
                        raise
                    skipped.append(
                        f"durable-pg skipped: {exc} (set --pg-dsn or NODERUN_BENCH_PG_DSN)"
                    )
                    print(f"note: {skipped[-1]}", file=sys.stderr, flush=True)
                    targets = [t for t in targets if t.server != "noderun-pg"]
            remote = [t.name for t in targets if t.server in REMOTE_SERVERS]
            if remote and not _has_nodetool():
                message = (
                    f"{', '.join(remote)} skipped: nodetool-core is not installed "
                    "(noderun[nodetool])"
                )
                if os.environ.get("NODERUN_REQUIRE_NODETOOL") == "1":
                    print(f"error: NODERUN_REQUIRE_NODETOOL=1 and {message}", file=sys.stderr)
                    return 2
                skipped.append(message)
                print(f"note: {message}", file=sys.stderr, flush=True)
                targets = [t for t in targets if t.server not in REMOTE_SERVERS]
            if not targets:
                print("error: no target left to measure", file=sys.stderr)
                return 2
            summaries = {
                t.name: TargetSummary(t.name, t.label, t.expected_frames, [], t.baseline, t.goal)
                for t in targets
            }
            specs = _servers(targets, scratch, db)
            stores = _target_stores(targets, specs)
            spread = REMOTE_SERVERS & specs.keys() if args.remote_cpus == "spread" else frozenset()
            servers = stack.enter_context(
                spawn_servers(
                    {name: spec.argv for name, spec in specs.items()},
                    plan,
                    _env(scratch),
                    spread,
                )
            )
            inprocess_us = measure_inprocess(args.inprocess_runs)
            db_probes = {name: spec.db_cpu_s for name, spec in specs.items()}
            with _event_loop_runner() as runner:
                runner.run(_measure(targets, summaries, servers, db_probes, args))
    except DatabaseUnavailable as exc:
        print(f"error: NODERUN_REQUIRE_PG=1 and {exc}", file=sys.stderr)
        return 2
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RunError, ConnectionClosed, OSError) as exc:
        print(f"error: a run did not complete: {exc!r}", file=sys.stderr)
        return 2
    results = list(summaries.values())
    notes = [*skipped, *_notes(results, plan)]
    if db is not None and db.postmaster_pid is None:
        notes.append(
            "durable-pg: PostgreSQL is not a local process here, so its CPU is not measured"
        )
    print(render(results, _header(args, plan, stores, spread), inprocess_us, notes))
    print(f"(total {time.monotonic() - started:.0f} s)")
    if args.json:
        config = {k: v for k, v in vars(args).items() if k not in ("json", "targets")}
        config["pg_dsn"] = describe_dsn(args.pg_dsn)
        config["targets"] = [t.name for t in targets]
        config["stores"] = stores
        config["pg_database"] = None if db is None else db.name
        config["skipped"] = skipped
        config["cpu_plan"] = plan.describe() + _spread_note(plan, spread)
        config["cpus"] = os.cpu_count()
        with open(args.json, "w") as f:
            json.dump(to_json(results, config, inprocess_us), f, indent=2)
    return 1 if any(t.failures for t in results) else 0


if __name__ == "__main__":
    sys.exit(main())
