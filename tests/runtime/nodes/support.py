"""Running a graph through a real server and reading what came back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.server.helpers import ServerHandle
from tests.support.client import connect
from tests.support.frames import Frame


async def run(
    server: ServerHandle, nodes: Frame, params: Mapping[str, object] | None = None
) -> list[Frame]:
    """Every frame of one run of ``nodes``, up to its terminal ``job_update``."""
    async with connect(server) as client:
        job_id = await client.run_job(nodes, params=params)
        return await client.until_terminal(job_id)


def outputs(frames: list[Frame]) -> Any:
    """``result.outputs`` of a completed run (fails the test with the error otherwise)."""
    terminal = frames[-1]
    assert terminal["status"] == "completed", terminal.get("error")
    return terminal["result"]["outputs"]


def failure(frames: list[Frame]) -> str:
    """The error of a failed run (fails the test if the run did not fail)."""
    terminal = frames[-1]
    assert terminal["status"] == "failed", terminal
    error = terminal["error"]
    assert isinstance(error, str)
    return error
