"""explicit_types wrapping (PROTOCOL.md §3.4)."""

from __future__ import annotations

from noderun.protocol.values import wrap_explicit


def test_scalars_are_wrapped_with_their_type_names() -> None:
    assert wrap_explicit("a") == {"type": "string", "value": "a"}
    assert wrap_explicit(True) == {"type": "boolean", "value": True}
    assert wrap_explicit(3) == {"type": "integer", "value": 3}
    assert wrap_explicit(1.5) == {"type": "float", "value": 1.5}
    assert wrap_explicit(b"\x00") == {"type": "bytes", "value": b"\x00"}


def test_lists_are_wrapped_item_by_item() -> None:
    assert wrap_explicit(["a", 1]) == {
        "type": "list",
        "value": [{"type": "string", "value": "a"}, {"type": "integer", "value": 1}],
    }


def test_untyped_maps_wrap_each_value_and_typed_maps_stay_unchanged() -> None:
    assert wrap_explicit({"x": False}) == {"x": {"type": "boolean", "value": False}}
    image = {"type": "image", "uri": "file:///a.png"}
    assert wrap_explicit(image) is image


def test_none_and_str_subclasses() -> None:
    class Name(str):
        pass

    assert wrap_explicit(None) is None
    assert wrap_explicit(Name("n")) == {"type": "string", "value": "n"}
