"""Arithmetic nodes under NodeTool's names (``lib.math.*``)."""

from __future__ import annotations

from noderun.runtime.node import node

Number = int | float


@node("lib.math.Add", title="Add", inline=True)
def add(a: Number = 0.0, b: Number = 0.0) -> Number:
    """a + b"""
    return a + b


@node("lib.math.Subtract", title="Subtract", inline=True)
def subtract(a: Number = 0.0, b: Number = 0.0) -> Number:
    """a - b"""
    return a - b


@node("lib.math.Multiply", title="Multiply", inline=True)
def multiply(a: Number = 0.0, b: Number = 0.0) -> Number:
    """a * b"""
    return a * b


@node("lib.math.Divide", title="Divide", inline=True)
def divide(a: Number = 0.0, b: Number = 1.0) -> float:
    """a ÷ b; dividing by zero fails the node."""
    return a / b


NODES = [add, subtract, multiply, divide]
