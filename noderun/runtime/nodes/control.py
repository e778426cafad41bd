"""Flow-control nodes under NodeTool's names (``nodetool.control.*``).

* ``If`` sends each value it receives to ``if_true`` or ``if_false`` by the
  latest condition; nothing goes to the other handle, so only the taken
  branch runs.
* ``ForEach`` streams each item of a list with its index.
* ``Collect`` gathers every value of the stream on ``input_item`` and sends
  the list once that stream has ended (every upstream node is done): the
  runtime calls it once, with the gathered list (``gather=``).
* ``Reroute`` passes each value through unchanged.

``If``, ``ForEach`` and ``Reroute`` are streaming nodes (async generators), as
NodeTool declares them, so a client sees ``is_streaming_output`` as NodeTool's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from noderun.runtime.node import node


@node("nodetool.control.If", title="If", outputs={"if_true": Any, "if_false": Any})
async def if_(condition: bool = False, value: Any = ()) -> AsyncIterator[dict[str, Any]]:
    """Route the value to if_true when the condition holds, else to if_false."""
    yield {"if_true": value} if condition else {"if_false": value}


@node("nodetool.control.ForEach", title="For Each", outputs={"output": Any, "index": int})
async def for_each(
    input_list: list[Any] = [],  # noqa: B006 - never mutated
) -> AsyncIterator[dict[str, Any]]:
    """Stream each item of the list on output, with its position on index."""
    for index, item in enumerate(input_list):
        yield {"output": item, "index": index}


@node("nodetool.control.Collect", title="Collect", inline=True, gather=("input_item",))
def collect(input_item: Any = ()) -> list[Any]:
    """Every value that arrived on input_item, in order, as one list when the stream ends
    (an empty list when nothing arrived)."""
    return list(input_item)


@node("nodetool.control.Reroute", title="Reroute")
async def reroute(input_value: Any = ()) -> AsyncIterator[Any]:
    """Pass the value through unchanged (tidier layouts)."""
    yield input_value


NODES = [if_, for_each, collect, reroute]
