"""``noderun serve --workers N`` as real processes: runs served by every child, a killed
child replaced while the port keeps serving, the drain of all on SIGTERM, per-child
server ids, durable runs reconnected through another child, start-up errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from noderun.server.settings import Settings
from noderun.server.supervisor import (
    MAX_RESTART_DELAY,
    restart_delay,
    worker_server_id,
)
from tests.server.helpers import CONFORMANT
from tests.server.process import Process
from tests.support.client import Client, connect
from tests.support.frames import Frame
from tests.support.graphs import graph, nd, progress_graph
from tests.support.timing import TIMEOUT
from tests.support.waiting import eventually_blocking

PID_NODES = textwrap.dedent(
    """
    import os

    from noderun import node

    @node("test.Pid", inline=True)
    def pid() -> int:
        return os.getpid()
    """
)

#: Connections tried before concluding that the children do not share the port.
ATTEMPTS = 60


def events(server: Process, name: str) -> list[dict[str, object]]:
    """The JSON log lines of ``server`` whose event is ``name``."""
    # Several processes write to one file, each record in one write: whole lines.
    found = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == name:
                found.append(record)
    return found


def wait_for_event(server: Process, name: str, count: int) -> list[dict[str, object]]:
    """Until ``server`` logged ``name`` ``count`` times; fails if it exits first."""

    def logged() -> list[dict[str, object]] | None:
        found = events(server, name)
        if len(found) >= count:
            return found
        assert server.process.poll() is None, f"server exited:\n{server.output()}"
        return None

    found = eventually_blocking(
        logged, TIMEOUT * 2, explain=lambda: f"{name} not logged {count} times:\n{server.output()}"
    )
    assert found is not None
    return found


async def pid_of(client: Client) -> int:
    """The pid of the process serving ``client``'s connection (it runs ``test.Pid``)."""
    job_id = await client.run_job(graph(nd("p", "test.Pid")))
    terminal = (await client.until_terminal(job_id))[-1]
    assert terminal["status"] == "completed", terminal
    result = terminal["result"]
    assert isinstance(result, dict)
    pid = result["outputs"]["p"]["output"]
    assert isinstance(pid, int)
    return pid


