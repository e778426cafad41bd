"""Fixtures of the node tests: one real server per module, as in ``tests/server``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.helpers import ServerHandle, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    """An ephemeral-only server (``store="none"``), shared by the tests of one module."""
    with running_server() as handle:
        yield handle
