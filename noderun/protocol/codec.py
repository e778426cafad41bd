"""Bytes ↔ frames, sans I/O: MessagePack for binary frames, JSON for text frames.

Decoders and encoders are built once at import. A client frame is decoded in
two steps: the envelope (with ``data`` kept as :class:`msgspec.Raw`), then the
command's ``data`` with the decoder of that command's struct, so a bad
``data`` is told apart from a bad frame (PROTOCOL.md §2).

Hostile input is an error frame, never an exception out of :func:`decode_frame`
other than a :class:`~noderun.protocol.errors.ProtocolError`: nesting deeper
than msgspec decodes (its ``RecursionError``) is an ``invalid_frame``; an
integer that MessagePack cannot carry (only JSON can spell one) is an
``invalid_command``, since every message a run sends must also encode to
MessagePack (replay, durable store, binary clients).
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from noderun.protocol.client import COMMANDS, ClientFrame, Envelope, Ping, Pong, RunJob
from noderun.protocol.errors import CommandError, FrameError, MessageError
from noderun.protocol.media import with_data_uris
from noderun.protocol.server import (
    Chunk,
    JobNotice,
    JobUpdate,
    NodeUpdate,
    OutputUpdate,
    RpcResponse,
)
from noderun.protocol.values import out_of_range

__all__ = [
    "VALUE_FIELDS",
    "Outbound",
    "decode_frame",
    "encode_json",
    "encode_msgpack",
    "text_form",
]

_NIL_MSGPACK = b"\xc0"
_NIL_JSON = b"null"

_envelope_msgpack = msgspec.msgpack.Decoder(Envelope)
_envelope_json = msgspec.json.Decoder(Envelope)
_data_msgpack = {name: msgspec.msgpack.Decoder(cls) for name, cls in COMMANDS.items()}
_data_json = {name: msgspec.json.Decoder(cls) for name, cls in COMMANDS.items()}
_map_msgpack = msgspec.msgpack.Decoder(dict[str, object])
_map_json = msgspec.json.Decoder(dict[str, object])

encode_msgpack = msgspec.msgpack.Encoder().encode
encode_json = msgspec.json.Encoder().encode

_TYPE_ONLY: dict[str, type[Ping] | type[Pong]] = {"ping": Ping, "pong": Pong}

#: The fields of server messages that carry node values (anything a node produced or
#: was given), which :func:`text_form` looks into; the other messages carry none.
VALUE_FIELDS: dict[type, tuple[str, ...]] = {
    JobUpdate: ("result",),
    JobNotice: ("result",),
    NodeUpdate: ("result", "properties"),
    OutputUpdate: ("value",),
    Chunk: ("content",),
    RpcResponse: ("result",),
}

#: A run of digits long enough to spell an integer outside MessagePack's range: only
#: then is a JSON ``data`` walked for one (a 19-digit negative can be out of range).
_LONG_NUMBER = re.compile(rb"[0-9]{19}")

#: ``data`` absent or nil: the command's defaults.
_EMPTY_DATA = frozenset({b"", _NIL_MSGPACK, _NIL_JSON})


class _RunJobFrame(msgspec.Struct):
    """A whole ``run_job`` frame, for the one-pass decode of the hot path."""

    command: Literal["run_job"]
    data: RunJob
    request_id: str | None = None


_run_job_msgpack = msgspec.msgpack.Decoder(_RunJobFrame)


def decode_frame(payload: bytes, *, text: bool) -> ClientFrame:
    """Decode one WebSocket message into a client frame.

    Raises :class:`FrameError`, :class:`MessageError` or :class:`CommandError`,
    each carrying the frame's ``request_id`` when it could be read, and nothing else.
    """
    try:
        if not text:
            # Hot path: a well-formed binary run_job decodes in one pass. Anything
            # else (another command, a malformed frame) fails fast and takes the
            # two-step path below, which also words the errors.
            try:
                whole = _run_job_msgpack.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            else:
                job = whole.data
                job.request_id = whole.request_id
                return job
        return _decode_two_steps(payload, text)
    except RecursionError:
        # msgspec's depth limit: the frame cannot be decoded, nor its request_id read.
        raise FrameError("frame nested too deeply to decode") from None


def _decode_two_steps(payload: bytes, text: bool) -> ClientFrame:
    try:
        envelope = (_envelope_json if text else _envelope_msgpack).decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        request_id = _str_field(payload, "request_id", text=text)
        raise FrameError(str(exc), request_id=request_id) from None
    command = envelope.command
    request_id = envelope.request_id
    if command is None:
        kind = _TYPE_ONLY.get(envelope.type or "")
        if kind is None:
            raise MessageError(
                f"frame has no 'command' and an unknown type {envelope.type!r}",
                request_id=request_id,
            )
        return kind(request_id=request_id)
    raw = envelope.data
    if len(raw) <= 4 and bytes(raw) in _EMPTY_DATA:
        raw = msgspec.Raw(b"{}" if text else b"\x80")
    decoder = (_data_json if text else _data_msgpack).get(command)
    if decoder is None:
        raise CommandError(f"unknown command {command!r}", command=command, request_id=request_id)
    if text and _LONG_NUMBER.search(raw):
        _check_integers(bytes(raw), command, request_id)
    try:
        frame = decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CommandError(
            f"malformed {command!r} data: {exc}",
            command=command,
            request_id=request_id,
            job_id=_str_field(bytes(raw), "job_id", text=text),
        ) from None
    frame.request_id = request_id
    return frame  # type: ignore[return-value]


def _check_integers(raw: bytes, command: str, request_id: str | None) -> None:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return  # the command's decoder words this error
    bad = out_of_range(data)
    if bad is not None:
        raise CommandError(
            f"malformed {command!r} data: integer {bad} is outside the range MessagePack "
            "can carry (-2**63 to 2**64-1)",
            command=command,
            request_id=request_id,
            job_id=_str_field(raw, "job_id", text=True),
        )


def _str_field(raw: bytes, key: str, *, text: bool) -> str | None:
    """``raw[key]`` of a malformed map when it is a readable string, for the error frame."""
    try:
        data = (_map_json if text else _map_msgpack).decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    value = data.get(key)
    return value if isinstance(value, str) else None


#: How bytes under a ``data`` key look in JSON (msgspec writes bytes as a base64 string,
#: keys without spaces): only a frame that contains this can hold a media ref with bytes.
_DATA_TEXT = b'"data":"'


def text_form(message: object) -> object:
    """``message`` as a text (JSON) client gets it: media values with their bytes as
    ``data:`` URIs (:mod:`noderun.protocol.media`), as NodeTool's servers write them in
    text mode. A copy where that changes anything, else ``message`` itself.

    ``message`` is a server message struct, or a map (a stored frame decoded for replay,
    which is walked whole).
    """
    fields = VALUE_FIELDS.get(type(message))
    if fields is None or not isinstance(message, msgspec.Struct):
        return _converted(message) if isinstance(message, dict) else message
    changes: dict[str, object] = {}
    for name in fields:
        value = getattr(message, name)
        converted = _converted(value)
        if converted is not value:
            changes[name] = converted
    return msgspec.structs.replace(message, **changes) if changes else message


def _converted(value: object) -> object:
    try:
        return with_data_uris(value)
    except RecursionError:
        # Nested nearly as deep as msgspec decodes, with the walk's frames on top: sent
        # as it is (base64 in ``data``) rather than not at all.
        return value


class Outbound:
    """One outgoing message with its encodings, each made at most once.

    A run hands the same :class:`Outbound` to every attached connection, to its
    replay buffer and to a durable store; each asks for the encoding it needs,
    so a message is encoded once per wire format however many read it. The two
    differ beyond syntax in one way: media bytes are ``bin`` in MessagePack and a
    ``data:`` URI in JSON (:func:`text_form`); the store keeps the MessagePack, and
    a stored frame replayed to a text client is converted like a live one.
    """

    __slots__ = ("_json", "_msgpack", "message", "seq")

    def __init__(self, message: object, seq: int = 0) -> None:
        self.message = message
        self.seq = seq
        self._msgpack: bytes | None = None
        self._json: bytes | None = None

    def msgpack(self) -> bytes:
        data = self._msgpack
        if data is None:
            data = self._msgpack = encode_msgpack(self.message)
        return data

    def json(self) -> bytes:
        """The message as a text frame: JSON, with media values as ``data:`` URIs.

        The JSON is written first and, for a message that can carry values, looked at
        (one substring search, far cheaper than walking the message): only a frame with
        a string under a ``data`` key can hold bytes to convert, so only such a frame
        pays for :func:`text_form`'s walk and a second encoding.
        """
        data = self._json
        if data is None:
            message = self.ensure_message()
            data = encode_json(message)
            kind = type(message)
            if (kind in VALUE_FIELDS or kind is dict) and data.find(_DATA_TEXT) >= 0:
                converted = text_form(message)
                if converted is not message:
                    data = encode_json(converted)
            self._json = data
        return data

    @classmethod
    def from_msgpack(cls, seq: int, frame: bytes) -> Outbound:
        """A stored frame (exact MessagePack bytes) ready to be resent."""
        item = cls(None, seq)
        item._msgpack = frame
        return item

    def ensure_message(self) -> object:
        """The decoded message, for a stored frame that must be resent as JSON."""
        if self.message is None and self._msgpack is not None:
            self.message = msgspec.msgpack.decode(self._msgpack)
        return self.message
