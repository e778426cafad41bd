"""The node-type inventory: every distinct type the nodes' properties and outputs use,
with where it is used (NodeTool's ``NodeTypeUsage``, ``GET /api/sdk/v1/node-types``).

Works on node metadata (:mod:`noderun.runtime.catalog`), so it sees exactly the type
descriptors clients see.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["signature", "type_usage"]

#: Most enum values listed in one inventory entry (``values_truncated`` says so).
_INVENTORY_VALUES = 50


def signature(meta: Mapping[str, object]) -> str:
    """A readable, unique spelling of a type descriptor: ``list[int]``, ``enum[a|b]``,
    ``optional[str]``."""
    name = str(meta.get("type_name") or meta["type"])
    args = meta.get("type_args") or []
    assert isinstance(args, list)
    text = name
    if meta.get("values") is not None:
        values = meta["values"]
        assert isinstance(values, list)
        text = f"{name}[{'|'.join(map(str, values))}]"
    elif args:
        text = f"{name}[{', '.join(signature(arg) for arg in args)}]"
    return f"optional[{text}]" if meta.get("optional") else text


def type_usage(nodes: list[dict[str, object]]) -> list[dict[str, object]]:
    """One entry per distinct type signature, sorted by signature."""
    usages: dict[str, dict[str, Any]] = {}

    def use(meta: dict[str, object], node_type: str, pin: str, direction: str) -> None:
        key = signature(meta)
        entry = usages.get(key)
        if entry is None:
            values = meta.get("values")
            listed = list(values) if isinstance(values, list) else []
            args = meta.get("type_args")
            entry = usages[key] = {
                "signature": key,
                "type": meta["type"],
                "type_name": meta.get("type_name"),
                "optional": meta["optional"],
                "type_args": [signature(arg) for arg in args] if isinstance(args, list) else [],
                "values": listed[:_INVENTORY_VALUES],
                "values_truncated": len(listed) > _INVENTORY_VALUES,
                "input_uses": 0,
                "output_uses": 0,
                "node_count": 0,
                "sources": {"noderun": 0},
                "examples": [],
                "_nodes": set(),
            }
        entry["input_uses" if direction == "input" else "output_uses"] += 1
        if node_type not in entry["_nodes"]:
            entry["_nodes"].add(node_type)
            entry["node_count"] += 1
            entry["sources"]["noderun"] += 1
        if len(entry["examples"]) < 3:
            entry["examples"].append({"node_type": node_type, "pin": pin, "direction": direction})

    for meta in nodes:
        node_type = str(meta["node_type"])
        for direction, key in (("input", "properties"), ("output", "outputs")):
            pins = meta[key]
            assert isinstance(pins, list)
            for pin in pins:
                use(pin["type"], node_type, pin["name"], direction)
    entries = [usages[key] for key in sorted(usages)]
    for entry in entries:
        del entry["_nodes"]
    return entries
