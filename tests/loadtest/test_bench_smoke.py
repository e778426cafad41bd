"""The benchmark's pieces: the floor answers like noderun, the client's verification
rejects wrong answers, targets and reports are assembled right, and quick benchmarks
run end to end: floor only, ephemeral and durable-sqlite noderun, and durable-pg
when PostgreSQL is reachable (required with ``NODERUN_REQUIRE_PG=1``, through the
``pg_admin_dsn`` fixture of ``tests/conftest.py``).

No test asserts a timing: numbers only have to be present and positive.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import asyncpg
import msgspec
import pytest

from loadtest import inprocess
from loadtest.bench import GROUPS, TARGETS, select_targets
from loadtest.client import RunSpec, check_terminal, decode_frame
from loadtest.database import describe_dsn
from loadtest.echo import answer
from loadtest.phases import SequentialResult, ThroughputResult
from loadtest.report import Goal, Round, TargetSummary, ratios, render, to_json
from loadtest.stats import median, percentile
from tests.nodetool.support import require_nodetool

ROOT = Path(__file__).resolve().parents[2]
JOB_ID = "0123456789abcdef0123456789abcdef"
BENCH_TIMEOUT_S = 50


def _bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        check=False,
        env=env,
    )


def _round(p50s: list[float], runs: int) -> Round:
    """A round of sequential latencies ``p50s`` and ``runs`` runs in one second."""
    return Round(
        SequentialResult(p50s, 0, None, Counter({2: len(p50s)})),
        ThroughputResult(runs, 1.0, 0, None, Counter({2: runs}), 0.5, 0.5, 0.0),
    )


def test_percentile_is_nearest_rank() -> None:
    samples = [float(v) for v in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5


def test_request_carries_the_job_id_and_event_detail() -> None:
    request = msgspec.msgpack.decode(RunSpec("full").request(JOB_ID))
    assert request["command"] == "run_job"
    assert request["data"]["job_id"] == JOB_ID
    assert request["data"]["execution_options"] == {
        "persistence": "session",
        "event_detail": "full",
    }
    with pytest.raises(ValueError):
        RunSpec("full").request("short")


def test_floor_answers_ack_then_a_verified_terminal() -> None:
    ack, terminal = answer(RunSpec("terminal").request(JOB_ID))
    assert msgspec.msgpack.decode(ack) == {
        "message": "Job started",
        "job_id": JOB_ID,
        "workflow_id": "n1",
    }
    frame = decode_frame(terminal)
    assert (frame.type, frame.status, frame.job_id) == ("job_update", "completed", JOB_ID)
    assert check_terminal(frame) is None


@pytest.mark.parametrize(
    ("terminal", "reason"),
    [
        ({"status": "failed", "error": "boom"}, "status 'failed'"),
        ({"status": "completed", "result": None}, "result is not"),
        ({"status": "completed"}, "without result"),
        (
            {"status": "completed", "result": {"outputs": {"n1": {"output": "hello world"}}}},
            "wrong output",
        ),
        ({"status": "completed", "result": {"outputs": {}}}, "wrong output"),
    ],
)
def test_check_terminal_rejects_wrong_answers(terminal: dict[str, object], reason: str) -> None:
    frame = decode_frame(
        msgspec.msgpack.encode({"type": "job_update", "job_id": JOB_ID, **terminal})
    )
    failure = check_terminal(frame)
    assert failure is not None
    assert reason in failure


def test_only_accepts_names_and_groups_in_canonical_order() -> None:
    def names(only: str) -> list[str]:
        return [t.name for t in select_targets(only)]

    assert names("all") == [t.name for t in TARGETS]
    assert names("durable-pg,floor,terminal") == ["floor", "terminal", "durable-pg"]
    assert names("ephemeral") == ["terminal", "full"]
    assert names("floor, durable") == ["floor", "durable-sqlite", "durable-pg"]
    assert set(GROUPS["noderun"]) == {t.name for t in TARGETS} - {"floor"}
    with pytest.raises(ValueError, match="unknown target 'bogus'"):
        select_targets("floor,bogus")


def test_durable_targets_ask_for_job_persistence_and_compare_with_terminal() -> None:
    """Durable runs are the ``terminal`` shape with ``persistence="job"``, so
    ``terminal`` is the ephemeral run they are compared with."""
    by_name = {t.name: t for t in TARGETS}
    for name in ("durable-sqlite", "durable-pg"):
        target = by_name[name]
        assert target.spec == RunSpec("terminal", "job")
        assert target.baseline == "terminal"
        assert target.expected_frames == by_name["terminal"].expected_frames
    assert by_name["durable-pg"].goal == Goal(min_throughput=0.5, max_p50_delta_ms=1.0)
    servers = {t.server for t in TARGETS}
    assert len(servers) == 7, (
        "each durable target, the workers one and each remote one has a server of its own"
    )


def test_the_remote_targets_run_the_same_concat_as_a_nodetool_node() -> None:
    by_name = {t.name: t for t in TARGETS}
    for name in ("remote", "remote-w2"):
        remote = by_name[name]
        assert remote.spec == RunSpec("terminal", node_type="noderunbench.text.Concat")
        assert remote.baseline == "terminal"
        request = msgspec.msgpack.decode(remote.spec.request(JOB_ID))
        (node,) = request["data"]["graph"]["nodes"]
        assert node["type"] == "noderunbench.text.Concat"
        assert node["data"] == {"a": "hello ", "b": "world"}
    assert by_name["remote"].goal == Goal(max_p50_delta_ms=1.5)
    assert by_name["remote-w2"].goal == Goal(min_runs_per_s=1000)
    assert GROUPS["remotes"] == ("terminal", "remote", "remote-w2")


def test_quick_bench_remote_nodes_beside_native_and_floor(tmp_path: Path) -> None:
    """NodeTool workers answer every run of the remote targets correctly (one worker,
    then two), measured in the same run as the native node and the floor; their
    servers and workers may use every CPU."""
    require_nodetool()
    out = tmp_path / "bench.json"
    proc = _bench("--only", "floor,remotes", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    summary = data["summary"]
    assert set(summary) == {"floor", "terminal", "remote", "remote-w2"}
    for name in summary:
        assert summary[name]["failures"] == 0, summary[name]["first_failure"]
        assert summary[name]["runs_per_s"] > 0
        assert summary[name]["p50_us"] > 0
    for name in ("remote", "remote-w2"):
        assert set(summary[name]["frames_per_run"]) == {"2"}
        assert data["vs_baseline"][name]["baseline"] == "terminal"
    assert set(data["vs_baseline"]["remote"]["goal"]) == {"max_p50_delta_ms", "p50_met"}
    assert set(data["vs_baseline"]["remote-w2"]["goal"]) == {"min_runs_per_s", "runs_per_s_met"}
    assert "remote node: throughput " in proc.stdout
    assert "remote, 2 workers: throughput " in proc.stdout
    assert "goal >= 1000 runs/s: runs/s " in proc.stdout
    if (os.cpu_count() or 1) > 1:
        assert "remote servers and their workers on every CPU" in proc.stdout


def test_quick_bench_workers_target_beside_terminal(tmp_path: Path) -> None:
    """``terminal-w2`` serves the same runs through ``noderun serve --workers 2``, compared
    with ``terminal``; ``--no-pin`` lets its two processes use every CPU."""
    out = tmp_path / "bench.json"
    proc = _bench("--only", "workers", "--no-pin", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    summary = data["summary"]
    assert set(summary) == {"terminal", "terminal-w2"}
    for name in summary:
        assert summary[name]["failures"] == 0, summary[name]["first_failure"]
        assert summary[name]["runs_per_s"] > 0
    assert data["vs_baseline"]["terminal-w2"]["baseline"] == "terminal"
    assert "--no-pin: client and servers share every CPU" in proc.stdout + proc.stderr


def test_dsn_description_carries_no_credentials() -> None:
    assert (
        describe_dsn("postgresql://bench:s3cret@db.example:5433/postgres?sslmode=require")
        == "postgresql://db.example:5433/postgres"
    )


def test_floor_only_quick_bench_reports_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _bench("--only", "floor", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "p50 µs" in proc.stdout
    assert "runs/s" in proc.stdout
    floor_line = next(line for line in proc.stdout.splitlines() if line.startswith("floor"))
    assert len(floor_line.split()) >= 8
    summary = json.loads(out.read_text())["summary"]["floor"]
    assert summary["p50_us"] > 0
    assert summary["p99_us"] >= summary["p50_us"]
    assert summary["runs_per_s"] > 0
    assert summary["failures"] == 0
    assert set(summary["frames_per_run"]) == {"2"}


def test_quick_bench_against_noderun_verifies_every_run(tmp_path: Path) -> None:
    """The real servers answer every run correctly, ephemeral and durable on sqlite,
    with 2 frames per run for ``event_detail=terminal`` and 6 for ``full``
    (PROTOCOL.md §3.2); durable-sqlite is compared with ephemeral ``terminal``."""
    out = tmp_path / "bench.json"
    proc = _bench("--only", "ephemeral,durable-sqlite", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    summary = data["summary"]
    assert set(summary) == {"terminal", "full", "durable-sqlite"}
    for name in summary:
        assert summary[name]["failures"] == 0, summary[name]["first_failure"]
        assert summary[name]["runs_per_s"] > 0
    assert set(summary["terminal"]["frames_per_run"]) == {"2"}
    assert set(summary["full"]["frames_per_run"]) == {"6"}
    assert set(summary["durable-sqlite"]["frames_per_run"]) == {"2"}
    assert data["vs_baseline"]["durable-sqlite"]["baseline"] == "terminal"
    assert data["vs_baseline"]["durable-sqlite"]["throughput"] > 0
    assert "durable-sqlite: throughput " in proc.stdout
    assert "x ephemeral, p50 " in proc.stdout


async def _database_exists(admin_dsn: str, name: str) -> bool:
    conn = await asyncpg.connect(admin_dsn, timeout=3)
    try:
        found: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name
        )
        return found
    finally:
        await conn.close()


def test_quick_bench_durable_pg_verifies_every_run_and_drops_its_database(
    tmp_path: Path, pg_admin_dsn: str
) -> None:
    """Durable runs on a fresh PostgreSQL database are all verified, compared with
    ephemeral ``terminal`` against the issue's goal, and the database is gone after."""
    out = tmp_path / "bench.json"
    proc = _bench("--only", "terminal,durable-pg", "--pg-dsn", pg_admin_dsn, "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    durable = data["summary"]["durable-pg"]
    assert durable["failures"] == 0, durable["first_failure"]
    assert set(durable["frames_per_run"]) == {"2"}
    assert durable["runs_per_s"] > 0
    versus = data["vs_baseline"]["durable-pg"]
    assert versus["baseline"] == "terminal"
    assert set(versus["goal"]) == {
        "min_throughput",
        "max_p50_delta_ms",
        "throughput_met",
        "p50_met",
    }
    assert "durable-pg: throughput " in proc.stdout
    assert "goal >= 0.50x, <= +1.00 ms" in proc.stdout
    name = data["config"]["pg_database"]
    assert name.startswith("noderun_bench_")
    assert not asyncio.run(_database_exists(pg_admin_dsn, name))


def test_unreachable_postgresql_skips_durable_pg_unless_required(tmp_path: Path) -> None:
    """Nothing listens on port 1: the PG target is skipped with a note and the rest is
    measured; with ``NODERUN_REQUIRE_PG=1`` the benchmark fails instead."""
    out = tmp_path / "bench.json"
    dsn = "postgresql://postgres@127.0.0.1:1/postgres"
    env = {k: v for k, v in os.environ.items() if k != "NODERUN_REQUIRE_PG"}
    args = ("--only", "floor,durable-pg", "--pg-dsn", dsn, "--json", str(out))
    proc = _bench(*args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "note: durable-pg skipped: PostgreSQL at postgresql://127.0.0.1:1/postgres" in (
        proc.stdout
    )
    assert set(json.loads(out.read_text())["summary"]) == {"floor"}
    required = _bench(*args, env={**env, "NODERUN_REQUIRE_PG": "1"})
    assert required.returncode == 2
    assert "NODERUN_REQUIRE_PG=1" in required.stderr


def test_report_compares_durable_targets_with_their_baseline_per_round() -> None:
    """Ratios and the p50 difference pair rounds; the goal verdict names each half."""
    terminal = TargetSummary("terminal", "noderun terminal", 2)
    durable = TargetSummary("durable-pg", "durable-pg", 2, baseline="terminal")
    durable.goal = Goal(min_throughput=0.5, max_p50_delta_ms=1.0)
    terminal.rounds += [_round([100.0], 1000), _round([300.0], 2000)]
    durable.rounds += [_round([600.0], 600), _round([2300.0], 800)]
    r = ratios(terminal, durable)
    assert r["p50_delta_us"] == 1250.0  # median of +500 and +2000
    assert r["throughput"] == 0.5  # median of 0.6 and 0.4
    text = render([terminal, durable], "header", None, [])
    assert (
        "durable-pg: throughput 0.50x ephemeral, p50 +1.25 ms "
        "(goal >= 0.50x, <= +1.00 ms: throughput met, p50 missed)"
    ) in text
    goal = to_json([terminal, durable], {}, None)["vs_baseline"]
    assert isinstance(goal, dict)
    assert goal["durable-pg"]["goal"]["throughput_met"] is True
    assert goal["durable-pg"]["goal"]["p50_met"] is False


def test_a_goal_judges_only_the_figures_it_sets() -> None:
    """A runs/s goal is absolute (the target's median), a p50 goal against the baseline."""
    terminal = TargetSummary("terminal", "noderun terminal", 2)
    remote = TargetSummary("remote-w2", "remote, 2 workers", 2, baseline="terminal")
    remote.goal = Goal(min_runs_per_s=1000)
    terminal.rounds += [_round([100.0], 5000), _round([100.0], 5000)]
    remote.rounds += [_round([2000.0], 900), _round([2000.0], 1100)]
    text = render([terminal, remote], "header", None, [])
    assert "remote, 2 workers: throughput 0.20x ephemeral, p50 +1.90 ms, 1000 runs/s" in text
    assert "(goal >= 1000 runs/s: runs/s met)" in text
    assert Goal(max_p50_delta_ms=1.5).verdict(0.1, 2000.0, 10.0) == "goal <= +1.50 ms: p50 missed"
    entry = to_json([terminal, remote], {}, None)["vs_baseline"]
    assert isinstance(entry, dict)
    assert entry["remote-w2"]["goal"] == {"min_runs_per_s": 1000, "runs_per_s_met": True}


def test_report_survives_a_target_whose_every_run_failed() -> None:
    """No successful run means no latency: the report says n/a and counts the failures."""
    failed = "status 'failed': 'boom'"
    floor = TargetSummary("floor", "floor", 2)
    floor.rounds.append(
        Round(
            SequentialResult([100.0, 200.0], 0, None, Counter({2: 2})),
            ThroughputResult(10, 1.0, 0, None, Counter({2: 10}), 0.5, 0.5, 0.0),
        )
    )
    broken = TargetSummary("terminal", "noderun terminal", 2)
    broken.rounds.append(
        Round(
            SequentialResult([], 2, failed, Counter({2: 2})),
            ThroughputResult(0, 1.0, 7, failed, Counter({2: 7}), 0.5, None, None),
        )
    )
    text = render([floor, broken], "header", None, [])
    assert "n/a" in text
    assert f"noderun terminal: 9 failed runs; first: {failed}" in text
    assert ratios(floor, broken) == {
        "p50": None,
        "p99": None,
        "throughput": 0.0,
        "server_cpu_per_run": None,
        "p50_delta_us": None,
    }
    data = to_json([floor, broken], {}, None)
    assert json.loads(json.dumps(data, allow_nan=False))["summary"]["terminal"]["p50_us"] is None


def test_inprocess_cost_runs_real_runs_through_the_runtime() -> None:
    """Every measured run finishes (else it raises); the figure is µs per run."""
    for detail in ("terminal", "full"):
        cost = inprocess.measure_inprocess(50, detail)
        assert cost > 0
