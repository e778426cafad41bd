"""The locustfile against a real server: locust runs headless for a few seconds, reports runs
and no failures (every terminal is verified by the locustfile itself)."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.helpers import running_server
from tests.support.timing import START_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


def _locust(host: str, users: list[str], csv_prefix: Path, seconds: int) -> None:
    # Not imported here: importing locust monkey-patches this process for gevent.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (pip install -e '.[dev]')")
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--run-time",
        f"{seconds}s",
        "--host",
        host,
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        *users,
    ]
    subprocess.run(
        command, check=False, timeout=START_TIMEOUT, env={**os.environ}, capture_output=True
    )


def _stats(csv_prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{csv_prefix}_stats.csv", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def test_locust_reports_verified_runs_of_every_scenario(tmp_path: Path) -> None:
    with running_server(store=f"sqlite:///{tmp_path / 'runs.db'}") as server:
        prefix = tmp_path / "locust"
        _locust(
            f"ws://127.0.0.1:{server.port}",
            ["SingleNodeUser", "GraphUser", "FullUser", "DurableUser", "MixedUser"],
            prefix,
            seconds=4,
        )
    stats = _stats(prefix)
    aggregated = stats.pop("Aggregated")
    assert int(aggregated["Request Count"]) > 0
    assert int(aggregated["Failure Count"]) == 0, (tmp_path / "locust_failures.csv").read_text()
    for name in ("single node", "graph", "single node, full", "durable"):
        assert int(stats[name]["Request Count"]) > 0, name


def test_locust_counts_a_wrong_answer_as_a_failure(tmp_path: Path) -> None:
    # A server with auth on refuses the locust user (no token): every connect fails.
    with running_server(tokens=("secret",)) as server:
        prefix = tmp_path / "locust"
        _locust(f"ws://127.0.0.1:{server.port}", ["SingleNodeUser"], prefix, seconds=4)
    aggregated = _stats(prefix)["Aggregated"]
    assert int(aggregated["Failure Count"]) > 0
