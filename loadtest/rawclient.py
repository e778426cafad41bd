"""A lean WebSocket load client: callbacks on an asyncio protocol, no coroutine per run.

``loadtest.client`` (websockets' client, one awaited ``recv`` per frame) costs the
client about as much CPU per run as the server spends on it. That is fine when the
client has a CPU of its own, but on a two-core machine it decides how much CPU is
left for the servers, so a comparison of ``--workers 1`` with ``--workers 2``
would measure the client. This client does the same work per run with a fraction of
the CPU: the handshake by hand, then per run one masked binary ``run_job`` frame
(``RunSpec.request``) written from the callback that received the previous run's
terminal, frames parsed straight from the byte stream, and every terminal checked
with ``loadtest.client.check_terminal`` exactly as the benchmark's client does.

Scope: what noderun's server sends (unfragmented text or binary frames, pings);
a fragmented or masked server frame, a close, or a failed handshake ends the
connection with ``RawClientError``. Frames are masked with a fresh random key
(RFC 6455 §5.3) using websockets' C ``apply_mask``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import struct
import time
import uuid
from dataclasses import dataclass
from typing import cast

import msgspec
from websockets.speedups import apply_mask

from loadtest.client import RunSpec, check_terminal, decode_frame

__all__ = ["RawClientError", "RawConnection", "Tally", "open_connection"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TERMINAL = frozenset({"completed", "failed", "cancelled"})
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class RawClientError(Exception):
    """The connection cannot go on: failed handshake, close, or a frame this client refuses."""


@dataclass
class Tally:
    """Runs finished on one connection since the last ``reset``."""

    completed: int = 0
    failures: int = 0
    first_failure: str | None = None

    def reset(self) -> None:
        self.completed = self.failures = 0
        self.first_failure = None


def _client_frame(payload: bytes, opcode: int = _OP_BINARY) -> bytes:
    """One masked, unfragmented client frame."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = random.getrandbits(32).to_bytes(4, "big")
    return header + mask + apply_mask(payload, mask)


class RawConnection(asyncio.Protocol):
    """One ``/ws`` connection running ``spec`` back to back until ``stop_at``.

    ``start(stop_at)`` sends the first run; each verified terminal sends the next
    while ``time.perf_counter() < stop_at``; ``idle`` resolves when the run in flight
    at the deadline has finished. ``error`` is set (and ``idle`` resolved) when the
    connection cannot go on.
    """

    def __init__(self, spec: RunSpec, host: str, path: str) -> None:
        self._spec = spec
        self._host = host
        self._path = path
        self._key = base64.b64encode(os.urandom(16))
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._open = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.idle.set_result(None)
        self.error: BaseException | None = None
        self.tally = Tally()
        # 32 hex digits like uuid4().hex: unique per connection by prefix, per run by counter.
        self._prefix = uuid.uuid4().hex[:16]
        self._runs = 0
        self._job_id = ""
        self._stop_at = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        writer = cast(asyncio.Transport, transport)
        self._transport = writer
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (self._path.encode(), self._host.encode(), self._key)
        )

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            if not self._open:
                self._handshake()
            if self._open:
                self._frames()
        except RawClientError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RawClientError(f"connection lost: {exc!r}"))

    # Runs

    def start(self, stop_at: float) -> None:
        """Send runs back to back until ``stop_at`` (``time.perf_counter()``)."""
        self._stop_at = stop_at
        self.idle = asyncio.get_running_loop().create_future()
        self._send_run()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _send_run(self) -> None:
        assert self._transport is not None
        self._runs += 1
        self._job_id = f"{self._prefix}{self._runs:016x}"
        self._transport.write(_client_frame(self._spec.request(self._job_id)))

    def _finished(self, failure: str | None) -> None:
        tally = self.tally
        if failure is None:
            tally.completed += 1
        else:
            tally.failures += 1
            if tally.first_failure is None:
                tally.first_failure = failure
        if time.perf_counter() < self._stop_at:
            self._send_run()
        elif not self.idle.done():
            self.idle.set_result(None)

    def _fail(self, exc: RawClientError) -> None:
        if self.error is None:
            self.error = exc
        for future in (self.opened, self.idle):
            if not future.done():
                future.set_exception(exc)

    # Parsing

    def _handshake(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        lines = head.split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise RawClientError(f"handshake refused: {lines[0]!r}")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
        }
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise RawClientError("handshake: wrong Sec-WebSocket-Accept")
        self._open = True
        self.opened.set_result(None)

    def _frames(self) -> None:
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            if second & 0x80:
                raise RawClientError("the server sent a masked frame")
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if len(buffer) - start < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if len(buffer) - start < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            end = start + length
            if len(buffer) < end:
                break
            payload = bytes(buffer[start:end])
            offset = end
            opcode = first & 0x0F
            if not first & 0x80 or opcode == _OP_CONT:
                raise RawClientError("the server sent a fragmented frame")
            if opcode in (_OP_TEXT, _OP_BINARY):
                self._frame(payload)
            elif opcode == _OP_PING:
                assert self._transport is not None
                self._transport.write(_client_frame(payload, _OP_PONG))
            elif opcode == _OP_CLOSE:
                raise RawClientError(f"the server closed the connection: {payload[:2].hex()}")
        del buffer[:offset]

    def _frame(self, payload: bytes) -> None:
        try:
            frame = decode_frame(payload)
        except msgspec.MsgspecError as exc:
            raise RawClientError(f"run {self._job_id}: bad frame: {exc}") from None
        if frame.type == "job_update" and frame.status in _TERMINAL:
            if frame.job_id == self._job_id:
                self._finished(check_terminal(frame))
        elif frame.type is None and frame.error is not None:
            # An error ack (no run started): no terminal will come for this run.
            self._finished(f"error ack: {frame.error!r}"[:300])


async def open_connection(host: str, port: int, spec: RunSpec, path: str = "/ws") -> RawConnection:
    """A connected ``RawConnection`` whose handshake has completed."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: RawConnection(spec, f"{host}:{port}", path), host, port
    )
    await protocol.opened
    return protocol
