"""The many-connections test against a real ``noderun serve``: quick mode opens 200
connections through two client processes, runs one verified run on each and
reports plausible figures; a hard open-file limit too low for the server is
refused with a message that says so.

No test asserts a timing: figures only have to be present and plausible.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 50


def _connections(*args: str, hard_fd_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "loadtest.connections", "--quick", *args]
    if hard_fd_limit is not None:
        # bash's ``ulimit -n`` sets the soft and the hard limit; no preexec_fn needed.
        command = ["bash", "-c", f'ulimit -n {hard_fd_limit} && exec "$0" "$@"', *command]
    return subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_quick_connections_open_run_idle_and_close(tmp_path: Path) -> None:
    out = tmp_path / "connections.json"
    proc = _connections("--clients", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    n = report["requested"]
    assert n == 200
    assert report["clients"] == 2
    assert report["established"] == report["runs_completed"] == report["open_after_idle"] == n
    assert report["open_failures"] == report["runs_failed"] == 0
    assert 0 < report["handshake_p50_ms"] <= report["handshake_p99_ms"]
    assert report["open_all_s"] > 0
    before, all_open, after = report["before"], report["all_open"], report["after_close"]
    # Every connection is a descriptor on the server while open, and released after.
    assert all_open["fds"] >= before["fds"] + n
    assert after["fds"] <= before["fds"]
    # Some memory per connection, and not absurdly much.
    assert 0 < report["rss_per_connection_kib"] < 1024
    assert report["passed"] is True
    assert "PASS" in proc.stdout


def test_too_low_a_hard_open_file_limit_is_an_error_that_says_so() -> None:
    proc = _connections("--connections", "1000", hard_fd_limit=256)
    assert proc.returncode == 2
    assert "open-file limit too low" in proc.stderr
    assert "1128 descriptors needed" in proc.stderr
