"""Media values in text frames: NodeTool asset refs with their bytes as ``data:`` URIs.

A media value is a NodeTool asset ref, a map such as ``{"type": "image", "uri": "",
"asset_id": null, "data": <bytes>}``. Over MessagePack its bytes travel as ``bin`` in
``data``. JSON has no bytes, and NodeTool's servers write such a ref to a text client in
their ``data_uri`` asset output mode: ``uri`` becomes ``data:<mime>;base64,<bytes>``
and ``data`` becomes ``null``, every other key kept (nodetool-core's
``ProcessingContext._asset_to_data_uri``; NodeTool's C# SDK reads the bytes and the
MIME type back from such a ``uri``). :func:`with_data_uris` does that to every ref,
however nested, whose ``data`` is bytes; it is a property of the JSON encoding of a
frame, not of the run, since one run's messages go to clients of both modes and are
stored once, as MessagePack.

The MIME type is the ref's own ``mime_type``/``content_type`` when it has one, else
NodeTool's default for its ``type`` (``image`` → ``image/png``, ``audio`` →
``audio/mp3``, …, ``model_3d`` by its ``format``). A ``dataframe`` ref is left alone:
its ``data`` is rows, not bytes.

:func:`parse_data_uri` is the other direction (RFC 2397), for a text client that sends
media as a ``data:`` URI.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

__all__ = ["DATA_SCHEME", "data_uri", "media_mime", "parse_data_uri", "with_data_uris"]

DATA_SCHEME = "data:"

_OCTETS = "application/octet-stream"
#: NodeTool's MIME type of each asset ref type (nodetool-core ``_guess_asset_mime_ext``).
_MIME_BY_TYPE = {
    "image": "image/png",
    "audio": "audio/mp3",
    "video": "video/mp4",
    "text": "text/plain",
    "html": "text/plain",
}
_MODEL_3D_MIME = {
    "glb": "model/gltf-binary",
    "gltf": "model/gltf+json",
    "obj": "model/obj",
    "mtl": "model/mtl",
    "stl": "model/stl",
    "ply": "application/x-ply",
    "fbx": "application/octet-stream",
    "usdz": "model/vnd.usdz+zip",
}
_BYTES = (bytes, bytearray, memoryview)


def media_mime(ref: Mapping[str, object]) -> str:
    """The MIME type of asset ref ``ref``'s bytes."""
    for key in ("mime_type", "content_type"):
        explicit = ref.get(key)
        if isinstance(explicit, str) and explicit:
            return explicit
    kind = ref.get("type")
    if kind == "model_3d":
        form = ref.get("format")
        return _MODEL_3D_MIME.get(form if isinstance(form, str) else "glb", _OCTETS)
    return _MIME_BY_TYPE.get(kind, _OCTETS) if isinstance(kind, str) else _OCTETS


def data_uri(mime: str, data: bytes | bytearray | memoryview) -> str:
    """``data:<mime>;base64,<data>``."""
    return f"{DATA_SCHEME}{mime};base64,{base64.b64encode(data).decode('ascii')}"


def parse_data_uri(uri: str) -> tuple[str, bytes]:
    """The MIME type and bytes of a ``data:`` URI, base64 or percent-encoded (RFC 2397);
    :class:`ValueError` when ``uri`` is not one."""
    if uri[:5].lower() != DATA_SCHEME:
        raise ValueError("not a data: URI")
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise ValueError("data: URI without a comma")
    mime, _, params = header.partition(";")
    if params.lower().split(";")[-1] == "base64":
        try:
            # Whitespace is tolerated (wrapped lines); anything else outside the alphabet is not.
            data = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("data: URI payload is not base64") from None
    else:
        data = unquote_to_bytes(payload)
    return mime.strip() or "text/plain", data


def with_data_uris(value: object) -> object:
    """``value`` with each asset ref holding bytes in ``data`` replaced by a copy whose
    ``uri`` is their ``data:`` URI and ``data`` is ``None``.

    ``value`` itself is returned when it holds no such ref (the common case: no copy);
    otherwise only the maps and lists on the way to a ref are copied, never mutated, since
    the same message is also sent to binary clients. Raises :class:`RecursionError` for
    a value nested about as deep as the interpreter's recursion limit.
    """
    if isinstance(value, dict):
        return _map(value)
    if isinstance(value, list | tuple):
        return _sequence(value)
    return value


def _map(value: dict[str, object]) -> dict[str, object]:
    data = value.get("data")
    kind = value.get("type")
    if isinstance(data, _BYTES) and isinstance(kind, str) and kind != "dataframe":
        converted = dict(value)
        converted["uri"] = data_uri(media_mime(value), data)
        converted["data"] = None
        return converted
    changed: dict[str, object] | None = None
    for key, item in value.items():
        # One call per level of nesting, as msgspec's own: whatever it decoded, this walks.
        if isinstance(item, dict):
            new: object = _map(item)
        elif isinstance(item, list | tuple):
            new = _sequence(item)
        else:
            continue
        if new is not item:
            if changed is None:
                changed = dict(value)
            changed[key] = new
    return value if changed is None else changed


def _sequence(value: list[object] | tuple[object, ...]) -> list[object] | tuple[object, ...]:
    changed: list[object] | None = None
    for index, item in enumerate(value):
        if isinstance(item, dict):
            new: object = _map(item)
        elif isinstance(item, list | tuple):
            new = _sequence(item)
        else:
            continue
        if new is not item:
            if changed is None:
                changed = list(value)
            changed[index] = new
    return value if changed is None else changed
