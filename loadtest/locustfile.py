"""Locust load tests of noderun's ``/ws``: one request event per run, its real round trip.

Run headless against any server (``--host`` is its WebSocket base URL)::

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 60s \\
        --host ws://127.0.0.1:7777 SingleNodeUser

User classes (name one or more after the options; with none, locust runs them all):

``SingleNodeUser``  one ``nodetool.text.Concat`` node, ``event_detail=terminal`` (the SDK's call)
``GraphUser``       a three-node graph (two ``lib.math.Add`` into ``nodetool.output.Output``)
``FullUser``        the single node at ``event_detail=full`` (every progress frame)
``DurableUser``     the single node with ``persistence=job`` (committed before the terminal)
``MixedUser``       all of the above plus runs cancelled mid-flight; needs a server started
                    with ``--debug-nodes`` (it cancels ``noderun.debug.Sleep`` runs)

Each run is one binary MessagePack ``run_job`` frame; the user reads frames until that run's
terminal ``job_update`` and fires one locust request event (``request_type`` ``WS``, ``name``
the scenario) with the send-to-terminal time. The terminal is verified (status and output
value): a server that answers wrongly shows up as failures, not as speed. ``NODERUN_TOKEN``
(environment) is sent as ``Authorization: Bearer`` when set.

Locust records times in milliseconds; for the microsecond-level ratios to a bare echo floor
use ``python -m loadtest.bench``.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, cast

import msgspec
from locust import User, between, events, task
from locust.exception import StopUser
from websocket import WebSocket, WebSocketException, create_connection

__all__ = ["DurableUser", "FullUser", "GraphUser", "MixedUser", "SingleNodeUser"]

RUN_TIMEOUT_S = 30.0
_TERMINAL = frozenset({"completed", "failed", "cancelled"})
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


class RunFailed(Exception):
    """A run's terminal frame was not what the scenario expects."""


def _run_job(
    job_id: str,
    graph: dict[str, Any],
    *,
    event_detail: str = "terminal",
    persistence: str = "session",
) -> bytes:
    return _encode(
        {
            "command": "run_job",
            "type": "run_job",
            "request_id": None,
            "data": {
                "type": "run_job_request",
                "job_id": job_id,
                "workflow_id": "locust",
                "graph": graph,
                "params": {},
                "explicit_types": False,
                "require_terminal_result": True,
                "execution_options": {"event_detail": event_detail, "persistence": persistence},
            },
        }
    )


def _node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "data": data}


CONCAT = {"nodes": [_node("n1", "nodetool.text.Concat", a="hello ", b="world")], "edges": []}
GRAPH = {
    "nodes": [
        _node("a", "lib.math.Add", a=1, b=2),
        _node("b", "lib.math.Add", b=4),
        _node("out", "nodetool.output.Output", name="sum"),
    ],
    "edges": [
        {"source": "a", "sourceHandle": "output", "target": "b", "targetHandle": "a"},
        {"source": "b", "sourceHandle": "output", "target": "out", "targetHandle": "value"},
    ],
}
SLEEP = {"nodes": [_node("s", "noderun.debug.Sleep", seconds=30.0)], "edges": []}


def _outputs(terminal: dict[str, Any]) -> dict[str, Any]:
    result = terminal.get("result") or {}
    outputs = result.get("outputs") if isinstance(result, dict) else None
    return outputs if isinstance(outputs, dict) else {}


def _concat_ok(terminal: dict[str, Any]) -> bool:
    return bool(_outputs(terminal).get("n1", {}).get("output") == "hello world")


def _graph_ok(terminal: dict[str, Any]) -> bool:
    return _outputs(terminal).get("sum") in (7, 7.0, [7], [7.0])


