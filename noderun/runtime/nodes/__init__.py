"""The built-in nodes: NodeTool's common nodes under their names, and debug nodes."""

from __future__ import annotations

from noderun.runtime.node import NodeSpec
from noderun.runtime.nodes import debug, io, logic, math, text

BUILTIN_NODES: list[NodeSpec] = [*text.NODES, *math.NODES, *logic.NODES, *io.NODES, *debug.NODES]

__all__ = ["BUILTIN_NODES"]
