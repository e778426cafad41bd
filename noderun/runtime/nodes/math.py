"""Arithmetic nodes under NodeTool's names (``lib.math.*``).

Results follow Python's arithmetic, as NodeTool's do: ``int`` op ``int`` stays
an ``int`` (``Divide`` and the functions give a ``float``), ``Modulus`` takes
the sign of the divisor. A division by zero or an argument outside a
function's domain (``Sqrt(-1)``, ``log(0)``) fails the node with Python's
error (``ZeroDivisionError``, ``ValueError``, ``OverflowError``) and a message
naming the operation. So does an ``int`` result outside the 64-bit range
that MessagePack can carry (``-2**63`` to ``2**64 - 1``), rather than
becoming a value no frame can hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec

from noderun.runtime.node import node

Number = int | float

Operation = Literal[
    "negate",
    "absolute",
    "square",
    "cube",
    "square_root",
    "cube_root",
    "sine",
    "cosine",
    "tangent",
    "arcsin",
    "arccos",
    "arctan",
    "log",
]


_WIRE_INT_MIN = -(2**63)
_WIRE_INT_MAX = 2**64 - 1


def _checked(operation: str, fn: Callable[[], Number]) -> Number:
    """``fn()``; its error, of the same class, names the operation (``sqrt(-1): math
    domain error`` says more than Python's ``math domain error``)."""
    try:
        result = fn()
    except (ZeroDivisionError, ValueError, OverflowError) as exc:
        raise type(exc)(f"{operation}: {exc}") from None
    if isinstance(result, int) and not _WIRE_INT_MIN <= result <= _WIRE_INT_MAX:
        raise OverflowError(
            f"{operation}: the {result.bit_length()}-bit integer result does not fit "
            "the 64-bit integers of the wire"
        )
    return result


@node("lib.math.Add", title="Add", inline=True)
def add(a: Number = 0.0, b: Number = 0.0) -> Number:
    """Adds two numbers together."""
    return _checked(f"{a} + {b}", lambda: a + b)


@node("lib.math.Subtract", title="Subtract", inline=True)
def subtract(a: Number = 0.0, b: Number = 0.0) -> Number:
    """Subtracts B from A."""
    return _checked(f"{a} - {b}", lambda: a - b)


@node("lib.math.Multiply", title="Multiply", inline=True)
def multiply(a: Number = 0.0, b: Number = 0.0) -> Number:
    """Multiplies two numbers together."""
    return _checked(f"{a} * {b}", lambda: a * b)


@node("lib.math.Divide", title="Divide", inline=True)
def divide(a: Number = 0.0, b: Number = 1.0) -> Number:
    """Divides A by B; dividing by zero fails the node."""
    return _checked(f"{a} / {b}", lambda: a / b)


@node("lib.math.Modulus", title="Modulus", inline=True)
def modulus(a: Number = 0.0, b: Number = 1.0) -> Number:
    """A modulo B (the sign of B); modulo zero fails the node."""
    return _checked(f"{a} % {b}", lambda: a % b)


@node("lib.math.Power", title="Power", inline=True)
def power(base: Number = 0.0, exponent: Number = 1.0) -> Number:
    """Raises base to the given exponent (``math.pow``: always a float)."""
    return _checked(f"pow({base}, {exponent})", lambda: math.pow(base, exponent))


@node("lib.math.Sqrt", title="Sqrt", inline=True)
def sqrt(x: Number = 0.0) -> Number:
    """Computes the square root of x; a negative x fails the node."""
    return _checked(f"sqrt({x})", lambda: math.sqrt(x))


@node("lib.math.Sine", title="Sine", inline=True)
def sine(angle_rad: Number = 0.0) -> Number:
    """Computes the sine of an angle in radians."""
    return _checked(f"sin({angle_rad})", lambda: math.sin(angle_rad))


@node("lib.math.Cosine", title="Cosine", inline=True)
def cosine(angle_rad: Number = 0.0) -> Number:
    """Computes the cosine of an angle in radians."""
    return _checked(f"cos({angle_rad})", lambda: math.cos(angle_rad))


def _unary(operation: Operation, x: Number) -> Number:
    match operation:
        case "negate":
            return -x
        case "absolute":
            return abs(x)
        case "square":
            return x * x
        case "cube":
            return x * x * x
        case "square_root":
            return math.sqrt(x)
        case "cube_root":
            # The real cube root, negative numbers included.
            return math.copysign(abs(x) ** (1 / 3), x)
        case "sine":
            return math.sin(x)
        case "cosine":
            return math.cos(x)
        case "tangent":
            return math.tan(x)
        case "arcsin":
            return math.asin(x)
        case "arccos":
            return math.acos(x)
        case "arctan":
            return math.atan(x)
        case "log":
            return math.log(x)


@node("lib.math.MathFunction", title="Math Function", inline=True)
def math_function(
    input: Number = 0.0,
    operation: Annotated[
        Operation, msgspec.Meta(description="Unary operation to perform")
    ] = "negate",
) -> Number:
    """Performs a selected unary math operation on an input (``log`` is natural)."""
    return _checked(f"{operation}({input})", lambda: _unary(operation, input))


NODES = [
    add,
    subtract,
    multiply,
    divide,
    modulus,
    power,
    sqrt,
    sine,
    cosine,
    math_function,
]
