"""Media values in text frames: asset refs with bytes become ``data:`` URIs, sans I/O."""

from __future__ import annotations

import base64
import typing

import msgspec
import pytest

from noderun.protocol import server
from noderun.protocol.codec import VALUE_FIELDS, Outbound, text_form
from noderun.protocol.media import data_uri, media_mime, parse_data_uri, with_data_uris
from noderun.protocol.server import JobUpdate, NodeProgress, OutputUpdate

PNG = b"\x89PNG\r\n\x1a\n\x00\xff"
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


def image(**extra: object) -> dict[str, object]:
    return {"type": "image", "uri": "", "asset_id": None, "data": PNG, **extra}


def test_a_ref_with_bytes_gets_them_as_its_uri_and_null_data_keeping_other_keys() -> None:
    ref = image(metadata={"w": 1}, asset_id="a1")
    assert with_data_uris(ref) == {**ref, "uri": PNG_URI, "data": None}
    # The original is never mutated: binary clients get the same message.
    assert ref["data"] == PNG and ref["uri"] == ""


def test_refs_nested_in_maps_lists_and_tuples_are_converted_and_the_rest_is_shared() -> None:
    untouched = {"n": [1, 2.5, "x", None, True]}
    value = {"a": [image(), ("t", image())], "b": {"c": image()}, "d": untouched}
    converted = with_data_uris(value)
    assert isinstance(converted, dict)
    assert converted["a"][0]["uri"] == PNG_URI
    assert converted["a"][1] == ["t", image(uri=PNG_URI, data=None)]
    assert converted["b"]["c"]["uri"] == PNG_URI
    assert converted["d"] is untouched
    assert value["a"][0]["data"] == PNG  # type: ignore[index]


@pytest.mark.parametrize(
    "value",
    [
        "text",
        7,
        None,
        PNG,  # bare bytes: no ref, stays bytes (base64 in JSON)
        {"type": "bytes", "value": PNG},  # explicit_types' bytes wrapper
        {"data": PNG},  # no type: not a ref
        {"type": "dataframe", "data": [[1, 2]]},
        {"type": "image", "uri": "asset://x", "data": None},
        {"type": "image", "data": "aGk="},  # a text client's base64 passes through
        {"k": [{"type": "text", "value": "v"}]},
    ],
)
def test_values_without_a_ref_holding_bytes_are_returned_as_they_are(value: object) -> None:
    assert with_data_uris(value) is value


@pytest.mark.parametrize(
    ("ref", "mime"),
    [
        ({"type": "image"}, "image/png"),
        ({"type": "audio"}, "audio/mp3"),
        ({"type": "video"}, "video/mp4"),
        ({"type": "text"}, "text/plain"),
        ({"type": "model_3d"}, "model/gltf-binary"),
        ({"type": "model_3d", "format": "obj"}, "model/obj"),
        ({"type": "document"}, "application/octet-stream"),
        ({"type": "image", "mime_type": "image/jpeg"}, "image/jpeg"),
        ({"type": "audio", "content_type": "audio/wav"}, "audio/wav"),
    ],
)
def test_the_mime_type_is_the_refs_own_else_nodetools_default_for_its_type(
    ref: dict[str, object], mime: str
) -> None:
    assert media_mime(ref) == mime


def test_data_uris_parse_back_base64_and_percent_encoded() -> None:
    assert parse_data_uri(data_uri("image/png", PNG)) == ("image/png", PNG)
    assert parse_data_uri("DATA:image/png;BASE64,iVBO\nRw0K") == ("image/png", b"\x89PNG\r\n")
    assert parse_data_uri("data:,Hello%20World") == ("text/plain", b"Hello World")
    assert parse_data_uri("data:text/plain;charset=utf-8,%C3%A9") == ("text/plain", b"\xc3\xa9")


@pytest.mark.parametrize(
    "uri", ["http://x/y.png", "data:image/png;base64", "data:image/png;base64,@@@"]
)
def test_a_bad_data_uri_is_a_value_error(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_data_uri(uri)


def test_json_frames_carry_data_uris_and_msgpack_frames_bytes() -> None:
    message = JobUpdate(
        job_id="j", workflow_id="w", status="completed", result={"outputs": {"p": image()}}
    )
    item = Outbound(message, 3)
    as_json = msgspec.json.decode(item.json())
    as_msgpack = msgspec.msgpack.decode(item.msgpack())
    assert as_json["result"]["outputs"]["p"] == image(uri=PNG_URI, data=None)
    assert as_msgpack["result"]["outputs"]["p"] == image()
    assert message.result == {"outputs": {"p": image()}}
    # A stored frame (MessagePack) replayed to a text client: the same JSON.
    assert Outbound.from_msgpack(3, item.msgpack()).json() == item.json()


def test_messages_without_media_are_not_copied() -> None:
    progress = NodeProgress(job_id="j", workflow_id="w", node_id="n", progress=1, total=2)
    output = OutputUpdate(
        job_id="j",
        workflow_id="w",
        node_id="n",
        node_name="N",
        output_name="output",
        value={"k": ["v"]},
        output_type="dict",
    )
    assert text_form(progress) is progress
    assert text_form(output) is output


def _nested(depth: int) -> list[object]:
    value: list[object] = [image()]
    for _ in range(depth):
        value = [value]
    return value


def test_a_value_nested_as_deep_as_msgspec_encodes_still_encodes() -> None:
    """Too deep for the walk (which adds frames on msgspec's): sent unconverted, not lost."""
    for depth in range(1000, 0, -5):
        try:
            msgspec.json.encode({"result": {"v": _nested(depth)}})
        except RecursionError:
            continue
        break
    # A few levels less: Outbound.json encodes a few calls deeper than this test.
    depth -= 10
    message = JobUpdate(
        job_id="j", workflow_id="w", status="completed", result={"v": _nested(depth)}
    )
    decoded = msgspec.json.decode(Outbound(message).json())["result"]["v"]
    for _ in range(depth):
        (decoded,) = decoded
    (ref,) = decoded
    assert ref in (image(uri=PNG_URI, data=None), image(data=base64.b64encode(PNG).decode()))


def _carries_values(annotation: object) -> bool:
    """Whether a field of this type can hold a node's value (``object`` or a map of them)."""
    if annotation is object:
        return True
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[1] is object
    return any(_carries_values(arg) for arg in typing.get_args(annotation))


#: Map fields the server fills itself, never with a node's value.
_SERVERS_OWN = {
    (server.JobUpdate, "run_state"),
    (server.JobNotice, "run_state"),
    (server.OutputUpdate, "metadata"),
}


def test_every_server_message_field_that_can_carry_a_value_is_converted() -> None:
    """A new message type with a value field must be listed in ``VALUE_FIELDS``, or a
    text client would get base64 in ``data`` there."""
    found: dict[type, tuple[str, ...]] = {}
    for name in server.__all__:
        kind = getattr(server, name)
        if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
            continue
        hints = typing.get_type_hints(kind)
        fields = tuple(
            field
            for field in kind.__struct_fields__
            if _carries_values(hints[field]) and (kind, field) not in _SERVERS_OWN
        )
        if fields:
            found[kind] = fields
    assert found == VALUE_FIELDS
