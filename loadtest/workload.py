"""The soak's mixed workload: run kinds, each verified, on connections that run them in turn.

Kinds (``KINDS``; ``durable`` only when the server has a store):

``single``    one ``nodetool.text.Concat`` node, ``event_detail=terminal``
``full``      the same node at ``event_detail=full`` (every progress frame)
``graph``     ``lib.math.Add`` → ``lib.math.Add`` → ``nodetool.output.Output``, ``full``
``durable``   the single node with ``persistence=job``
``cancelled`` a ``noderun.debug.Sleep`` of 30 s, cancelled once its ack arrives;
              its terminal must say ``cancelled``

Each connection (``Driver``) runs one kind after another, paced to its share of the
target rate, and checks that every run it sends gets exactly one terminal
``job_update``: a terminal that is wrong counts as ``failed``, none within
``RUN_TIMEOUT_S`` (or a connection that drops mid-run) as ``lost`` (the
connection is then replaced), a second terminal for a finished run as
``duplicate``, any other frame for a finished or unknown run as ``stray``; frames
about no run (no ``job_id``, like the server's ``ping``) are only counted. When told to
stop, each driver ends with one ``single`` run, so a late frame of its previous
run still shows up.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["KINDS", "Driver", "RunKind", "Tally", "schedule"]

RUN_TIMEOUT_S = 10.0
_TERMINAL = frozenset({"completed", "failed", "cancelled"})
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

Frame = dict[str, Any]


def _node(node_id: str, node_type: str, **data: object) -> dict[str, object]:
    return {"id": node_id, "type": node_type, "data": data}


def _edge(source: str, target: str, handle: str) -> dict[str, str]:
    return {"source": source, "sourceHandle": "output", "target": target, "targetHandle": handle}


_CONCAT = {"nodes": [_node("n1", "nodetool.text.Concat", a="hello ", b="world")], "edges": []}
_GRAPH = {
    "nodes": [
        _node("a", "lib.math.Add", a=1, b=2),
        _node("b", "lib.math.Add", b=4),
        _node("out", "nodetool.output.Output", name="sum"),
    ],
    "edges": [_edge("a", "b", "a"), _edge("b", "out", "value")],
}
# Long enough that only the cancel can end it within RUN_TIMEOUT_S.
_SLEEP = {"nodes": [_node("s", "noderun.debug.Sleep", seconds=30.0)], "edges": []}


def _outputs(terminal: Frame) -> dict[str, Any]:
    result = terminal.get("result")
    outputs = result.get("outputs") if isinstance(result, dict) else None
    return outputs if isinstance(outputs, dict) else {}


def _concat_ok(terminal: Frame) -> str | None:
    if terminal.get("status") != "completed":
        return f"status {terminal.get('status')!r}: {terminal.get('error')!r}"
    got = _outputs(terminal).get("n1", {}).get("output")
    return None if got == "hello world" else f"wrong output {got!r}"


def _graph_ok(terminal: Frame) -> str | None:
    if terminal.get("status") != "completed":
        return f"status {terminal.get('status')!r}: {terminal.get('error')!r}"
    got = _outputs(terminal).get("sum")
    return None if got == [7] else f"wrong output {got!r}"


def _cancelled_ok(terminal: Frame) -> str | None:
    status = terminal.get("status")
    return None if status == "cancelled" else f"status {status!r} instead of 'cancelled'"


@dataclass(frozen=True)
class RunKind:
    """What one kind of run sends and what its terminal must say."""

    name: str
    graph: Mapping[str, object]
    check: Callable[[Frame], str | None]
    event_detail: str = "terminal"
    persistence: str = "session"
    cancel: bool = False

    def request(self, job_id: str) -> bytes:
        return _encode(
            {
                "command": "run_job",
                "type": "run_job",
                "request_id": None,
                "data": {
                    "type": "run_job_request",
                    "job_id": job_id,
                    "workflow_id": "soak",
                    "graph": self.graph,
                    "params": {},
                    "explicit_types": False,
                    "require_terminal_result": True,
                    "execution_options": {
                        "event_detail": self.event_detail,
                        "persistence": self.persistence,
                    },
                },
            }
        )


KINDS = {
    "single": RunKind("single", _CONCAT, _concat_ok),
    "full": RunKind("full", _CONCAT, _concat_ok, event_detail="full"),
    "graph": RunKind("graph", _GRAPH, _graph_ok, event_detail="full"),
    "durable": RunKind("durable", _CONCAT, _concat_ok, persistence="job"),
    "cancelled": RunKind("cancelled", _SLEEP, _cancelled_ok, event_detail="full", cancel=True),
}
#: Runs of each kind in every ten (``durable``'s share goes to ``single`` without a store).
WEIGHTS = {"single": 3, "full": 1, "graph": 2, "durable": 2, "cancelled": 2}


def schedule(durable: bool, offset: int) -> Iterator[RunKind]:
    """The kinds in an endless, interleaved cycle, started ``offset`` runs in."""
    weights = dict(WEIGHTS)
    if not durable:
        weights["single"] += weights.pop("durable")
    slots: list[RunKind] = []
    remaining = dict(weights)
    while any(remaining.values()):
        for name in weights:
            if remaining[name]:
                slots.append(KINDS[name])
                remaining[name] -= 1
    cycle = itertools.cycle(slots)
    for _ in range(offset % len(slots)):
        next(cycle)
    return cycle


@dataclass
class Tally:
    """Counts over every driver, and the round trips (ms) of the current window."""

    sent: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    duplicates: int = 0
    strays: int = 0
    reconnects: int = 0
    #: Frames about no run (``job_id`` missing or nil), e.g. the server's ``ping``.
    other_frames: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    #: Round trips of non-cancelled runs since the last ``take_window``.
    window_ms: list[float] = field(default_factory=list)
    all_ms: dict[str, list[float]] = field(default_factory=dict)

    def take_window(self) -> list[float]:
        window, self.window_ms = self.window_ms, []
        return window

    def fail(self, kind: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < 10:
            self.failures.append(f"{kind}: {reason}"[:300])


class _RunLost(Exception):
    """No terminal within ``RUN_TIMEOUT_S``, or the connection dropped mid-run."""


class Driver:
    """One connection running the workload until ``stop`` is set."""

    def __init__(self, uri: str, index: int, durable: bool, period_s: float, tally: Tally) -> None:
        self._uri = uri
        self._kinds = schedule(durable, index)
        self._period_s = period_s
        self._tally = tally
        self._prefix = uuid.uuid4().hex[:16]
        self._runs = 0
        # Finished runs of this connection, to tell late frames from unknown ones.
        self._finished: set[str] = set()
        self._ws: ClientConnection | None = None

    async def _connect(self) -> ClientConnection:
        return await connect(
            self._uri, compression=None, max_size=2**24, open_timeout=RUN_TIMEOUT_S
        )

    async def drive(self, stop: asyncio.Event) -> None:
        """Run kinds back to back, paced; finish with one ``single`` run after ``stop``."""
        next_at = time.monotonic()
        try:
            while True:
                last = stop.is_set()
                kind = KINDS["single"] if last else next(self._kinds)
                await self.run(kind)
                if last:
                    return
                next_at = max(next_at + self._period_s, time.monotonic())
                # Pacing, not synchronisation: a stop is noticed one run later.
                await asyncio.sleep(next_at - time.monotonic())
        finally:
            if self._ws is not None:
                await self._ws.close()

    async def run(self, kind: RunKind) -> None:
        """Send one run of ``kind`` and account for its terminal in the tally."""
        tally = self._tally
        self._runs += 1
        job_id = f"{self._prefix}{self._runs:016x}"
        tally.sent += 1
        tally.by_kind[kind.name] += 1
        started = time.perf_counter()
        try:
            if self._ws is None:
                self._ws = await self._connect()
            terminal = await self._exchange(self._ws, kind, job_id)
        except (_RunLost, ConnectionClosed, OSError, InvalidHandshake, TimeoutError) as exc:
            tally.lost += 1
            if len(tally.failures) < 10:
                tally.failures.append(f"{kind.name} {job_id} lost: {type(exc).__name__} {exc}")
            if self._ws is not None:
                ws, self._ws = self._ws, None
                tally.reconnects += 1
                await ws.close()
            return
        finally:
            self._finished.add(job_id)
        elapsed_ms = (time.perf_counter() - started) * 1000
        failure = kind.check(terminal)
        if failure is not None:
            tally.fail(kind.name, failure)
            return
        tally.completed += 1
        tally.all_ms.setdefault(kind.name, []).append(elapsed_ms)
        if not kind.cancel:
            tally.window_ms.append(elapsed_ms)

    async def _exchange(self, ws: ClientConnection, kind: RunKind, job_id: str) -> Frame:
        await ws.send(kind.request(job_id))
        cancel_sent = False
        try:
            async with asyncio.timeout(RUN_TIMEOUT_S):
                while True:
                    frame = _decode(await ws.recv(decode=False))
                    if not isinstance(frame, dict):
                        raise _RunLost(f"frame is not a map: {frame!r}"[:200])
                    if frame.get("job_id") is None:
                        # Not about a run: the server's keepalive ``ping`` and the like.
                        self._tally.other_frames += 1
                        continue
                    if frame.get("job_id") != job_id:
                        self._late(frame)
                        continue
                    if frame.get("type") == "job_update" and frame.get("status") in _TERMINAL:
                        return frame
                    if frame.get("type") is None and "error" in frame:
                        return {"status": "refused", "error": frame["error"]}
                    if kind.cancel and not cancel_sent:
                        # The first frame of the run (its ack) says it has started.
                        cancel_sent = True
                        await ws.send(_cancel(job_id))
        except TimeoutError:
            raise _RunLost(f"no terminal within {RUN_TIMEOUT_S} s") from None

    def _late(self, frame: Frame) -> None:
        job_id = frame.get("job_id")
        if (
            job_id in self._finished
            and frame.get("type") == "job_update"
            and frame.get("status") in _TERMINAL
        ):
            self._tally.duplicates += 1
            return
        self._tally.strays += 1
        if len(self._tally.failures) < 10:
            self._tally.failures.append(f"stray frame: {frame!r}"[:300])


def _cancel(job_id: str) -> bytes:
    return _encode(
        {
            "command": "cancel_job",
            "type": "cancel_job",
            "request_id": None,
            "data": {"job_id": job_id},
        }
    )
