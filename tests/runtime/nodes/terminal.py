"""Running built-in nodes through a real server and reading the terminal frame."""

from __future__ import annotations

from typing import Any

from tests.server.helpers import ServerHandle
from tests.support.client import connect
from tests.support.frames import Frame
from tests.support.graphs import graph


async def run_graph(server: ServerHandle, *nodes: Frame, edges: list[Frame] | None = None) -> Frame:
    """Run a graph over a real WebSocket; the terminal ``job_update``."""
    async with connect(server) as client:
        job_id = await client.run_job(graph(*nodes, edges=edges), event_detail="terminal")
        frames = await client.until_terminal(job_id)
    return frames[-1]


def outputs(terminal: Frame) -> dict[str, Any]:
    """``result.outputs`` of a completed run (asserting it completed)."""
    assert terminal["status"] == "completed", terminal
    result = terminal["result"]
    assert isinstance(result, dict)
    found = result["outputs"]
    assert isinstance(found, dict)
    return found


def failure(terminal: Frame, node_id: str, node_type: str) -> str:
    """The error of a failed run, asserting it names the failing node (its id and type)."""
    assert terminal["status"] == "failed", terminal
    error = terminal["error"]
    assert isinstance(error, str)
    assert f"'{node_id}'" in error or f"({node_id}," in error, error
    assert node_type in error, error
    return error
