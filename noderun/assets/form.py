"""A socket-free multipart/form-data reader: feed body bytes, get part events.

Wraps python-multipart's streaming parser (which never holds a whole part) and turns its
callbacks into a list of events per chunk, so the caller decides where each part's bytes
go while the body is still arriving. Anything malformed is a :class:`FormError`,
including a body that ends before the closing boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from noderun.assets.errors import FormError

__all__ = [
    "FormEnded",
    "FormEvent",
    "FormReader",
    "PartData",
    "PartEnded",
    "PartStarted",
    "boundary_of",
]

#: More parts than an upload needs (file, json) by a wide margin; bounds the work a
#: hostile body can cause.
MAX_PARTS = 16


@dataclass(frozen=True, slots=True)
class PartStarted:
    name: str
    #: ``None`` for a plain field (no ``filename`` parameter).
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnded:
    pass


@dataclass(frozen=True, slots=True)
class FormEnded:
    pass


FormEvent = PartStarted | PartData | PartEnded | FormEnded


def boundary_of(content_type: str) -> str:
    """The boundary of a ``multipart/form-data`` Content-Type; :class:`FormError` if it is
    another type or has none."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise FormError("expected a multipart/form-data body")
    boundary = options.get(b"boundary", b"")
    if not boundary:
        raise FormError("multipart/form-data without a boundary")
    return boundary.decode("latin-1")


class FormReader:
    """``feed(chunk)`` returns the events that chunk completed; ``close()`` at the end."""

    def __init__(self, boundary: str) -> None:
        self._events: list[FormEvent] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._parts = 0
        self._ended = False
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._on_part_begin,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_end": self._on_end,
                },
            )
        except FormParserError as exc:
            raise FormError(f"invalid multipart boundary: {exc}") from None

    def feed(self, chunk: bytes) -> list[FormEvent]:
        if self._ended:
            # The epilogue after the closing boundary is ignored, as RFC 2046 allows.
            return []
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise FormError(f"malformed multipart body: {exc}") from None
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        """The body is complete: :class:`FormError` unless the closing boundary came."""
        if not self._ended:
            raise FormError("malformed multipart body: it ends before the closing boundary")

    # -- python-multipart callbacks ------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise FormError(f"more than {MAX_PARTS} parts")
        self._headers = []

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers.append((bytes(self._field).lower(), bytes(self._value)))
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        disposition = next((v for k, v in self._headers if k == b"content-disposition"), None)
        if disposition is None:
            raise FormError("a part has no Content-Disposition header")
        kind, options = parse_options_header(disposition)
        name = options.get(b"name")
        if kind != b"form-data" or name is None:
            raise FormError("a part's Content-Disposition is not form-data with a name")
        filename = options.get(b"filename")
        content_type = next((v for k, v in self._headers if k == b"content-type"), None)
        self._events.append(
            PartStarted(
                name=_text(name),
                filename=_text(filename) if filename is not None else None,
                content_type=_text(content_type).strip() if content_type else None,
            )
        )

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(PartData(data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(PartEnded())

    def _on_end(self) -> None:
        self._ended = True
        self._events.append(FormEnded())


def _text(raw: bytes) -> str:
    # Header values reach here as their original bytes; browsers and .NET send UTF-8.
    return raw.decode("utf-8", errors="replace")
