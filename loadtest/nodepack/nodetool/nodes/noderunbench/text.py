"""``noderunbench.text.Concat``: what ``nodetool.text.Concat`` does, as a NodeTool node."""

from __future__ import annotations

from nodetool.workflows.base_node import BaseNode
from nodetool.workflows.processing_context import ProcessingContext


class Concat(BaseNode):
    """Concatenate two strings."""

    a: str = ""
    b: str = ""

    async def process(self, context: ProcessingContext) -> str:
        return self.a + self.b
