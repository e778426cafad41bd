"""Running built-in nodes through a real server and reading what came back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.server.helpers import ServerHandle
from tests.support.client import connect
from tests.support.frames import Frame
from tests.support.graphs import graph

__all__ = ["failure", "outputs", "run", "run_graph"]


async def run(
    server: ServerHandle, nodes: Frame, params: Mapping[str, object] | None = None
) -> list[Frame]:
    """Every frame of one run of the graph ``nodes``, up to its terminal ``job_update``."""
    async with connect(server) as client:
        job_id = await client.run_job(nodes, params=params)
        return await client.until_terminal(job_id)


async def run_graph(server: ServerHandle, *nodes: Frame, edges: list[Frame] | None = None) -> Frame:
    """Run a graph of ``nodes`` (``event_detail=terminal``); its terminal ``job_update``."""
    async with connect(server) as client:
        job_id = await client.run_job(graph(*nodes, edges=edges), event_detail="terminal")
        frames = await client.until_terminal(job_id)
    return frames[-1]


def _terminal(frames: Frame | list[Frame]) -> Frame:
    """The terminal ``job_update``: given, or the last of a run's frames."""
    return frames[-1] if isinstance(frames, list) else frames


def outputs(frames: Frame | list[Frame]) -> Any:
    """``result.outputs`` of a completed run (its terminal frame or all its frames); fails
    the test with the error otherwise."""
    terminal = _terminal(frames)
    assert terminal["status"] == "completed", terminal.get("error", terminal)
    result = terminal["result"]
    assert isinstance(result, dict)
    return result["outputs"]


def failure(
    frames: Frame | list[Frame], node_id: str | None = None, node_type: str | None = None
) -> str:
    """The error of a failed run (its terminal frame or all its frames), asserting it names
    the failing node when ``node_id`` and ``node_type`` are given."""
    terminal = _terminal(frames)
    assert terminal["status"] == "failed", terminal
    error = terminal["error"]
    assert isinstance(error, str)
    if node_id is not None:
        assert f"'{node_id}'" in error or f"({node_id}," in error, error
    if node_type is not None:
        assert node_type in error, error
    return error
