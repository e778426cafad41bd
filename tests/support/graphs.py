"""Graphs as the SDK puts them on the wire (``run_job``'s ``graph``), and job ids."""

from __future__ import annotations

import uuid

from tests.support.frames import Frame

__all__ = ["edge", "graph", "nd", "new_job_id", "progress_graph", "sleep_graph"]


def nd(node_id: str, node_type: str, **data: object) -> Frame:
    """A graph node as the SDK sends it (with the UI keys the server must ignore)."""
    return {
        "id": node_id,
        "parent_id": None,
        "type": node_type,
        "data": data,
        "ui_properties": {},
        "dynamic_properties": {},
        "dynamic_outputs": {},
        "sync_mode": "on_any",
    }


def edge(source: str, target: str, target_handle: str, source_handle: str = "output") -> Frame:
    """A data edge from ``source``'s ``source_handle`` to ``target``'s ``target_handle``."""
    return {
        "id": f"{source}-{target}-{target_handle}",
        "source": source,
        "sourceHandle": source_handle,
        "target": target,
        "targetHandle": target_handle,
        "ui_properties": None,
        "edge_type": "data",
    }


def graph(*nodes: Frame, edges: list[Frame] | None = None) -> Frame:
    return {"nodes": list(nodes), "edges": edges or []}


def progress_graph(steps: int, interval: float) -> Frame:
    """``noderun.debug.Progress`` into an Output named ``steps``: one progress frame a step."""
    return graph(
        nd("p", "noderun.debug.Progress", steps=steps, interval=interval),
        nd("out", "nodetool.output.Output", name="steps"),
        edges=[edge("p", "out", "value")],
    )


def sleep_graph(seconds: float) -> Frame:
    """One ``noderun.debug.Sleep`` node: a run that lasts ``seconds``."""
    return graph(nd("s", "noderun.debug.Sleep", seconds=seconds))


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"
