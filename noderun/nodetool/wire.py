"""NodeTool's worker wire over pipes, sans-I/O.

Each frame is a 4-byte big-endian length, then a msgpack map
``{type, request_id, data}``. :func:`encode_frame` builds one;
:class:`FrameBuffer` takes bytes as they come off the worker's stdout and hands
out whole frames. Nothing here touches a pipe or a loop.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from noderun.nodetool.errors import WireError

__all__ = ["MAX_FRAME", "FrameBuffer", "WorkerFrame", "encode_frame"]

#: The worker's own default limit (``NODETOOL_BRIDGE_MAX_FRAME_SIZE``).
MAX_FRAME = 256 * 1024 * 1024

_HEADER = struct.Struct(">I")


class WorkerFrame(msgspec.Struct, frozen=True):
    """One frame either way; ``data`` is whatever the frame type carries."""

    type: str
    request_id: str | None = None
    data: Any = None


class _Outgoing(msgspec.Struct):
    """A frame as encoded: a struct, so the encoder writes the map without a dict."""

    type: str
    request_id: str | None
    data: object


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WorkerFrame)


def encode_frame(kind: str, request_id: str | None, data: object) -> bytearray:
    """The bytes of one frame, length prefix included (one buffer, nothing copied)."""
    frame = bytearray(_HEADER.size)
    _encoder.encode_into(_Outgoing(kind, request_id, data), frame, _HEADER.size)
    length = len(frame) - _HEADER.size
    if length > MAX_FRAME:
        raise WireError(f"{kind} frame of {length} bytes exceeds {MAX_FRAME}")
    _HEADER.pack_into(frame, 0, length)
    return frame


class FrameBuffer:
    """Bytes in, frames out.

    Holds at most one partial frame; a length beyond :data:`MAX_FRAME` or a
    payload that is not a frame raises :class:`WireError` (the stream cannot be
    trusted after that).
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray) -> list[WorkerFrame]:
        """Append ``data``; return every frame it completed, in order."""
        buffer = self._buffer
        if buffer:
            buffer += data
            view = memoryview(buffer)
        else:
            # The usual case, a read that starts at a frame: decoded where it lies.
            view = memoryview(data)
        frames: list[WorkerFrame] = []
        start = 0
        size = len(view)
        try:
            while size - start >= _HEADER.size:
                (length,) = _HEADER.unpack_from(view, start)
                if length > MAX_FRAME:
                    raise WireError(f"frame length {length} exceeds {MAX_FRAME}")
                end = start + _HEADER.size + length
                if size < end:
                    break
                try:
                    frames.append(_decoder.decode(view[start + _HEADER.size : end]))
                except msgspec.DecodeError as exc:
                    raise WireError(f"undecodable worker frame: {exc}") from None
                start = end
        finally:
            # Released before the buffer is resized (a bytearray with a view cannot be).
            view.release()
        if buffer:
            del buffer[:start]
        elif start < size:
            buffer += data[start:]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a frame not yet complete."""
        return len(self._buffer)
