"""Workflow inputs under NodeTool's names (``nodetool.input.*``).

An input node's ``value`` is replaced by the run's ``params[name]`` when given.
An input node that got neither a ``value`` in its data nor a param, and feeds
at least one node, stays open instead: each ``stream_input`` sends one value
downstream, ``end_input_stream`` closes it (NodeTool's streaming inputs; see
:mod:`noderun.runtime.graph`). ``min``/``max``, ``line_mode``, ``options`` and
``enum_type_name`` describe the input to a user interface and do not constrain
the value, as in NodeTool.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from noderun.runtime.node import node

Name = Annotated[str, msgspec.Meta(description="The parameter name for the workflow.")]
Description = Annotated[
    str, msgspec.Meta(description="The description of the input for the workflow.")
]
MaxLength = Annotated[
    int,
    msgspec.Meta(ge=0, le=100000, description="Maximum number of characters; 0 for unlimited."),
]

#: A hint to user interfaces; NodeTool types it ``str``, not an enum.
LineMode = Annotated[str, msgspec.Meta(description="single_line or multi_line")]


@node("nodetool.input.StringInput", title="String Input", inline=True, is_input=True)
def string_input(
    name: Name = "",
    value: str = "",
    description: Description = "",
    max_length: MaxLength = 0,
    line_mode: LineMode = "single_line",
) -> str:
    """A string parameter of the workflow, cut to max_length characters when that is set."""
    return value[:max_length] if max_length else value


@node("nodetool.input.IntegerInput", title="Integer Input", inline=True, is_input=True)
def integer_input(
    name: Name = "",
    value: int = 0,
    description: Description = "",
    min: int = 0,
    max: int = 99999,
) -> int:
    """An integer parameter of the workflow."""
    return value


@node("nodetool.input.FloatInput", title="Float Input", inline=True, is_input=True)
def float_input(
    name: Name = "",
    value: float = 0.0,
    description: Description = "",
    min: float = 0,
    max: float = 99999,
) -> float:
    """A float parameter of the workflow."""
    return value


@node("nodetool.input.BooleanInput", title="Boolean Input", inline=True, is_input=True)
def boolean_input(name: Name = "", value: bool = False, description: Description = "") -> bool:
    """A boolean parameter of the workflow."""
    return value


@node("nodetool.input.StringListInput", title="String List Input", inline=True, is_input=True)
def string_list_input(
    name: Name = "",
    value: list[str] = [],  # noqa: B006 - never mutated
    description: Description = "",
) -> list[str]:
    """A list-of-strings parameter of the workflow."""
    return value


@node("nodetool.input.TextListInput", title="Text List Input", inline=True, is_input=True)
def text_list_input(
    name: Name = "",
    value: list[str] = [],  # noqa: B006 - never mutated
    description: Description = "",
) -> list[str]:
    """A list-of-texts parameter of the workflow."""
    return value


@node("nodetool.input.SelectInput", title="Select Input", inline=True, is_input=True)
def select_input(
    name: Name = "",
    value: str = "",
    description: Description = "",
    options: list[str] = [],  # noqa: B006 - never mutated
    enum_type_name: str = "",
) -> str:
    """One of a fixed set of options, as a string (NodeTool does not check it is listed)."""
    return value


@node("nodetool.input.FilePathInput", title="File Path Input", inline=True, is_input=True)
def file_path_input(name: Name = "", value: str = "", description: Description = "") -> str:
    """A local file or directory path parameter, passed on as a string (nothing is read)."""
    return value


@node("nodetool.input.FolderPathInput", title="Folder Path Input", inline=True, is_input=True)
def folder_path_input(name: Name = "", value: str = "", description: Description = "") -> str:
    """A local folder path parameter, passed on as a string (nothing is read)."""
    return value


NODES = [
    string_input,
    integer_input,
    float_input,
    boolean_input,
    string_list_input,
    text_list_input,
    select_input,
    file_path_input,
    folder_path_input,
]
