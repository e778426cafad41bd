"""Workflow inputs and outputs under NodeTool's names.

An input node's ``value`` is replaced by the run's ``params[name]`` when given.
With ``streaming`` true the input stays open after that first value: each
``stream_input`` pushes one more value downstream, ``end_input_stream`` closes it.
An Output node records every value it receives under its ``name`` in
``result.outputs`` and sends one ``output_update`` per value.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from noderun.runtime.node import node

Streaming = Annotated[
    bool,
    msgspec.Meta(description="keep the input open for stream_input values until end_input_stream"),
]


@node(
    "nodetool.input.StringInput",
    title="String Input",
    inline=True,
    is_input=True,
)
def string_input(name: str = "", value: str = "", streaming: Streaming = False) -> str:
    """A string parameter of the workflow."""
    return value


@node(
    "nodetool.input.IntegerInput",
    title="Integer Input",
    inline=True,
    is_input=True,
)
def integer_input(name: str = "", value: int = 0, streaming: Streaming = False) -> int:
    """An integer parameter of the workflow."""
    return value


@node(
    "nodetool.input.FloatInput",
    title="Float Input",
    inline=True,
    is_input=True,
)
def float_input(name: str = "", value: float = 0.0, streaming: Streaming = False) -> float:
    """A float parameter of the workflow."""
    return value


@node(
    "nodetool.input.BooleanInput",
    title="Boolean Input",
    inline=True,
    is_input=True,
)
def boolean_input(name: str = "", value: bool = False, streaming: Streaming = False) -> bool:
    """A boolean parameter of the workflow."""
    return value


@node("nodetool.output.Output", title="Output", inline=True, is_output=True)
def output(name: str = "", value: Any = None) -> Any:
    """A workflow output: every value it receives is returned to the client."""
    return value


NODES = [string_input, integer_input, float_input, boolean_input, output]
