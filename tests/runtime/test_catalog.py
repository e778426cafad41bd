"""Node metadata in NodeTool's shape, for any annotation a node may use."""

from __future__ import annotations

import enum
import math
from typing import Annotated, Any, Literal

import msgspec

from noderun.runtime.catalog import NodeCatalog, type_descriptor
from noderun.runtime.inventory import signature
from noderun.runtime.node import node, spec_of
from noderun.runtime.nodes import BUILTIN_NODES
from tests.server.sdk_shapes import INVENTORY, NODE_METADATA, check


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class ImageRef(msgspec.Struct):
    type: str = "image"
    uri: str = ""


class Tagged(msgspec.Struct, tag="tagged"):
    value: int = 0


class Point(msgspec.Struct):
    x: float = 0.0


def plain(name: str) -> dict[str, object]:
    return {"type": name, "optional": False, "type_args": []}


def test_scalars_and_any() -> None:
    assert type_descriptor(str) == plain("str")
    assert type_descriptor(bool) == plain("bool")
    assert type_descriptor(bytes) == plain("bytes")
    assert type_descriptor(Any) == plain("any")
    assert type_descriptor(object) == plain("any")


def test_enums_literal_and_enum_classes() -> None:
    assert type_descriptor(Literal["a", "b"]) == {**plain("enum"), "values": ["a", "b"]}
    assert type_descriptor(Literal[1, 2] | None) == {
        "type": "enum",
        "optional": True,
        "type_args": [],
        "values": [1, 2],
    }
    assert type_descriptor(Mode) == {
        **plain("enum"),
        "values": ["fast", "slow"],
        "type_name": f"{__name__}.Mode",
    }


def test_optional_union_and_containers() -> None:
    assert type_descriptor(int | None) == {"type": "int", "optional": True, "type_args": []}
    assert type_descriptor(int | str) == {
        "type": "union",
        "optional": False,
        "type_args": [plain("int"), plain("str")],
    }
    assert type_descriptor(list[int]) == {**plain("list"), "type_args": [plain("int")]}
    assert type_descriptor(dict[str, float]) == {
        **plain("dict"),
        "type_args": [plain("str"), plain("float")],
    }
    # tuple[int, ...]: the Ellipsis is not a type argument.
    assert type_descriptor(tuple[int, ...]) == {**plain("tuple"), "type_args": [plain("int")]}
    assert type_descriptor(list[dict[str, int | None]])["type_args"] == [
        {**plain("dict"), "type_args": [plain("str"), {**plain("int"), "optional": True}]}
    ]


def test_annotated_structs_and_unknown_types() -> None:
    assert type_descriptor(Annotated[float, msgspec.Meta(ge=0)]) == plain("float")
    assert type_descriptor(ImageRef) == plain("image")
    assert type_descriptor(Tagged) == plain("tagged")
    assert type_descriptor(Point) == {**plain("object"), "type_name": "Point"}
    assert type_descriptor(complex) == {**plain("any"), "type_name": "complex"}


def test_signatures_are_readable_and_distinct() -> None:
    assert signature(type_descriptor(list[int])) == "list[int]"
    assert signature(type_descriptor(Literal["a", "b"] | None)) == "optional[enum[a|b]]"
    assert signature(type_descriptor(Mode)) == f"{__name__}.Mode[fast|slow]"


@node("test.Everything", title="Everything")
def everything(
    mode: Mode = Mode.FAST,
    pick: Literal["x", "y"] = "y",
    ratio: Annotated[float, msgspec.Meta(ge=0.0, le=1.0, description="a share")] = 0.5,
    items: list[int] | None = None,
    image: ImageRef = ImageRef(),  # noqa: B008 - an immutable default value
    infinite: float = math.inf,
    required: str = "",
) -> dict[str, int]:
    """Every kind of property."""
    return {}


def test_metadata_of_a_node_with_every_kind_of_property() -> None:
    catalog = NodeCatalog([spec_of(everything)])
    meta = catalog.by_type["test.Everything"]
    check(meta, NODE_METADATA)
    props = {prop["name"]: prop for prop in meta["properties"]}  # type: ignore[attr-defined]
    assert props["mode"]["default"] == "fast" and props["mode"]["values"] == ["fast", "slow"]
    assert props["pick"]["default"] == "y" and props["pick"]["values"] == ["x", "y"]
    assert (props["ratio"]["min"], props["ratio"]["max"]) == (0.0, 1.0)
    assert props["ratio"]["description"] == "a share" and props["ratio"]["title"] == "Ratio"
    assert props["items"]["type"]["optional"] is True and props["items"]["default"] is None
    assert props["image"]["default"] == {"type": "image", "uri": ""}
    assert props["infinite"]["default"] == math.inf  # JSON encoding makes it null
    assert meta["outputs"] == [
        {
            "name": "output",
            "type": {**plain("dict"), "type_args": [plain("str"), plain("int")]},
            "stream": False,
        }
    ]
    assert msgspec.json.decode(msgspec.json.encode(meta))["properties"][5]["default"] is None


def test_every_builtin_fits_the_sdk_model_and_the_catalog_is_stable() -> None:
    catalog = NodeCatalog(BUILTIN_NODES)
    assert len(catalog.nodes) == len(BUILTIN_NODES)
    assert [meta["node_type"] for meta in catalog.nodes] == sorted(catalog.by_type)
    for meta in catalog.nodes:
        check(meta, NODE_METADATA)
    assert NodeCatalog(reversed(BUILTIN_NODES)).revision == catalog.revision
    assert NodeCatalog(BUILTIN_NODES[1:]).revision != catalog.revision
    assert catalog.select(namespace="nodetool.text") == [
        meta for meta in catalog.nodes if meta["namespace"] == "nodetool.text"
    ]
    assert set(catalog.select(full=False)[0]) == {"node_type", "title", "description", "namespace"}


def test_inventory_pages_cover_every_type_once() -> None:
    catalog = NodeCatalog(BUILTIN_NODES)
    first = catalog.inventory(0, 3)
    check(first, INVENTORY)
    seen: list[str] = []
    cursor: int | None = 0
    while cursor is not None:
        page = catalog.inventory(cursor, 3)
        seen += [entry["signature"] for entry in page["types"]]  # type: ignore[attr-defined]
        cursor = page["next_cursor"]  # type: ignore[assignment]
    assert len(seen) == len(set(seen)) == first["type_count"]
    strings = next(e for e in catalog.inventory(0, 100)["types"] if e["signature"] == "str")  # type: ignore[attr-defined]
    assert strings["input_uses"] > 0 and strings["node_count"] > 0 and strings["examples"]
