"""Workflow outputs under NodeTool's names (``nodetool.output.*``).

An Output node records every value it receives under its ``name`` in
``result.outputs`` and sends one ``output_update`` per value.
"""

from __future__ import annotations

from typing import Any

from noderun.runtime.node import node


@node("nodetool.output.Output", title="Output", inline=True, is_output=True)
def output(
    name: str = "",
    value: Any = None,
    description: str = "",
) -> Any:
    """A workflow output: every value it receives is returned to the client."""
    return value


NODES = [output]
