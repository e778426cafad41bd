"""``noderun serve`` as a real process: flags, NODERUN_* variables, SIGTERM, bad settings."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.server.process import Process
from tests.support.client import connect
from tests.support.graphs import graph, nd
from tests.support.ports import free_port
from tests.support.timing import TIMEOUT
from tests.support.waiting import eventually_blocking
from tests.support.workflows import GREET, SUM


def start(
    processes: list[Process],
    tmp_path: Path,
    args: list[str],
    env: Mapping[str, str],
    port: int | None = None,
) -> Process:
    """``python -m noderun serve args`` (the module; the other tests run the console
    script), listening on ``port`` if the arguments or ``env`` say so."""
    server = Process([sys.executable, "-m", "noderun", "serve", *args], tmp_path, env, port)
    processes.append(server)
    return server


def test_serve_with_flags_answers_health_and_stops_cleanly_on_sigterm(
    processes: list[Process], tmp_path: Path
) -> None:
    """noderun serve --port P --store none: /health OK, SIGTERM → exit code 0."""
    port = free_port()
    server = start(processes, tmp_path, ["--port", str(port), "--store", "none"], {}, port)
    body = server.wait_healthy()
    assert body["status"] == "ok"
    assert server.terminate() == 0, server.output()


def test_serve_reads_port_from_the_environment(processes: list[Process], tmp_path: Path) -> None:
    """NODERUN_PORT (and NODERUN_STORE) configure the server when no flag is given."""
    port = free_port()
    env = {"NODERUN_PORT": str(port), "NODERUN_STORE": "none"}
    server = start(processes, tmp_path, [], env, port)
    assert server.wait_healthy()["status"] == "ok"
    assert server.terminate() == 0, server.output()


def test_bad_environment_value_exits_2_with_a_message(
    processes: list[Process], tmp_path: Path
) -> None:
    """NODERUN_PORT=abc → exit code 2 and a message naming the variable."""
    server = start(processes, tmp_path, ["--store", "none"], {"NODERUN_PORT": "abc"})
    assert server.process.wait(TIMEOUT) == 2
    assert "NODERUN_PORT" in server.output()


def test_sigterm_ends_active_runs_with_a_terminal_frame_before_closing(
    processes: list[Process], tmp_path: Path
) -> None:
    """A graceful stop with no drain time cancels in-flight runs and their clients get
    ``job_update cancelled`` before the socket closes (not a bare 1012 close)."""
    port = free_port()
    args = ["--port", str(port), "--store", "none", "--debug-nodes", "--drain-timeout", "0"]
    server = start(processes, tmp_path, args, {}, port)
    server.wait_healthy()

    async def scenario() -> list[dict[str, object]]:
        async with connect(server) as client:
            job_id = await client.run_job(graph(nd("s", "noderun.debug.Sleep", seconds=30)))
            await client.recv_until(lambda f: f.get("status") == "running")
            server.process.send_signal(signal.SIGTERM)
            return await client.until_terminal(job_id)

    frames = asyncio.run(scenario())
    assert frames[-1]["status"] == "cancelled"
    assert frames[-1]["message"] == "server shutting down"
    assert server.process.wait(TIMEOUT) == 0, server.output()


def workflow_ids(port: int) -> list[str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/api/workflows", timeout=TIMEOUT) as response:
        body = json.loads(response.read())
    return [workflow["id"] for workflow in body["workflows"]]


def test_missing_workflows_directory_exits_2(processes: list[Process], tmp_path: Path) -> None:
    """--workflows naming no directory → exit code 2 and a message naming it."""
    server = start(processes, tmp_path, ["--store", "none", "--workflows", "nowhere"], {})
    assert server.process.wait(TIMEOUT) == 2
    assert "'nowhere' does not exist" in server.output()


def test_sighup_reloads_the_workflows_directory(processes: list[Process], tmp_path: Path) -> None:
    """NODERUN_WORKFLOWS is read at start; after SIGHUP a new file is served and a
    removed one is gone; a directory that vanished keeps the last catalog."""
    directory = tmp_path / "workflows"
    directory.mkdir()
    (directory / "sum.json").write_text(json.dumps(SUM))
    port = free_port()
    server = start(
        processes,
        tmp_path,
        ["--port", str(port), "--store", "none"],
        {"NODERUN_WORKFLOWS": str(directory)},
        port,
    )
    server.wait_healthy()
    assert workflow_ids(port) == ["sum"]
    (directory / "greet.json").write_text(json.dumps(GREET))
    (directory / "sum.json").unlink()
    server.process.send_signal(signal.SIGHUP)
    eventually_blocking(lambda: workflow_ids(port) == ["greet"], explain=server.output)

    async def run_greet() -> dict[str, object]:
        async with connect(server) as client:
            job_id = await client.run_job(None, workflow_id="greet", params={"name": "HUP"})
            return (await client.until_terminal(job_id))[-1]

    # The runs see the reloaded catalog too, not only the listing.
    assert asyncio.run(run_greet())["result"] == {"outputs": {"greeting": ["Hello, HUP"]}}
    (directory / "greet.json").unlink()
    directory.rmdir()
    server.process.send_signal(signal.SIGHUP)
    eventually_blocking(lambda: "workflows.reload_failed" in server.output(), explain=server.output)
    assert workflow_ids(port) == ["greet"]
    assert server.terminate() == 0, server.output()


def test_limit_flags_reach_capabilities_and_a_zero_limit_exits_2(
    processes: list[Process], tmp_path: Path
) -> None:
    """--max-* flags (and NODERUN_MAX_*) set the limits the server advertises; a limit
    under 1 is refused at start with a message naming it."""
    port = free_port()
    args = ["--port", str(port), "--store", "none", "--max-runs-per-user", "3"]
    server = start(processes, tmp_path, args, {"NODERUN_MAX_FRAME_BYTES": "65536"}, port)
    server.wait_healthy()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://127.0.0.1:{port}/api/sdk/v1/capabilities"
    with opener.open(url, timeout=TIMEOUT) as response:
        limits = json.loads(response.read())["limits"]
    assert (limits["max_runs_per_user"], limits["max_frame_bytes"]) == (3, 65536)
    assert server.terminate() == 0, server.output()

    refused = start(processes, tmp_path, ["--store", "none", "--max-connections", "0"], {})
    assert refused.process.wait(TIMEOUT) == 2
    assert "invalid --max-connections '0'" in refused.output()
