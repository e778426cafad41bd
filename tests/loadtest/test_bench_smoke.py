"""The benchmark's pieces: the floor answers like noderun, the client's verification
rejects wrong answers, and the floor-only benchmark runs end to end.

No test asserts a timing: numbers only have to be present and positive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from loadtest import inprocess
from loadtest.client import RunSpec, check_terminal, decode_frame
from loadtest.echo import answer
from loadtest.phases import SequentialResult, ThroughputResult
from loadtest.report import Round, TargetSummary, ratios, render, to_json
from loadtest.stats import median, percentile

ROOT = Path(__file__).resolve().parents[2]
JOB_ID = "0123456789abcdef0123456789abcdef"


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


def test_floor_only_quick_bench_reports_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--quick", "--only", "floor", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
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
    """The real server answers every run correctly, with 2 frames per run for
    ``event_detail=terminal`` and 5 for ``full`` (PROTOCOL.md §3.2)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.bench",
            "--quick",
            "--only",
            "noderun",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(out.read_text())["summary"]
    assert summary["terminal"]["failures"] == 0
    assert summary["full"]["failures"] == 0
    assert set(summary["terminal"]["frames_per_run"]) == {"2"}
    assert set(summary["full"]["frames_per_run"]) == {"5"}


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
    }
    data = to_json([floor, broken], {}, None)
    assert json.loads(json.dumps(data, allow_nan=False))["summary"]["terminal"]["p50_us"] is None


def test_inprocess_cost_runs_real_runs_through_the_runtime() -> None:
    """Every measured run finishes (else it raises); the figure is µs per run."""
    for detail in ("terminal", "full"):
        cost = inprocess.measure_inprocess(50, detail)
        assert cost > 0
