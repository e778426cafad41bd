"""The server's collector settings: start-up objects frozen, young collections rarer
(by ``serve()`` only)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from noderun.server.heap import YOUNG_THRESHOLD, settle_heap
from tests.server.helpers import running_server

_DEFAULT = (700, 10, 10)  # CPython's


@pytest.fixture
def default_gc() -> Iterator[None]:
    """CPython's settings during the test (servers of earlier tests changed them)."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(*_DEFAULT)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("default_gc")
def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *_DEFAULT[1:])


@pytest.mark.usefixtures("default_gc")
def test_building_and_running_the_app_leaves_the_collector_alone() -> None:
    """Only ``serve()`` tunes the collector (see ``test_serve``): an app embedded in
    another process must not retune that process's GC."""
    with running_server():
        assert gc.get_threshold() == _DEFAULT
        assert gc.get_freeze_count() == 0
