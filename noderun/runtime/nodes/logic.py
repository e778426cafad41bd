"""Boolean and constant nodes under NodeTool's names."""

from __future__ import annotations

from typing import Literal

from noderun.runtime.node import node

Operation = Literal["and", "or", "xor", "nand", "nor", "xnor"]


@node("nodetool.boolean.LogicalOperator", title="Logical Operator", inline=True)
def logical_operator(a: bool = False, b: bool = False, operation: Operation = "and") -> bool:
    """Combine two booleans with a logical operation."""
    match operation:
        case "and":
            return a and b
        case "or":
            return a or b
        case "xor":
            return a != b
        case "nand":
            return not (a and b)
        case "nor":
            return not (a or b)
        case "xnor":
            return a == b


@node("nodetool.constant.String", title="String", inline=True)
def constant_string(value: str = "") -> str:
    """A constant string."""
    return value


@node("nodetool.constant.Integer", title="Integer", inline=True)
def constant_integer(value: int = 0) -> int:
    """A constant integer."""
    return value


@node("nodetool.constant.Float", title="Float", inline=True)
def constant_float(value: float = 0.0) -> float:
    """A constant float."""
    return value


@node("nodetool.constant.Bool", title="Bool", inline=True)
def constant_bool(value: bool = False) -> bool:
    """A constant boolean."""
    return value


NODES = [
    logical_operator,
    constant_string,
    constant_integer,
    constant_float,
    constant_bool,
]
