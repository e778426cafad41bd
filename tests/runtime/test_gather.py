"""Gathering nodes (``@node(..., gather=...)``): one call with a whole stream, at its end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from noderun.runtime.errors import RegistryError
from noderun.runtime.node import node as define
from noderun.runtime.node import spec_of
from noderun.runtime.nodes import BUILTIN_NODES
from noderun.runtime.registry import Registry
from tests.support.hub import Collector, edge, node, request, running_hub, start

CALLS: list[dict[str, Any]] = []


@define("test.gather.Gather", inline=True, gather=("items",))
def gather(items: Any = (), label: str = "") -> dict[str, Any]:
    CALLS.append({"items": list(items), "label": label})
    return {"label": label, "items": list(items)}


@define("test.gather.Emit")
async def emit(count: int = 3) -> AsyncIterator[int]:
    for value in range(count):
        yield value


def registry() -> Registry:
    return Registry([*BUILTIN_NODES, gather, emit])


def test_gather_must_name_a_property() -> None:
    with pytest.raises(RegistryError, match="gather names no property: nope"):

        @define("test.gather.Bad", gather=("nope",))
        def bad(items: Any = ()) -> Any:
            return items


def test_gather_is_on_the_spec() -> None:
    assert spec_of(gather).gather == frozenset({"items"})
    assert spec_of(emit).gather == frozenset()


async def test_gathers_a_stream_and_fires_once_at_its_end() -> None:
    """Two streams into one gathered input: one call with every value, once both ended;
    a non-gathered input keeps its latest value."""
    CALLS.clear()
    async with running_hub(registry()) as hub:
        sink = Collector()
        frame = request(
            [
                node("a", "test.gather.Emit", count=3),
                node("b", "test.gather.Emit", count=2),
                node("l", "nodetool.constant.String", value="L"),
                node("g", "test.gather.Gather"),
            ],
            [edge("a", "g", "items"), edge("b", "g", "items"), edge("l", "g", "label")],
        )
        start(hub, frame, sink)
        terminal = await sink.terminal()
    assert terminal.status == "completed", terminal.error
    assert len(CALLS) == 1
    assert sorted(CALLS[0]["items"]) == [0, 0, 1, 1, 2]
    assert CALLS[0]["label"] == "L"


async def test_gather_without_edges_fires_once_with_an_empty_list() -> None:
    """No upstream: the stream is empty from the start; data never stands in for it."""
    CALLS.clear()
    async with running_hub(registry()) as hub:
        sink = Collector()
        start(hub, request([node("g", "test.gather.Gather", items=[9], label="x")]), sink)
        terminal = await sink.terminal()
    assert terminal.status == "completed", terminal.error
    assert CALLS == [{"items": [], "label": "x"}]
    assert terminal.result == {"outputs": {"g": {"output": {"label": "x", "items": []}}}}


async def test_gather_of_a_stream_that_produced_nothing() -> None:
    CALLS.clear()
    async with running_hub(registry()) as hub:
        sink = Collector()
        frame = request(
            [node("a", "test.gather.Emit", count=0), node("g", "test.gather.Gather")],
            [edge("a", "g", "items")],
        )
        start(hub, frame, sink)
        terminal = await sink.terminal()
    assert terminal.status == "completed", terminal.error
    assert CALLS == [{"items": [], "label": ""}]
