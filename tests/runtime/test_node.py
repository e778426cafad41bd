"""The node-authoring API: ``@node`` keeps functions callable, constraints ride on
``Annotated``, misshapen nodes fail at definition."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from noderun.runtime.errors import PropertyError, RegistryError
from noderun.runtime.node import node, spec_of
from noderun.runtime.registry import Registry

Ratio = Annotated[float, msgspec.Meta(ge=0.0, le=1.0, description="between 0 and 1")]


@node("test.Scale", title="Scale", inline=True)
def scale(value: float = 1.0, ratio: Ratio = 0.5) -> float:
    """Scale a value."""
    return value * ratio


def test_decorated_function_stays_callable_as_written() -> None:
    assert scale(value=4.0, ratio=0.25) == 1.0
    assert scale() == 0.5


def test_spec_is_reachable_and_registrable() -> None:
    spec = spec_of(scale)
    assert spec.node_type == "test.Scale" and spec.kind == "inline"
    registry = Registry([scale])
    assert registry.get("test.Scale") is spec


def test_annotated_meta_gives_constraints_and_description() -> None:
    prop = spec_of(scale).properties["ratio"]
    assert (prop.min, prop.max, prop.description) == (0.0, 1.0, "between 0 and 1")
    meta = prop.metadata()
    assert meta["type"] == {"type": "float", "optional": False, "type_args": []}
    assert meta["min"] == 0.0 and meta["max"] == 1.0
    assert prop.check("test.Scale", 0.75) == 0.75
    with pytest.raises(PropertyError, match="ratio"):
        prop.check("test.Scale", 1.5)
    with pytest.raises(PropertyError, match="ratio"):
        prop.check("test.Scale", "half")


def test_default_outside_its_constraints_is_refused() -> None:
    with pytest.raises(RegistryError, match="default of 'ratio'"):

        @node("test.Bad")
        def bad(ratio: Ratio = 2.0) -> float:
            return ratio


def test_input_node_without_value_is_refused() -> None:
    with pytest.raises(RegistryError, match="input node needs the properties 'name' and 'value'"):

        @node("test.Input", is_input=True)
        def no_value(name: str = "") -> str:
            return name


def test_output_node_without_name_is_refused() -> None:
    with pytest.raises(RegistryError, match="missing: name"):

        @node("test.Output", is_output=True)
        def no_name(value: str = "") -> str:
            return value


def test_undotted_type_name_is_refused() -> None:
    with pytest.raises(RegistryError, match="dotted"):

        @node("Plain")
        def plain() -> None:
            return None


def test_registry_refuses_what_is_not_a_node() -> None:
    def undecorated() -> None:
        return None

    with pytest.raises(RegistryError, match="not a node"):
        Registry([undecorated])


def test_duplicate_type_names_are_refused() -> None:
    with pytest.raises(RegistryError, match="already registered"):
        Registry([scale, scale])


def test_description_alone_keeps_the_fast_path_but_not_the_checks() -> None:
    @node("t.Described", inline=True)
    def described(
        flag: Annotated[bool, msgspec.Meta(description="d")] = False,
        count: Annotated[int, msgspec.Meta(ge=0, description="d")] = 0,
    ) -> bool:
        return flag

    spec = spec_of(described)
    assert not spec.properties["flag"].constrained
    assert spec.properties["count"].constrained
    assert spec.check_properties({"flag": True}) == {"flag": True, "count": 0}
    with pytest.raises(PropertyError):
        spec.check_properties({"flag": "yes"})
    with pytest.raises(PropertyError):
        spec.check_properties({"count": -1})


class Point(msgspec.Struct, frozen=True, tag_field="type", tag="point"):
    x: int = 0


def test_structured_types_are_named_by_their_tag() -> None:
    @node("t.Shift", inline=True)
    def shift(point: Point = Point(), by: int = 1) -> Point:  # noqa: B008 - frozen
        return Point(x=point.x + by)

    spec = spec_of(shift)
    meta = spec.metadata()
    assert meta["properties"][0]["type"] == {"type": "point", "optional": False, "type_args": []}  # type: ignore[index]
    assert spec.check_properties({"point": {"type": "point", "x": 2}})["point"] == Point(x=2)
    with pytest.raises(PropertyError):
        spec.check_properties({"point": {"type": "point", "x": "two"}})
