"""List nodes under NodeTool's names (``nodetool.list.*``).

Every node returns a new list: an input list may be the same object another
node received, so none is changed in place (NodeTool's ``Append``/``Extend``
mutate their input; the result is the same). Set-like nodes (``Dedupe``,
``Union``, ``Intersection``, ``Difference``) keep first-seen order where
NodeTool's ``set`` gives an arbitrary one; unhashable items fail the node, as
in NodeTool. Numeric aggregates of an empty list fail the node, as in NodeTool.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec

from noderun.runtime.node import node

Numbers = list[float]
ChunkSize = Annotated[int, msgspec.Meta(gt=0)]
MaxDepth = Annotated[int, msgspec.Meta(ge=-1, description="-1 flattens every level")]


@node("nodetool.list.Length", title="Length", inline=True)
def length(values: list[Any] = []) -> int:  # noqa: B006 - never mutated
    """The number of items in a list."""
    return len(values)


@node("nodetool.list.ListRange", title="List Range", inline=True)
def list_range(start: int = 0, stop: int = 0, step: int = 1) -> list[int]:
    """The integers from start up to (not including) stop, step apart; step 0 fails."""
    return list(range(start, stop, step))


@node("nodetool.list.GenerateSequence", title="Generate Sequence")
async def generate_sequence(start: int = 0, stop: int = 0, step: int = 1) -> AsyncIterator[int]:
    """Stream the integers from start up to (not including) stop, one at a time."""
    for number in range(start, stop, step):
        yield number


@node("nodetool.list.Slice", title="Slice", inline=True)
def slice_list(
    values: list[Any] = [],  # noqa: B006 - never mutated
    start: int = 0,
    stop: Annotated[int, msgspec.Meta(description="0 slices to the end")] = 0,
    step: int = 1,
) -> list[Any]:
    """values[start:stop:step], Python's rules, with stop 0 meaning the end of the list."""
    return values[start : stop or None : step]


@node("nodetool.list.SelectElements", title="Select Elements", inline=True)
def select_elements(
    values: list[Any] = [],  # noqa: B006 - never mutated
    indices: list[int] = [],  # noqa: B006 - never mutated
) -> list[Any]:
    """The items at the given indices, in that order; an index out of range fails."""
    return [values[index] for index in indices]


@node("nodetool.list.GetElement", title="Get Element", inline=True)
def get_element(values: list[Any] = [], index: int = 0) -> Any:  # noqa: B006 - never mutated
    """The item at index (negative counts from the end); out of range fails."""
    return values[index]


@node("nodetool.list.Append", title="Append", inline=True)
def append(values: list[Any] = [], value: Any = ()) -> list[Any]:  # noqa: B006 - never mutated
    """The list with value added at the end."""
    return [*values, value]


@node("nodetool.list.Extend", title="Extend", inline=True)
def extend(
    values: list[Any] = [],  # noqa: B006 - never mutated
    other_values: list[Any] = [],  # noqa: B006 - never mutated
) -> list[Any]:
    """The first list followed by the items of the second."""
    return [*values, *other_values]


@node("nodetool.list.Dedupe", title="Dedupe", inline=True)
def dedupe(values: list[Any] = []) -> list[Any]:  # noqa: B006 - never mutated
    """The list without repeated items (first occurrence kept)."""
    return list(dict.fromkeys(values))


@node("nodetool.list.Reverse", title="Reverse", inline=True)
def reverse(values: list[Any] = []) -> list[Any]:  # noqa: B006 - never mutated
    """The list in reverse order."""
    return values[::-1]


@node("nodetool.list.Randomize", title="Randomize", inline=True)
def randomize(values: list[Any] = []) -> list[Any]:  # noqa: B006 - never mutated
    """The items of the list in a random order."""
    shuffled = list(values)
    random.shuffle(shuffled)
    return shuffled


