"""Fixtures of the end-to-end tests: a real uvicorn server on a free port, in a thread.

``async def`` tests run to completion in a fresh event loop (no pytest-asyncio).
Each module shares one server (``server``); tests that need other settings start
their own with :func:`tests.server.helpers.running_server`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest

from tests.server.helpers import ServerHandle, running_server


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests to completion in a fresh event loop."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    names = inspect.signature(function).parameters
    asyncio.run(function(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    """An ephemeral-only server (``store="none"``), shared by the tests of one module."""
    with running_server() as handle:
        yield handle
