"""Fixtures of the end-to-end tests: a real uvicorn server on a free port, in a thread.

``async def`` tests run through the hook in ``tests/conftest.py`` (a fresh event loop
each). Each module shares one server (``server``); tests that need other settings
start their own with :func:`tests.server.helpers.running_server`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.helpers import ServerHandle, running_server
from tests.server.process import Process


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    """An ephemeral-only server (``store="none"``), shared by the tests of one module."""
    with running_server() as handle:
        yield handle


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Append every started server :class:`Process`; any still running at the end is killed."""
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()