@node("nodetool.list.Sort", title="Sort", inline=True)
def sort(
    values: list[Any] = [],  # noqa: B006 - never mutated
    order: Literal["ascending", "descending"] = "ascending",
) -> list[Any]:
    """The list sorted; items that cannot be compared fail the node."""
    return sorted(values, reverse=order == "descending")


@node("nodetool.list.Intersection", title="Intersection", inline=True)
def intersection(
    list1: list[Any] = [],  # noqa: B006 - never mutated
    list2: list[Any] = [],  # noqa: B006 - never mutated
) -> list[Any]:
    """The distinct items present in both lists."""
    other = set(list2)
    return [item for item in dict.fromkeys(list1) if item in other]


@node("nodetool.list.Union", title="Union", inline=True)
def union(
    list1: list[Any] = [],  # noqa: B006 - never mutated
    list2: list[Any] = [],  # noqa: B006 - never mutated
) -> list[Any]:
    """The distinct items present in either list."""
    return list(dict.fromkeys([*list1, *list2]))


@node("nodetool.list.Difference", title="Difference", inline=True)
def difference(
    list1: list[Any] = [],  # noqa: B006 - never mutated
    list2: list[Any] = [],  # noqa: B006 - never mutated
) -> list[Any]:
    """The distinct items of the first list that are not in the second."""
    other = set(list2)
    return [item for item in dict.fromkeys(list1) if item not in other]


@node("nodetool.list.Chunk", title="Chunk", inline=True)
def chunk(values: list[Any] = [], chunk_size: ChunkSize = 1) -> list[list[Any]]:  # noqa: B006
    """The list cut into consecutive pieces of chunk_size items (the last may be shorter)."""
    return [values[i : i + chunk_size] for i in range(0, len(values), chunk_size)]


def _numbers(values: Numbers, what: str) -> Numbers:
    if not values:
        raise ValueError(f"Cannot {what} of an empty list")
    return values


@node("nodetool.list.Sum", title="Sum", inline=True)
def sum_list(values: Numbers = []) -> float:  # noqa: B006 - never mutated
    """The sum of the numbers; an empty list fails."""
    return sum(_numbers(values, "sum"))


@node("nodetool.list.Average", title="Average", inline=True)
def average(values: Numbers = []) -> float:  # noqa: B006 - never mutated
    """The arithmetic mean of the numbers; an empty list fails."""
    return sum(_numbers(values, "average")) / len(values)


@node("nodetool.list.Minimum", title="Minimum", inline=True)
def minimum(values: Numbers = []) -> float:  # noqa: B006 - never mutated
    """The smallest number; an empty list fails."""
    return min(_numbers(values, "find the minimum"))


@node("nodetool.list.Maximum", title="Maximum", inline=True)
def maximum(values: Numbers = []) -> float:  # noqa: B006 - never mutated
    """The largest number; an empty list fails."""
    return max(_numbers(values, "find the maximum"))


@node("nodetool.list.Product", title="Product", inline=True)
def product(values: Numbers = []) -> float:  # noqa: B006 - never mutated
    """The product of the numbers; an empty list fails."""
    return math.prod(_numbers(values, "calculate the product"))


@node("nodetool.list.Flatten", title="Flatten", inline=True)
def flatten(values: list[Any] = [], max_depth: MaxDepth = -1) -> list[Any]:  # noqa: B006
    """Nested lists spliced into one list, up to max_depth levels deep (-1: all)."""
    return _flatten(values, max_depth, 0)


def _flatten(values: list[Any], max_depth: int, depth: int) -> list[Any]:
    flat: list[Any] = []
    for item in values:
        if isinstance(item, list) and (max_depth == -1 or depth < max_depth):
            flat.extend(_flatten(item, max_depth, depth + 1))
        else:
            flat.append(item)
    return flat


NODES = [
    length,
    list_range,
    generate_sequence,
    slice_list,
    select_elements,
    get_element,
    append,
    extend,
    dedupe,
    reverse,
    randomize,
    sort,
    intersection,
    union,
    difference,
    chunk,
    sum_list,
    average,
    minimum,
    maximum,
    product,
    flatten,
]
