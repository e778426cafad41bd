"""The built-in nodes: NodeTool's common nodes under their names, and debug nodes.

A module of built-in nodes adds its ``NODES`` to :data:`BUILTIN_NODES`.
"""

from __future__ import annotations

from noderun.runtime.node import NodeSpec, spec_of
from noderun.runtime.nodes import (
    boolean,
    constant,
    control,
    date,
    debug,
    dictionary,
    input,
    json_nodes,
    lists,
    markdown,
    math,
    output,
    text,
    uuid,
)

#: Registered by every server.
BUILTIN_NODES: list[NodeSpec] = [
    spec_of(fn)
    for fn in (
        *text.NODES,
        *math.NODES,
        *boolean.NODES,
        *constant.NODES,
        *date.NODES,
        *uuid.NODES,
        *markdown.NODES,
        *input.NODES,
        *output.NODES,
        *lists.NODES,
        *dictionary.NODES,
        *json_nodes.NODES,
        *control.NODES,
    )
]

#: ``noderun.debug.*`` (sleep, block, fail on demand): registered only with
#: ``--debug-nodes``, since any client could use them to tie up the server.
DEBUG_NODES: list[NodeSpec] = [spec_of(fn) for fn in debug.NODES]

__all__ = ["BUILTIN_NODES", "DEBUG_NODES"]
