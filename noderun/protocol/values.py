"""Value helpers of the wire: ``explicit_types`` wrapping (PROTOCOL.md §3.4)."""

from __future__ import annotations

__all__ = ["INT_MAX", "INT_MIN", "RANGE_FREE", "out_of_range", "wrap_explicit"]

#: The integers MessagePack can carry (int64 and uint64).
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

#: Types whose values never hold an integer: :func:`out_of_range` need not look.
RANGE_FREE = frozenset({str, float, bool, type(None), bytes})

_SCALARS: dict[type, str] = {str: "string", bool: "boolean", int: "integer", float: "float"}


def wrap_explicit(value: object) -> object:
    """Wrap a value the way NodeTool's SDK expects when ``explicit_types`` is on.

    str → ``{"type": "string", "value": …}``, bool → ``boolean``, int →
    ``integer``, float → ``float``, bytes → ``bytes``, list → ``list`` of wrapped
    items, a map without a ``type`` key → each value wrapped, a map with a
    ``type`` key (already typed, e.g. an asset) → unchanged.
    """
    exact = type(value)
    kind = _SCALARS.get(exact)
    if kind is not None:
        return {"type": kind, "value": value}
    if exact is dict:
        if "type" in value:  # type: ignore[operator]
            return value
        # A node's outputs are usually scalars: wrapped here, without a call each.
        wrapped: dict[object, object] = {}
        for key, item in value.items():  # type: ignore[attr-defined]
            kind = _SCALARS.get(type(item))
            if kind is not None:
                wrapped[key] = {"type": kind, "value": item}
            else:
                wrapped[key] = wrap_explicit(item)
        return wrapped
    # Subclasses of the scalar types; bool before int: bool is a subclass of int.
    if isinstance(value, str):
        return {"type": "string", "value": value}
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, int):
        return {"type": "integer", "value": value}
    if isinstance(value, float):
        return {"type": "float", "value": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "bytes", "value": bytes(value)}
    if isinstance(value, (list, tuple)):
        return {"type": "list", "value": [wrap_explicit(item) for item in value]}
    if isinstance(value, dict):
        if "type" in value:
            return value
        return {key: wrap_explicit(item) for key, item in value.items()}
    return value


def out_of_range(value: object) -> int | None:
    """The first integer inside ``value`` that MessagePack cannot encode, if any.

    Walks lists, tuples and maps (keys too) without recursion, so a deeply nested
    value cannot exhaust the stack; a scalar returns at once (the common case).
    """
    if type(value) in RANGE_FREE:
        return None
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                return item
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return None
