"""lib.math: each node against NodeTool's (Python's) arithmetic, and a real server."""

from __future__ import annotations

import math

import pytest

from noderun.runtime.nodes import math as nodes
from tests.runtime.nodes.support import failure, outputs, run_graph
from tests.server.helpers import ServerHandle
from tests.support.graphs import edge, nd


def test_add_subtract_multiply_keep_ints() -> None:
    assert nodes.add(a=2, b=3) == 5 and isinstance(nodes.add(a=2, b=3), int)
    assert nodes.add(a=0.1, b=0.2) == 0.1 + 0.2
    assert nodes.add() == 0.0
    assert nodes.subtract(a=2, b=5) == -3
    assert nodes.multiply(a=4, b=2.5) == 10.0
    assert nodes.multiply() == 0.0


def test_int_results_beyond_64_bits_fail() -> None:
    assert nodes.add(a=2**63, b=2**63 - 1) == 2**64 - 1
    with pytest.raises(OverflowError, match="does not fit"):
        nodes.multiply(a=2**40, b=2**40)
    with pytest.raises(OverflowError, match="does not fit"):
        nodes.subtract(a=-(2**63), b=1)
    with pytest.raises(OverflowError, match="does not fit"):
        nodes.math_function(input=2**32, operation="cube")


def test_divide_is_true_division() -> None:
    assert nodes.divide(a=7, b=2) == 3.5
    assert nodes.divide() == 0.0
    with pytest.raises(ZeroDivisionError, match="1 / 0"):
        nodes.divide(a=1, b=0)


def test_modulus_takes_the_divisors_sign() -> None:
    assert nodes.modulus(a=7, b=3) == 1
    assert nodes.modulus(a=-7, b=3) == 2
    assert nodes.modulus(a=7.5, b=2) == 1.5
    with pytest.raises(ZeroDivisionError):
        nodes.modulus(a=1, b=0)


def test_power() -> None:
    assert nodes.power(base=2, exponent=10) == 1024.0
    assert nodes.power(base=4, exponent=0.5) == 2.0
    assert nodes.power() == 0.0
    with pytest.raises(ValueError, match=r"pow\(-8, 0.5\)"):
        nodes.power(base=-8, exponent=0.5)
    with pytest.raises(OverflowError, match="pow"):
        nodes.power(base=10, exponent=400)


def test_sqrt() -> None:
    assert nodes.sqrt(x=9) == 3.0
    assert nodes.sqrt() == 0.0
    with pytest.raises(ValueError, match=r"sqrt\(-1\): math domain error"):
        nodes.sqrt(x=-1)


def test_sine_and_cosine() -> None:
    assert nodes.sine(angle_rad=math.pi / 2) == 1.0
    assert nodes.cosine() == 1.0
    with pytest.raises(ValueError, match="sin"):
        nodes.sine(angle_rad=math.inf)


@pytest.mark.parametrize(
    ("operation", "x", "expected"),
    [
        ("negate", 2, -2),
        ("absolute", -2.5, 2.5),
        ("square", 3, 9),
        ("cube", -2, -8),
        ("square_root", 16, 4.0),
        ("cube_root", -27, -3.0),
        ("sine", 0, 0.0),
        ("cosine", 0, 1.0),
        ("tangent", 0, 0.0),
        ("arcsin", 1, math.pi / 2),
        ("arccos", 1, 0.0),
        ("arctan", 1, math.pi / 4),
        ("log", math.e, 1.0),
    ],
)
def test_math_function(operation: str, x: float, expected: float) -> None:
    assert nodes.math_function(input=x, operation=operation) == pytest.approx(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(("operation", "x"), [("log", 0), ("arcsin", 2), ("square_root", -4)])
def test_math_function_outside_the_domain_fails(operation: str, x: float) -> None:
    with pytest.raises(ValueError, match=operation):
        nodes.math_function(input=x, operation=operation)  # type: ignore[arg-type]


async def test_math_graph_over_websocket(server: ServerHandle) -> None:
    """sqrt(pow(3, 2) + 7) = 4, through edges."""
    terminal = await run_graph(
        server,
        nd("pow", "lib.math.Power", base=3, exponent=2),
        nd("add", "lib.math.Add", b=7),
        nd("root", "lib.math.Sqrt"),
        nd("mod", "lib.math.Modulus", a=-7, b=3),
        edges=[edge("pow", "add", "a"), edge("add", "root", "x")],
    )
    assert outputs(terminal) == {"root": {"output": 4.0}, "mod": {"output": 2}}


async def test_domain_error_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    terminal = await run_graph(server, nd("fn", "lib.math.MathFunction", input=0, operation="log"))
    assert "log(0)" in failure(terminal, "fn", "lib.math.MathFunction")


async def test_oversized_int_fails_the_run_instead_of_the_connection(server: ServerHandle) -> None:
    """A result msgpack cannot carry fails the node; the connection stays usable."""
    terminal = await run_graph(server, nd("mul", "lib.math.Multiply", a=2**40, b=2**40))
    assert "does not fit" in failure(terminal, "mul", "lib.math.Multiply")
    terminal = await run_graph(server, nd("mul", "lib.math.Multiply", a=2**31, b=2**31))
    assert outputs(terminal) == {"mul": {"output": 2**62}}