async def pids_serving(port: int, connections: int) -> set[int]:
    """The pids that served ``connections`` connections open at once."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                connect(f"ws://127.0.0.1:{port}/ws", options=CONFORMANT)
            )
            for _ in range(connections)
        ]
        return set(await asyncio.gather(*(pid_of(client) for client in clients)))


def serve_workers(tmp_path: Path, *args: str) -> Process:
    (tmp_path / "pidnodes.py").write_text(PID_NODES)
    return Process.serve(["--workers", "2", "--nodes", "pidnodes", *args], tmp_path)


def test_two_workers_serve_on_one_port_replace_a_killed_child_and_drain(
    processes: list[Process], tmp_path: Path
) -> None:
    server = serve_workers(tmp_path, "--store", f"sqlite:///{tmp_path / 'runs.db'}")
    processes.append(server)
    server.wait_ready()
    listening = wait_for_event(server, "server.listening", 2)
    children = {record["worker"]: record["pid"] for record in listening}
    assert set(children) == {0, 1}, listening
    assert server.process.pid not in children.values()
    # Each child is its own durable-run owner, named after its index.
    ids = sorted(str(record["server_id"]) for record in events(server, "store.started"))
    assert [server_id[-3:] for server_id in ids] == [":w0", ":w1"], ids
    assert ids[0][:-3] == ids[1][:-3]

    seen: set[int] = set()
    for _ in range(ATTEMPTS):
        seen |= asyncio.run(pids_serving(server.port, 8))
        if len(seen) == 2:
            break
    assert seen == set(children.values()), (seen, children)

    victim = children[0]
    os.kill(int(str(victim)), signal.SIGKILL)
    crashed = wait_for_event(server, "worker.crashed", 1)
    assert crashed[0]["worker"] == 0 and crashed[0]["pid"] == victim, crashed
    listening = wait_for_event(server, "server.listening", 3)
    replacement = listening[-1]
    assert replacement["worker"] == 0 and replacement["pid"] != victim, listening
    restarted_ids = [str(record["server_id"]) for record in events(server, "store.started")]
    assert restarted_ids[-1] == ids[0], restarted_ids  # the same id as its predecessor

    seen = set()
    for _ in range(ATTEMPTS):
        seen |= asyncio.run(pids_serving(server.port, 8))
        if len(seen) == 2:
            break
    assert seen == {replacement["pid"], children[1]}, seen

    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.output()
    stopped = events(server, "worker.stopped")
    assert {record["worker"] for record in stopped} == {0, 1}, stopped
    assert [record["exitcode"] for record in stopped] == [0, 0], stopped
    assert len(events(server, "server.drained")) == 2


def test_a_durable_run_started_on_one_child_is_reconnected_through_the_other(
    processes: list[Process], tmp_path: Path
) -> None:
    server = serve_workers(
        tmp_path, "--store", f"sqlite:///{tmp_path / 'runs.db'}", "--debug-nodes"
    )
    processes.append(server)
    server.wait_ready()
    wait_for_event(server, "server.listening", 2)

    async def scenario() -> tuple[int, int, list[Frame]]:
        async with connect(server) as owner:
            owner_pid = await pid_of(owner)
            ephemeral = await owner.run_job(graph(nd("p", "test.Pid")))
            await owner.until_terminal(ephemeral)
            job_id = await owner.run_job(
                progress_graph(20, 0.05), durable=True, require_terminal_result=False
            )
            for _ in range(ATTEMPTS):
                async with connect(server) as other:
                    other_pid = await pid_of(other)
                    if other_pid == owner_pid:
                        continue
                    await other.command("reconnect_job", {"job_id": job_id, "workflow_id": "wf"})
                    followed = await other.until_terminal(job_id)
                    await owner.until_terminal(job_id)
                    # An ephemeral run is in its process's memory only.
                    await other.command("reconnect_job", {"job_id": ephemeral, "workflow_id": "wf"})
                    missing = await other.until_terminal(ephemeral)
                    return owner_pid, other_pid, followed + missing
            raise AssertionError(f"every connection went to {owner_pid}:\n{server.output()}")

    owner_pid, other_pid, frames = asyncio.run(scenario())
    assert owner_pid != other_pid
    resumed = [frame for frame in frames if frame.get("type") == "job_resumed"]
    assert len(resumed) == 1, frames
    durable = [frame for frame in frames if frame.get("job_id") == resumed[0]["job_id"]]
    assert durable[0] is resumed[0], durable
    assert durable[-1]["status"] == "completed", durable[-1]
    assert "steps" in json.dumps(durable[-1]["result"]), durable[-1]
    missing = frames[-1]
    assert missing["job_id"] != resumed[0]["job_id"], frames
    assert (missing["status"], missing["error"]) == ("failed", "job not found"), missing
    server.signal(signal.SIGINT)
    assert server.wait() == 0, server.output()


def test_a_child_that_cannot_start_stops_the_server_with_its_status(
    processes: list[Process], tmp_path: Path
) -> None:
    """The children load the node modules: one that cannot be imported is a start-up
    error of every child, so the parent stops with the children's status, 2."""
    server = Process.serve(["--workers", "2", "--nodes", "no_such_module_here"], tmp_path)
    processes.append(server)
    assert server.wait() == 2, server.output()
    assert "noderun: --nodes 'no_such_module_here'" in server.output()
    assert events(server, "worker.start_failed"), server.output()


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_workers_must_be_a_positive_number(
    processes: list[Process], tmp_path: Path, value: str
) -> None:
    server = Process.serve(["--workers", value], tmp_path)
    processes.append(server)
    assert server.wait() == 2
    assert "invalid --workers" in server.output(), server.output()


def test_children_ids_derive_from_the_base_id_and_their_index() -> None:
    assert worker_server_id(Settings(server_id="edge-a"), 7777, 3) == "edge-a:w3"
    derived = worker_server_id(Settings(), 8080, 1)
    assert derived.endswith(":8080:" + derived.split(":")[-2] + ":w1"), derived
    assert worker_server_id(Settings(), 8080, 0) != worker_server_id(Settings(), 8080, 1)


def test_restart_delay_doubles_up_to_a_limit() -> None:
    delays = [restart_delay(crashes) for crashes in range(1, 12)]
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert delays == sorted(delays)
    assert delays[-1] == MAX_RESTART_DELAY
