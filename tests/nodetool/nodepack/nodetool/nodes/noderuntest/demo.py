"""Worker-side test nodes: one per behaviour the pool must handle."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator
from typing import Any, TypedDict

from nodetool.metadata.types import ImageRef
from nodetool.workflows.base_node import BaseNode
from nodetool.workflows.processing_context import ProcessingContext
from nodetool.workflows.types import LogUpdate, NodeProgress
from pydantic import Field


class Shout(BaseNode):
    """Upper-cases a text and appends a suffix.

    text, upper"""

    text: str = Field(default="", description="The text to shout")
    suffix: str = Field(default="!", description="Appended after the text")

    async def process(self, context: ProcessingContext) -> str:
        return self.text.upper() + self.suffix


class Secret(BaseNode):
    """The value of the secret ``NODERUN_TEST_SECRET``, or ''."""

    @classmethod
    def required_settings(cls) -> list[str]:
        return ["NODERUN_TEST_SECRET"]

    async def process(self, context: ProcessingContext) -> str:
        return await context.get_secret("NODERUN_TEST_SECRET") or ""


class Count(BaseNode):
    """Streams the words of a text one by one, reporting progress and a log line."""

    text: str = ""

    class OutputType(TypedDict):
        word: str
        index: int

    async def gen_process(self, context: ProcessingContext) -> AsyncGenerator[OutputType, None]:
        words = self.text.split()
        context.post_message(
            LogUpdate(node_id=self.id, node_name="Count", content="counting", severity="info")
        )
        for index, word in enumerate(words):
            progress = NodeProgress(node_id=self.id, progress=index + 1, total=len(words))
            context.post_message(progress)
            yield {"word": word, "index": index}


class Wait(BaseNode):
    """Sleeps in small steps until cancelled (cooperative) or ``seconds`` pass."""

    seconds: float = 60.0

    async def process(self, context: ProcessingContext) -> str:
        deadline = time.monotonic() + self.seconds
        context.post_message(NodeProgress(node_id=self.id, progress=0, total=1))
        while time.monotonic() < deadline:
            if context.is_cancelled:
                raise RuntimeError("cancelled")
            await asyncio.sleep(0.01)
        return "waited"


class Block(BaseNode):
    """Reports progress 0/1, then blocks the worker's event loop for ``seconds``:
    ignores cancel and liveness probes."""

    seconds: float = 60.0

    async def process(self, context: ProcessingContext) -> str:
        context.post_message(NodeProgress(node_id=self.id, progress=0, total=1))
        # Long enough for the worker's progress pump (every 50 ms) to send it.
        await asyncio.sleep(0.5)
        time.sleep(self.seconds)  # noqa: ASYNC251 (the point of this node)
        return "blocked"


class Fail(BaseNode):
    """Raises ``ValueError(message)``."""

    message: str = "boom"

    async def process(self, context: ProcessingContext) -> str:
        raise ValueError(self.message)


class Die(BaseNode):
    """Kills its own worker process."""

    code: int = 3

    async def process(self, context: ProcessingContext) -> str:
        os._exit(self.code)


class Pixel(BaseNode):
    """A 1x1 PNG image of the given grey level."""

    level: int = Field(default=128, ge=0, le=255)

    async def process(self, context: ProcessingContext) -> ImageRef:
        from PIL import Image

        return await context.image_from_pil(Image.new("L", (1, 1), self.level))


class ImageSize(BaseNode):
    """The number of bytes of an image."""

    image: ImageRef = ImageRef()

    async def process(self, context: ProcessingContext) -> int:
        return len(await context.asset_to_bytes(self.image))


class Echo(BaseNode):
    """Returns its input unchanged (the benchmark's remote trivial node)."""

    value: Any = None

    async def process(self, context: ProcessingContext) -> Any:
        return self.value
