"""``noderun serve`` as a real process: flags, NODERUN_* variables, SIGTERM, bad settings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.server.helpers import CONFORMANT
from tests.support.client import connect
from tests.support.graphs import graph, nd
from tests.support.ports import free_port
from tests.support.timing import TIMEOUT
from tests.support.waiting import eventually_blocking
from tests.support.workflows import GREET, SUM


def health(port: int) -> dict[str, object] | None:
    """The /health body, or None while nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError):
        return None
    assert isinstance(body, dict)
    return body


class Serve:
    """A ``python -m noderun serve`` subprocess, its output in files."""

    def __init__(self, tmp_path: Path, args: list[str], env: Mapping[str, str]) -> None:
        self.log = tmp_path / "serve.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("NODERUN_")}
        full_env.update(env)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "noderun", "serve", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=tmp_path,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, port: int) -> dict[str, object]:
        def answered() -> dict[str, object] | None:
            assert self.process.poll() is None, f"server exited early:\n{self.output()}"
            return health(port)

        body = eventually_blocking(answered, explain=self.output)
        assert body is not None
        return body

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"SIGTERM did not stop the server:\n{self.output()}") from None


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[Serve]]:
    """Started servers; killed at the end if a test left one running."""
    started: list[Serve] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def start(serve: list[Serve], tmp_path: Path, args: list[str], env: Mapping[str, str]) -> Serve:
    server = Serve(tmp_path, args, env)
    serve.append(server)
    return server


def test_serve_with_flags_answers_health_and_stops_cleanly_on_sigterm(
    serve: list[Serve], tmp_path: Path
) -> None:
    """noderun serve --port P --store none: /health OK, SIGTERM → exit code 0."""
    port = free_port()
    server = start(serve, tmp_path, ["--port", str(port), "--store", "none"], {})
    body = server.wait_healthy(port)
    assert body["status"] == "ok"
    assert server.terminate() == 0, server.output()


def test_serve_reads_port_from_the_environment(serve: list[Serve], tmp_path: Path) -> None:
    """NODERUN_PORT (and NODERUN_STORE) configure the server when no flag is given."""
    port = free_port()
    server = start(serve, tmp_path, [], {"NODERUN_PORT": str(port), "NODERUN_STORE": "none"})
    assert server.wait_healthy(port)["status"] == "ok"
    assert server.terminate() == 0, server.output()


def test_bad_environment_value_exits_2_with_a_message(serve: list[Serve], tmp_path: Path) -> None:
    """NODERUN_PORT=abc → exit code 2 and a message naming the variable."""
    server = start(serve, tmp_path, ["--store", "none"], {"NODERUN_PORT": "abc"})
    assert server.process.wait(TIMEOUT) == 2
    assert "NODERUN_PORT" in server.output()


def test_sigterm_ends_active_runs_with_a_terminal_frame_before_closing(
    serve: list[Serve], tmp_path: Path
) -> None:
    """A graceful stop with no drain time cancels in-flight runs and their clients get
    ``job_update cancelled`` before the socket closes (not a bare 1012 close)."""
    port = free_port()
    args = ["--port", str(port), "--store", "none", "--debug-nodes", "--drain-timeout", "0"]
    server = start(serve, tmp_path, args, {})
    server.wait_healthy(port)

    async def scenario() -> list[dict[str, object]]:
        async with connect(f"ws://127.0.0.1:{port}/ws", options=CONFORMANT) as client:
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


def test_missing_workflows_directory_exits_2(serve: list[Serve], tmp_path: Path) -> None:
    """--workflows naming no directory → exit code 2 and a message naming it."""
    server = start(serve, tmp_path, ["--store", "none", "--workflows", "nowhere"], {})
    assert server.process.wait(TIMEOUT) == 2
    assert "'nowhere' does not exist" in server.output()


def test_sighup_reloads_the_workflows_directory(serve: list[Serve], tmp_path: Path) -> None:
    """NODERUN_WORKFLOWS is read at start; after SIGHUP a new file is served and a
    removed one is gone; a directory that vanished keeps the last catalog."""
    directory = tmp_path / "workflows"
    directory.mkdir()
    (directory / "sum.json").write_text(json.dumps(SUM))
    port = free_port()
    server = start(
        serve,
        tmp_path,
        ["--port", str(port), "--store", "none"],
        {"NODERUN_WORKFLOWS": str(directory)},
    )
    server.wait_healthy(port)
    assert workflow_ids(port) == ["sum"]
    (directory / "greet.json").write_text(json.dumps(GREET))
    (directory / "sum.json").unlink()
    server.process.send_signal(signal.SIGHUP)
    eventually_blocking(lambda: workflow_ids(port) == ["greet"], explain=server.output)

    async def run_greet() -> dict[str, object]:
        async with connect(f"ws://127.0.0.1:{port}/ws", options=CONFORMANT) as client:
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
    serve: list[Serve], tmp_path: Path
) -> None:
    """--max-* flags (and NODERUN_MAX_*) set the limits the server advertises; a limit
    under 1 is refused at start with a message naming it."""
    port = free_port()
    args = ["--port", str(port), "--store", "none", "--max-runs-per-user", "3"]
    server = start(serve, tmp_path, args, {"NODERUN_MAX_FRAME_BYTES": "65536"})
    server.wait_healthy(port)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://127.0.0.1:{port}/api/sdk/v1/capabilities"
    with opener.open(url, timeout=TIMEOUT) as response:
        limits = json.loads(response.read())["limits"]
    assert (limits["max_runs_per_user"], limits["max_frame_bytes"]) == (3, 65536)
    assert server.terminate() == 0, server.output()

    refused = start(serve, tmp_path, ["--store", "none", "--max-connections", "0"], {})
    assert refused.process.wait(TIMEOUT) == 2
    assert "invalid --max-connections '0'" in refused.output()
