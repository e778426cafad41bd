"""FormReader: multipart bytes in, part events out, however the body is split."""

from __future__ import annotations

import pytest

from noderun.assets import FormError
from noderun.assets.form import (
    MAX_PARTS,
    FormEnded,
    FormEvent,
    FormReader,
    PartData,
    PartEnded,
    PartStarted,
    boundary_of,
)

BOUNDARY = "XyZzy123"


def body(*parts: bytes, close: bool = True) -> bytes:
    out = b"".join(b"--" + BOUNDARY.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return out + (b"--" + BOUNDARY.encode() + b"--\r\n" if close else b"")


FILE_PART = (
    b'Content-Disposition: form-data; name="file"; filename="caf\xc3\xa9.png"\r\n'
    b"Content-Type: image/png\r\n\r\n\x00\x01\r\n\x02--XyZ"
)
JSON_PART = b'Content-Disposition: form-data; name="json"\r\n\r\n{"name": "x"}'


def read(data: bytes, step: int) -> list[FormEvent]:
    reader = FormReader(BOUNDARY)
    events: list[FormEvent] = []
    for start in range(0, len(data), step):
        events.extend(reader.feed(data[start : start + step]))
    reader.close()
    return events


def merged(events: list[FormEvent]) -> list[object]:
    """Adjacent PartData joined, so any chunking compares equal."""
    out: list[object] = []
    for event in events:
        if isinstance(event, PartData) and out and isinstance(out[-1], bytes):
            out[-1] += event.data
        else:
            out.append(event.data if isinstance(event, PartData) else event)
    return out


@pytest.mark.parametrize("step", [1, 3, 7, 64, 10_000])
def test_events_are_the_same_whatever_the_chunking(step: int) -> None:
    assert merged(read(body(FILE_PART, JSON_PART), step)) == [
        PartStarted(name="file", filename="café.png", content_type="image/png"),
        b"\x00\x01\r\n\x02--XyZ",
        PartEnded(),
        PartStarted(name="json", filename=None, content_type=None),
        b'{"name": "x"}',
        PartEnded(),
        FormEnded(),
    ]


def test_a_body_without_the_closing_boundary_is_an_error() -> None:
    reader = FormReader(BOUNDARY)
    reader.feed(body(FILE_PART, close=False))
    with pytest.raises(FormError, match="closing boundary"):
        reader.close()


def test_bytes_after_the_closing_boundary_are_ignored() -> None:
    reader = FormReader(BOUNDARY)
    reader.feed(body(JSON_PART))
    assert reader.feed(b"epilogue") == []
    reader.close()


@pytest.mark.parametrize(
    "data",
    [
        b"garbage that is no multipart at all",
        b"--wrong-boundary\r\n" + JSON_PART,
        body(b"Content-Type: text/plain\r\n\r\nno disposition"),
        body(b'Content-Disposition: attachment; name="x"\r\n\r\nv'),
        body(b"Content-Disposition: form-data\r\n\r\nno name"),
    ],
)
def test_malformed_bodies_are_form_errors(data: bytes) -> None:
    reader = FormReader(BOUNDARY)
    with pytest.raises(FormError):
        reader.feed(data)
        reader.close()


def test_too_many_parts_is_an_error() -> None:
    with pytest.raises(FormError, match="more than"):
        read(body(*[JSON_PART] * (MAX_PARTS + 1)), 10_000)


def test_boundary_of() -> None:
    assert boundary_of('multipart/form-data; boundary="a b"') == "a b"
    assert boundary_of("Multipart/Form-Data; boundary=abc") == "abc"
    for bad in ("application/json", "multipart/form-data", "", "multipart/mixed; boundary=a"):
        with pytest.raises(FormError):
            boundary_of(bad)
