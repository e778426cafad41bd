"""Boolean nodes under NodeTool's names (``nodetool.boolean.*``).

``IsIn`` compares with Python equality, so ``1``, ``1.0`` and ``true`` are one
value, as in NodeTool.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from noderun.runtime.node import node

Operation = Literal["and", "or", "xor", "nand", "nor"]
Comparison = Literal["==", "!=", ">", "<", ">=", "<="]
Number = int | float


@node("nodetool.boolean.LogicalOperator", title="Logical Operator", inline=True)
def logical_operator(
    a: Annotated[bool, msgspec.Meta(description="First boolean input")] = False,
    b: Annotated[bool, msgspec.Meta(description="Second boolean input")] = False,
    operation: Annotated[
        Operation, msgspec.Meta(description="Logical operation to perform")
    ] = "and",
) -> bool:
    """Performs logical operations on two boolean inputs."""
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


@node("nodetool.boolean.Not", title="Not", inline=True)
def not_(
    value: Annotated[bool, msgspec.Meta(description="Boolean input to negate")] = False,
) -> bool:
    """Performs logical NOT operation on a boolean input."""
    return not value


@node("nodetool.boolean.Compare", title="Compare", inline=True)
def compare(
    a: Annotated[Number, msgspec.Meta(description="First value to compare")] = 0,
    b: Annotated[Number, msgspec.Meta(description="Second value to compare")] = 0,
    comparison: Annotated[
        Comparison, msgspec.Meta(description="Comparison operator to use")
    ] = "==",
) -> bool:
    """Compares two numbers using a comparison operator."""
    match comparison:
        case "==":
            return a == b
        case "!=":
            return a != b
        case ">":
            return a > b
        case "<":
            return a < b
        case ">=":
            return a >= b
        case "<=":
            return a <= b


@node("nodetool.boolean.ConditionalSwitch", title="Conditional Switch", inline=True)
def conditional_switch(
    condition: Annotated[bool, msgspec.Meta(description="The condition to check")] = False,
    if_true: Annotated[
        Any, msgspec.Meta(description="The value to return if the condition is true")
    ] = (),
    if_false: Annotated[
        Any, msgspec.Meta(description="The value to return if the condition is false")
    ] = (),
) -> Any:
    """Returns ``if_true`` when the condition holds, else ``if_false``."""
    return if_true if condition else if_false


@node("nodetool.boolean.IsNone", title="Is None", inline=True)
def is_none(
    value: Annotated[Any, msgspec.Meta(description="The value to check for None")] = (),
) -> bool:
    """Checks if a value is None (nil on the wire)."""
    return value is None


@node("nodetool.boolean.IsIn", title="Is In", inline=True)
def is_in(
    value: Annotated[Any, msgspec.Meta(description="The value to check for membership")] = (),
    options: Annotated[
        list[Any], msgspec.Meta(description="The list of options to check against")
    ] = [],  # noqa: B006 - never mutated
) -> bool:
    """Checks if a value is present in a list of options."""
    return value in options


@node("nodetool.boolean.All", title="All", inline=True)
def all_(
    values: Annotated[list[bool], msgspec.Meta(description="List of boolean values to check")] = [],  # noqa: B006 - never mutated
) -> bool:
    """Checks if all boolean values in a list are true (an empty list: true)."""
    return all(values)


@node("nodetool.boolean.Some", title="Some", inline=True)
def some(
    values: Annotated[list[bool], msgspec.Meta(description="List of boolean values to check")] = [],  # noqa: B006 - never mutated
) -> bool:
    """Checks if any boolean value in a list is true (an empty list: false)."""
    return any(values)


NODES = [logical_operator, not_, compare, conditional_switch, is_none, is_in, all_, some]
