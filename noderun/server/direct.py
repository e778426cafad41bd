"""Outgoing WebSocket frames written straight to uvicorn's transport, when that is safe.

Through ASGI, every frame is one ``send`` coroutine of uvicorn (its writability
wait, its checks, the message dict), one websockets ``Frame`` serialized through
a ``BytesIO``, and one ``write`` on the socket: per frame, more than the rest
of what the connection does for it (see ``docs/performance.md``). Under uvicorn's
websockets-sansio protocol, the ASGI ``send`` is a bound method of the protocol
object, which holds websockets' sans-I/O connection and the transport. The
outbox then writes what it holds in one go: each frame's header built here, the
frames handed to the transport together (one system call for an ack and a
synchronous run's terminal).

The bytes are exactly what websockets would write: a server's frames are not
masked, and the writer is used only while that is all websockets would do to
them. :meth:`DirectWriter.ready` checks, before every batch: the connection is
``OPEN`` in websockets' state machine with no fragmented message under way, no
extension negotiated (uvicorn_config turns per-message deflate off), nothing of
websockets' own waiting to be written, no debug logging of frames; uvicorn's
side has not sent a close, the client is still connected, and the transport
is not paused (its buffer above the high-water mark). When any of these does
not hold, frames go through the ASGI ``send``, which waits or raises exactly as
before; under any other ASGI server there is no writer at all.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Final

from websockets.protocol import Protocol, State

__all__ = ["BATCH_BYTES", "DirectWriter", "frame_header"]

#: Most payload bytes handed to the transport between two looks at its writability:
#: past its high-water mark the transport pauses and the ASGI ``send`` waits again.
BATCH_BYTES: Final = 64 * 1024

_OPEN: Final = State.OPEN
_TEXT: Final = 0x81  # FIN + opcode 1
_BINARY: Final = 0x82  # FIN + opcode 2
#: Headers of the frames whose length fits in the first byte (< 126), by length.
_SHORT_TEXT: Final = tuple(bytes((_TEXT, length)) for length in range(126))
_SHORT_BINARY: Final = tuple(bytes((_BINARY, length)) for length in range(126))
_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack


def frame_header(length: int, text: bool) -> bytes:
    """The header of an unmasked, final text or binary frame of ``length`` bytes (RFC 6455
    §5.2: lengths under 126 in the second byte, then 126 + 16 bits, 127 + 64 bits)."""
    if length < 126:
        return (_SHORT_TEXT if text else _SHORT_BINARY)[length]
    head = _TEXT if text else _BINARY
    if length < 65536:
        return _MEDIUM(head, 126, length)
    return _LONG(head, 127, length)


class DirectWriter:
    """Writes frames to the transport behind one uvicorn websockets-sansio ``send``."""

    __slots__ = ("_connection", "_protocol", "_transport", "_writable")

    def __init__(
        self, protocol: Any, connection: Protocol, transport: Any, writable: asyncio.Event
    ) -> None:
        self._protocol = protocol
        self._connection = connection
        self._transport = transport
        self._writable = writable

    @classmethod
    def behind(cls, send: Callable[..., Awaitable[None]]) -> DirectWriter | None:
        """The writer for ``send`` when it is uvicorn's websockets-sansio protocol's
        (duck-typed: its ``send`` method with a websockets connection, a transport and
        the ``writable`` event beside it); ``None`` under any other server."""
        protocol = getattr(send, "__self__", None)
        connection = getattr(protocol, "conn", None)
        transport = getattr(protocol, "transport", None)
        writable = getattr(protocol, "writable", None)
        if (
            not isinstance(connection, Protocol)
            or not isinstance(writable, asyncio.Event)
            or not hasattr(transport, "writelines")
            or not hasattr(protocol, "close_sent")
            or not hasattr(protocol, "disconnected")
        ):
            return None
        return cls(protocol, connection, transport, writable)

    def ready(self) -> bool:
        """Whether frames written now are exactly what the ASGI ``send`` would write now,
        without waiting (see the module docstring)."""
        protocol = self._protocol
        connection = self._connection
        return (
            self._writable.is_set()
            and not protocol.close_sent
            and not protocol.disconnected
            and connection.state is _OPEN
            and not connection.expect_continuation_frame
            and not connection.extensions
            and not connection.writes
            and not connection.debug
        )

    def write(self, chunks: list[bytes]) -> None:
        """Hand headers and payloads, in order, to the transport (one write for all)."""
        self._transport.writelines(chunks)