class NoderunUser(User):
    """A WebSocket connection per simulated user, reused for all of its runs."""

    abstract = True
    wait_time = between(0.0, 0.01)
    ws: WebSocket

    def on_start(self) -> None:
        url = (self.host or "ws://127.0.0.1:7777").rstrip("/")
        if not url.endswith("/ws"):
            url += "/ws"
        token = os.environ.get("NODERUN_TOKEN")
        header = [f"Authorization: Bearer {token}"] if token else []
        started = time.perf_counter()
        try:
            self.ws = create_connection(url, header=header, timeout=RUN_TIMEOUT_S)
            # The server accepts the handshake and then closes a refused token with 1008:
            # a ping round trip tells a usable connection from a refused one.
            self.ws.send_binary(_encode({"type": "ping"}))
            while True:
                data = self.ws.recv()
                frame = _decode(data) if isinstance(data, bytes) else msgspec.json.decode(data)
                if isinstance(frame, dict) and frame.get("type") == "pong":
                    break
        except (OSError, WebSocketException, msgspec.DecodeError) as exc:
            self._fire("connect", (time.perf_counter() - started) * 1000.0, 0, exc)
            raise StopUser() from exc

    def on_stop(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()

    def _fire(self, name: str, elapsed_ms: float, length: int, error: Exception | None) -> None:
        cast(Any, events.request).fire(
            request_type="WS",
            name=name,
            response_time=elapsed_ms,
            response_length=length,
            exception=error,
            context={},
        )

    def run_job(
        self,
        name: str,
        graph: dict[str, Any],
        check: Any,
        *,
        event_detail: str = "terminal",
        persistence: str = "session",
        cancel_after: float | None = None,
    ) -> None:
        """One run, start to verified terminal, reported as one request event."""
        job_id = uuid.uuid4().hex
        frame = _run_job(job_id, graph, event_detail=event_detail, persistence=persistence)
        started = time.perf_counter()
        received = 0
        error: Exception | None = None
        try:
            self.ws.send_binary(frame)
            if cancel_after is not None:
                self._cancel_later(job_id, cancel_after)
            terminal, received = self._read_terminal(job_id, started)
            if not check(terminal):
                error = RunFailed(
                    f"{terminal.get('status')}: {terminal.get('error') or terminal.get('result')}"
                )
        except (OSError, WebSocketException, RunFailed, msgspec.DecodeError) as exc:
            error = exc
        elapsed = (time.perf_counter() - started) * 1000.0
        self._fire(name, elapsed, received, error)
        if isinstance(error, (OSError, WebSocketException)):
            raise StopUser()  # the connection's state is unknown

    def _cancel_later(self, job_id: str, delay: float) -> None:
        import gevent

        def cancel() -> None:
            self.ws.send_binary(
                _encode(
                    {
                        "command": "cancel_job",
                        "type": "cancel_job",
                        "request_id": None,
                        "data": {"job_id": job_id},
                    }
                )
            )

        gevent.spawn_later(delay, cancel)

    def _read_terminal(self, job_id: str, started: float) -> tuple[dict[str, Any], int]:
        received = 0
        while True:
            if time.perf_counter() - started > RUN_TIMEOUT_S:
                raise RunFailed(f"no terminal job_update within {RUN_TIMEOUT_S} s")
            data = self.ws.recv()
            received += len(data)
            frame = _decode(data) if isinstance(data, bytes) else msgspec.json.decode(data)
            if not isinstance(frame, dict):
                continue
            if frame.get("job_id") != job_id:
                continue
            if frame.get("type") == "job_update" and frame.get("status") in _TERMINAL:
                return frame, received
            if frame.get("type") is None and "error" in frame:
                raise RunFailed(f"refused: {frame['error']}")


class SingleNodeUser(NoderunUser):
    @task
    def single_node(self) -> None:
        self.run_job("single node", CONCAT, _concat_ok)


class GraphUser(NoderunUser):
    @task
    def graph(self) -> None:
        self.run_job("graph", GRAPH, _graph_ok)


class FullUser(NoderunUser):
    @task
    def full(self) -> None:
        self.run_job("single node, full", CONCAT, _concat_ok, event_detail="full")


class DurableUser(NoderunUser):
    @task
    def durable(self) -> None:
        self.run_job("durable", CONCAT, _concat_ok, persistence="job")


class MixedUser(NoderunUser):
    """Every scenario, and one run in ten cancelled while it runs."""

    @task(4)
    def single_node(self) -> None:
        self.run_job("single node", CONCAT, _concat_ok)

    @task(2)
    def graph(self) -> None:
        self.run_job("graph", GRAPH, _graph_ok)

    @task(1)
    def full(self) -> None:
        self.run_job("single node, full", CONCAT, _concat_ok, event_detail="full")

    @task(2)
    def durable(self) -> None:
        self.run_job("durable", CONCAT, _concat_ok, persistence="job")

    @task(1)
    def cancelled(self) -> None:
        self.run_job(
            "cancelled",
            SLEEP,
            lambda terminal: terminal.get("status") == "cancelled",
            cancel_after=0.05,
        )
