"""The soak and its parts: verdicts over samples, the workload's checks against a
server that answers wrongly, ``/proc`` footprints, and a quick soak end to end
against a real ``noderun serve`` with a sqlite store (every run kind, none failed).

No test asserts a timing: figures only have to be present and plausible.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.footprint import FootprintUnavailable, footprint, raise_fd_limit
from loadtest.judge import MIN_SAMPLES, Counts, Sample, judge
from loadtest.servers import CpuPlan, python_module, spawn_servers
from loadtest.stores import parse_store
from loadtest.workload import KINDS, WEIGHTS, Driver, Tally, schedule

ROOT = Path(__file__).resolve().parents[2]
SOAK_TIMEOUT_S = 50
CLEAN = Counts(sent=100, completed=100, failed=0, lost=0, duplicates=0, strays=0)


def _samples(
    rss: list[int], fds: list[int] | None = None, p99: list[float] | None = None
) -> list[Sample]:
    fds = fds or [30] * len(rss)
    p99 = p99 or [2.0] * len(rss)
    return [
        Sample(float(i + 1), r * 1024, f, 9, 100, 1.0, p)
        for i, (r, f, p) in enumerate(zip(rss, fds, p99, strict=True))
    ]


def _verdicts(samples: list[Sample], counts: Counts = CLEAN) -> dict[str, bool]:
    return {v.name: v.passed for v in judge(samples, counts, warmup_s=0.0)}


def test_flat_series_pass_every_verdict() -> None:
    assert _verdicts(_samples([50, 52, 51, 50, 53, 52])) == dict.fromkeys(
        ("rss flat", "fds", "threads", "p99 stable", "runs"), True
    )


def test_growing_rss_fails_but_growth_within_ten_percent_passes() -> None:
    assert not _verdicts(_samples([50, 50, 55, 60, 65, 70]))["rss flat"]
    assert _verdicts(_samples([50, 50, 52, 53, 54, 54]))["rss flat"]


def test_descriptor_growth_fails() -> None:
    assert not _verdicts(_samples([50] * 6, fds=[30, 30, 31, 32, 33, 34]))["fds"]
    assert _verdicts(_samples([50] * 6, fds=[30, 31, 30, 31, 30, 31]))["fds"]


def test_p99_more_than_doubling_fails() -> None:
    assert not _verdicts(_samples([50] * 6, p99=[2.0, 2.0, 2.0, 2.0, 2.0, 4.1]))["p99 stable"]
    assert _verdicts(_samples([50] * 6, p99=[2.0, 9.0, 2.0, 2.0, 2.0, 3.9]))["p99 stable"]


@pytest.mark.parametrize(
    "counts",
    [
        Counts(100, 99, 1, 0, 0, 0),
        Counts(100, 99, 0, 1, 0, 0),
        Counts(100, 100, 0, 0, 1, 0),
        Counts(100, 100, 0, 0, 0, 1),
        Counts(100, 99, 0, 0, 0, 0),
        Counts(0, 0, 0, 0, 0, 0),
    ],
)
def test_any_failed_lost_duplicated_stray_or_missing_run_fails(counts: Counts) -> None:
    assert not _verdicts(_samples([50] * 6), counts)["runs"]


def test_warmup_samples_are_ignored_and_too_few_samples_fail() -> None:
    samples = _samples([10, 20, 50, 50, 50, 50])
    assert all(v.passed for v in judge(samples, CLEAN, warmup_s=2.0))
    short = judge(samples[: MIN_SAMPLES - 1], CLEAN, warmup_s=0.0)
    assert {v.name for v in short if not v.passed} >= {"rss flat", "fds", "threads"}


def test_schedule_mixes_every_kind_by_weight_and_drops_durable_without_store() -> None:
    cycle = sum(WEIGHTS.values())
    with_store = [next(it).name for it in [schedule(True, 0)] for _ in range(cycle)]
    assert {name: with_store.count(name) for name in WEIGHTS} == WEIGHTS
    without = [k.name for k, _ in zip(schedule(False, 3), range(cycle), strict=False)]
    assert "durable" not in without
    assert without.count("single") == WEIGHTS["single"] + WEIGHTS["durable"]


def test_kind_checks_reject_wrong_terminals() -> None:
    good = {"status": "completed", "result": {"outputs": {"n1": {"output": "hello world"}}}}
    assert KINDS["single"].check(good) is None
    assert KINDS["single"].check({**good, "result": {"outputs": {"n1": {"output": "x"}}}})
    assert KINDS["single"].check({"status": "failed", "error": "boom"})
    assert (
        KINDS["graph"].check({"status": "completed", "result": {"outputs": {"sum": [7]}}}) is None
    )
    assert KINDS["graph"].check({"status": "completed", "result": {"outputs": {"sum": [8]}}})
    assert KINDS["cancelled"].check({"status": "cancelled"}) is None
    assert KINDS["cancelled"].check({"status": "completed"})


def test_workload_counts_wrong_answers_as_failed_and_dropped_connections_as_lost() -> None:
    """The echo floor answers a Concat with an explicitly typed output (not what the
    soak asks for) and drops the connection on a graph it cannot decode."""

    async def drive(uri: str) -> Tally:
        tally = Tally()
        driver = Driver(uri, 0, durable=False, period_s=0.0, tally=tally)
        await driver.run(KINDS["single"])
        await driver.run(KINDS["graph"])
        await driver.run(KINDS["single"])
        stop = asyncio.Event()
        stop.set()
        await driver.drive(stop)
        return tally

    plan = CpuPlan(None, None, None)
    with spawn_servers({"floor": python_module("loadtest.echo")}, plan) as servers:
        tally = asyncio.run(drive(servers["floor"].ws_uri))
    assert tally.sent == 4
    assert (tally.completed, tally.failed, tally.lost, tally.reconnects) == (0, 3, 1, 1)
    assert any("wrong output" in f for f in tally.failures)


def test_footprint_reads_this_process_and_sees_a_new_descriptor() -> None:
    before = footprint(os.getpid())
    assert before.rss_kib > 0
    assert before.threads >= 1
    with open(__file__) as _:
        assert footprint(os.getpid()).fds == before.fds + 1


def test_footprint_of_a_finished_process_is_unavailable() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(FootprintUnavailable):
        footprint(gone.pid)


def test_fd_limit_is_raised_up_to_the_hard_limit_only() -> None:
    assert raise_fd_limit(64).enough
    huge = raise_fd_limit(2**62)
    assert not huge.enough
    assert "too low" in huge.describe()


def test_store_argument_forms() -> None:
    assert not parse_store("none").durable
    assert parse_store("sqlite").kind == "sqlite"
    assert parse_store("sqlite:////tmp/x.db").kind == "sqlite"
    assert parse_store("postgresql://postgres@127.0.0.1/postgres").kind == "postgresql"
    with pytest.raises(ValueError, match="--store"):
        parse_store("mysql://x")


def _soak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.soak", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SOAK_TIMEOUT_S,
        check=False,
    )


def test_quick_soak_on_sqlite_verifies_every_kind_and_judges(tmp_path: Path) -> None:
    """Every verdict but the p99 one must pass; that one compares timings of a
    shared machine, so it only has to be present and decide the exit status."""
    out = tmp_path / "soak.json"
    proc = _soak("--store", "sqlite", "--json", str(out))
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    verdicts = {v["name"]: v["passed"] for v in data["verdicts"]}
    assert list(verdicts) == ["rss flat", "fds", "threads", "p99 stable", "runs"]
    assert all(passed for name, passed in verdicts.items() if name != "p99 stable"), proc.stdout
    assert proc.returncode == (0 if all(verdicts.values()) else 1)
    counts = data["counts"]
    assert counts["sent"] > 0
    assert counts["completed"] == counts["sent"]
    assert counts["failed"] == counts["lost"] == counts["duplicates"] == counts["strays"] == 0
    assert set(data["by_kind"]) == set(WEIGHTS)
    # --quick has the server ping every second: pings between run frames are no strays.
    assert data["frames_about_no_run"] > 0
    samples = data["samples"]
    assert len(samples) >= MIN_SAMPLES
    for sample in samples:
        assert 10 * 1024 < sample["rss_kib"] < 2 * 1024 * 1024
        assert sample["fds"] > 10  # connections, listening socket, sqlite
        assert sample["threads"] >= 1
    timed = [s for s in samples if s["p99_ms"] is not None]
    assert timed
    assert all(0 < s["p50_ms"] <= s["p99_ms"] for s in timed)
    assert ("PASS" if proc.returncode == 0 else "FAIL") in proc.stdout.splitlines()[-1]


def test_soak_refuses_an_unknown_store() -> None:
    proc = _soak("--store", "mysql://nowhere")
    assert proc.returncode == 2
    assert "--store must be" in proc.stderr
