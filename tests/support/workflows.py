"""NodeTool workflow files (the format NodeTool exports) for the stored-workflow tests."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["GREET", "SUM", "write_workflows"]


def _node(node_id: str, node_type: str, **data: object) -> dict[str, object]:
    return {
        "id": node_id,
        "parent_id": None,
        "type": node_type,
        "data": data,
        "ui_properties": {"position": {"x": 0, "y": 0}, "zIndex": 0, "selectable": True},
        "dynamic_properties": {},
        "dynamic_outputs": {},
        "sync_mode": "on_any",
    }


def _edge(source: str, target: str, target_handle: str, class_name: str) -> dict[str, object]:
    return {
        "id": f"{source}-{target}",
        "source": source,
        "sourceHandle": "output",
        "target": target,
        "targetHandle": target_handle,
        "ui_properties": {"className": class_name},
    }


#: "Hello, " + the ``name`` input → output ``greeting``.
GREET: dict[str, object] = {
    "id": "greet",
    "access": "private",
    "name": "Greet",
    "description": "Says hello",
    "tags": ["demo", "text"],
    "created_at": "2026-01-02T03:04:05.000Z",
    "updated_at": "2026-01-03T03:04:05",
    "thumbnail": None,
    "settings": None,
    "run_mode": "workflow",
    "graph": {
        "nodes": [
            _node(
                "in", "nodetool.input.StringInput", name="name", value="world", description="who"
            ),
            _node("concat", "nodetool.text.Concat", a="Hello, "),
            _node("out", "nodetool.output.Output", name="greeting", description="the greeting"),
        ],
        "edges": [
            _edge("in", "concat", "b", "str"),
            _edge("concat", "out", "value", "str"),
        ],
    },
}

#: ``x + y`` (integer inputs) → output ``total``; no ``id``: the file name is its id.
SUM: dict[str, object] = {
    "name": "Sum",
    "graph": {
        "nodes": [
            _node("x", "nodetool.input.IntegerInput", name="x", value=1),
            _node("y", "nodetool.input.IntegerInput", name="y", value=2, min=0, max=100),
            _node("add", "lib.math.Add"),
            _node("total", "nodetool.output.Output", name="total"),
        ],
        "edges": [
            _edge("x", "add", "a", "int"),
            _edge("y", "add", "b", "int"),
            _edge("add", "total", "value", "float"),
        ],
    },
}


def write_workflows(directory: Path) -> Path:
    """Two valid workflows (``greet``, ``sum``) and three that must be skipped."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "greet.json").write_text(json.dumps(GREET))
    (directory / "sum.json").write_text(json.dumps(SUM))
    (directory / "broken.json").write_text("{ not json")
    unknown = {
        "id": "unknown",
        "name": "Unknown",
        "graph": {"nodes": [_node("n", "nodetool.image.Nope")], "edges": []},
    }
    (directory / "unknown_node.json").write_text(json.dumps(unknown))
    (directory / "zz_duplicate.json").write_text(json.dumps({**GREET, "name": "Greet again"}))
    (directory / "notes.txt").write_text("not a workflow file")
    return directory
