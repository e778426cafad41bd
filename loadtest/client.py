"""The benchmark's WebSocket client: one single-node run at a time, verified.

A run is one binary ``run_job`` frame for a ``nodetool.text.Concat`` node
(``"hello " + "world"``); its round trip lasts from the send until the run's
terminal ``job_update`` arrives. Every terminal frame is checked — status
``completed`` and ``result.outputs["n1"]["output"] == {"type": "string",
"value": "hello world"}`` — so a server that skips the work shows up as failures
instead of as speed.

A run is bounded by ``RUN_TIMEOUT_S`` through ``watched``: a timeout raises
``RunTimeout``, since the connection's state is unknown after it. Timing and
load live in ``loadtest.phases``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

__all__ = [
    "RUN_TIMEOUT_S",
    "BadFrame",
    "BenchConnection",
    "RunError",
    "RunOutcome",
    "RunSpec",
    "RunTimeout",
    "check_terminal",
    "decode_frame",
    "verified_run",
    "watched",
]

RUN_TIMEOUT_S = 10.0
NODE_ID = "n1"
EXPECTED_OUTPUT: dict[str, object] = {"type": "string", "value": "hello world"}
WATCHDOG_PERIOD_S = 0.25
_TERMINAL = frozenset({"completed", "failed", "cancelled"})
_JOB_ID_SLOT = "\x01" * 32  # appears nowhere else in a request
_JOB_ID_SLOT_BYTES = _JOB_ID_SLOT.encode()
T = TypeVar("T")


class RunError(Exception):
    """A run left its connection in an unknown state; the phase cannot go on."""


class RunTimeout(RunError):
    """No terminal ``job_update`` arrived within ``RUN_TIMEOUT_S``."""

    def __init__(self, job_id: str, frames: int) -> None:
        super().__init__(f"run {job_id}: no terminal job_update after {RUN_TIMEOUT_S} s")
        self.job_id = job_id
        self.frames = frames


class BadFrame(RunError):
    """A frame that is not a msgpack map with string ``type``, ``status`` and ``job_id``."""

    def __init__(self, job_id: str, data: bytes | str, reason: str) -> None:
        super().__init__(f"run {job_id}: bad frame ({reason}): {data[:200]!r}")
        self.job_id = job_id
        self.reason = reason


@dataclass(frozen=True)
class RunSpec:
    """What each run asks the server for (PROTOCOL.md §2.1 ``execution_options``)."""

    event_detail: Literal["terminal", "full"]
    persistence: Literal["session", "job"] = "session"
    #: A node that concatenates ``a`` and ``b``: native, or in a NodeTool worker.
    node_type: str = "nodetool.text.Concat"

    def request(self, job_id: str) -> bytes:
        """The binary ``run_job`` frame for one run; ``job_id`` is 32 ASCII characters."""
        if len(job_id) != len(_JOB_ID_SLOT):
            raise ValueError(f"job_id must have {len(_JOB_ID_SLOT)} characters: {job_id!r}")
        # Same-length replacement keeps msgpack's str header valid; it saves a
        # full encode per run on the load generator.
        return self._template.replace(_JOB_ID_SLOT_BYTES, job_id.encode())

    @functools.cached_property
    def _template(self) -> bytes:
        return _encoder.encode(
            {
                "command": "run_job",
                "type": "run_job",
                "request_id": None,
                "data": {
                    "type": "run_job_request",
                    "job_id": _JOB_ID_SLOT,
                    "workflow_id": NODE_ID,
                    "graph": {
                        "nodes": [
                            {
                                "id": NODE_ID,
                                "type": self.node_type,
                                "data": {"a": "hello ", "b": "world"},
                            }
                        ],
                        "edges": [],
                    },
                    "params": {},
                    "explicit_types": True,
                    "require_terminal_result": True,
                    "execution_options": {
                        "persistence": self.persistence,
                        "event_detail": self.event_detail,
                    },
                },
            }
        )


class _Frame(msgspec.Struct):
    # Only what tells a terminal frame apart; ``result`` stays raw until the
    # frame is known to be terminal, so intermediate frames cost the client little.
    type: str | None = None
    status: str | None = None
    job_id: str | None = None
    # msgspec cannot put Raw in a union: a missing result is an empty Raw.
    result: msgspec.Raw = msgspec.Raw()
    error: object = None


class _Result(msgspec.Struct):
    outputs: dict[str, dict[str, object]]


_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(_Frame)
_result_decoder = msgspec.msgpack.Decoder(_Result)


def decode_frame(data: bytes) -> _Frame:
    """The fields of a server frame the client looks at; raises ``msgspec.MsgspecError``."""
    return _frame_decoder.decode(data)


def check_terminal(frame: _Frame) -> str | None:
    """``None`` when ``frame`` is the expected successful terminal, else why not."""
    if frame.status != "completed":
        return f"status {frame.status!r}: {frame.error!r}"[:300]
    if not frame.result:
        return "completed without result"
    try:
        outputs = _result_decoder.decode(frame.result).outputs
    except msgspec.ValidationError as exc:
        return f"result is not {{outputs: …}}: {exc}"
    got = outputs.get(NODE_ID, {}).get("output")
    if got != EXPECTED_OUTPUT:
        return f"wrong output {got!r}"[:300]
    return None


@dataclass(frozen=True)
class RunOutcome:
    """One finished run: ``frames`` counts every frame received for it, ack included."""

    frames: int
    failure: str | None


class BenchConnection:
    """One WebSocket to ``/ws`` that carries sequential runs (never two at once).

    ``run_once`` has no timer of its own (``asyncio.timeout`` costs ~5 µs a run,
    a sixth of the client's per-run budget at full load); ``watched`` bounds it
    instead by checking ``running_since`` from one watchdog per phase.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        # Job ids are 32 hex digits like uuid4().hex, unique per connection by
        # prefix and per run by counter, at a tenth of uuid4's cost.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._runs = 0
        self.job_id = ""
        self.frames = 0
        self.running_since: float | None = None

    @classmethod
    async def open(cls, uri: str) -> BenchConnection:
        """Connect with deflate and keepalive pings off: neither is part of what is measured."""
        ws = await connect(
            uri,
            compression=None,
            max_size=2**24,
            ping_interval=None,
            open_timeout=RUN_TIMEOUT_S,
            close_timeout=2,
        )
        return cls(ws)

    async def close(self) -> None:
        await self._ws.close()

    @property
    def is_open(self) -> bool:
        """Neither side has started closing the WebSocket."""
        return self._ws.state is State.OPEN

    async def run_once(self, spec: RunSpec) -> RunOutcome:
        """Send one run and read frames until its terminal ``job_update``.

        Raises ``BadFrame`` for a frame it cannot read and websockets'
        ``ConnectionClosed`` if the server closes the socket. Unbounded by itself:
        call it inside ``watched``.
        """
        self._runs += 1
        job_id = self.job_id = f"{self._id_prefix}{self._runs:016x}"
        self.frames = 0
        self.running_since = time.monotonic()
        await self._ws.send(spec.request(job_id))
        while True:
            data = await self._ws.recv(decode=False)
            self.frames += 1
            try:
                frame = decode_frame(data)
            except msgspec.MsgspecError as exc:
                raise BadFrame(job_id, data, str(exc)) from None
            if frame.type == "job_update" and frame.status in _TERMINAL and frame.job_id == job_id:
                self.running_since = None
                return RunOutcome(self.frames, check_terminal(frame))
            if frame.type is None and frame.error is not None:
                # An untyped error ack (e.g. invalid_command) means no run was
                # started, so no terminal will ever come.
                self.running_since = None
                return RunOutcome(self.frames, f"error ack: {frame.error!r}"[:300])


async def watched(phase: Awaitable[T], conns: Sequence[BenchConnection]) -> T:
    """Await ``phase``; cancel it and raise ``RunTimeout`` if any run on ``conns``
    has waited ``RUN_TIMEOUT_S`` for its terminal frame."""
    task = asyncio.ensure_future(phase)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=WATCHDOG_PERIOD_S)
            if done:
                return task.result()
            now = time.monotonic()
            for conn in conns:
                since = conn.running_since
                if since is not None and now - since > RUN_TIMEOUT_S:
                    raise RunTimeout(conn.job_id, conn.frames)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def verified_run(uri: str, spec: RunSpec) -> None:
    """Open a connection, make one run, close; raise ``RunError`` unless it was correct.

    Warms a fresh server up (imports, caches) before its footprint is measured.
    """
    conn = await BenchConnection.open(uri)
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            outcome = await conn.run_once(spec)
    except TimeoutError:
        raise RunTimeout(conn.job_id, conn.frames) from None
    finally:
        await conn.close()
    if outcome.failure is not None:
        raise RunError(f"warm-up run failed: {outcome.failure}")
