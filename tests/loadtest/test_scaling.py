"""``loadtest.scaling`` and its lean client against real servers.

The lean client must verify what the benchmark's client verifies: a wrong answer is
a failure, not a run. No test asserts a timing: numbers only have to be present.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from loadtest.client import RunSpec
from loadtest.rawclient import open_connection
from loadtest.servers import HOST, python_module, spawn_servers, unpinned

ROOT = Path(__file__).resolve().parents[2]
SCALING_TIMEOUT_S = 90


def test_the_lean_client_counts_verified_runs_and_failures() -> None:
    noderun = python_module("noderun", "serve", "--log-level", "warning", "--store", "none")
    with spawn_servers({"noderun": noderun}, unpinned()) as servers:
        port = servers["noderun"].port

        async def drive(spec: RunSpec) -> tuple[int, int, str | None]:
            conn = await open_connection(HOST, port, spec)
            try:
                conn.start(time.perf_counter() + 0.2)
                await asyncio.wait_for(conn.idle, 10)
            finally:
                conn.close()
            return conn.tally.completed, conn.tally.failures, conn.tally.first_failure

        completed, failures, _ = asyncio.run(drive(RunSpec("terminal")))
        assert completed > 0
        assert failures == 0
        # A node type the server does not have: every run is refused, none counted as done.
        completed, failures, first = asyncio.run(drive(RunSpec("terminal", node_type="no.Such")))
        assert completed == 0
        assert failures > 0
        assert first is not None


def test_scaling_compares_worker_counts_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    args = ["--workers", "1,2", "--rounds", "1", "--duration", "0.3", "--connections", "4"]
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.scaling", *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SCALING_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--workers 2 / --workers 1: runs/s" in result.stdout
    windows = {entry["workers"]: entry["windows"] for entry in json.loads(out.read_text())}
    assert set(windows) == {1, 2}
    for runs in windows.values():
        assert runs[0]["runs"] > 0
        assert runs[0]["failures"] == 0
