"""The benchmark's floor: a bare ASGI echo that answers a single-node run like noderun does.

It does the least work a server speaking PROTOCOL.md can do for a single-node
``nodetool.text.Concat`` run with ``event_detail="terminal"``: decode the msgpack
request, send the untyped ack, then one terminal ``job_update`` carrying the
concatenation. No Starlette, no runtime, no validation beyond msgspec's typed
decode. noderun/floor ratios therefore measure what noderun adds on top of
uvicorn + msgspec, because the floor runs under the very same uvicorn settings
(``noderun.server.uvicorn_config``).

Routes: ``GET /health`` → 200; WebSocket ``/ws`` → binary frames only (a text
frame closes the socket with 1003); anything else → 404.

Run: ``python -m loadtest.echo --host 127.0.0.1 --port P``.
"""

from __future__ import annotations

import argparse
import time

import msgspec
import uvicorn
from uvicorn._types import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPScope,
    Scope,
    WebSocketScope,
)

from noderun.server.uvicorn_config import uvicorn_config

__all__ = ["app", "main"]


class _Node(msgspec.Struct):
    id: str
    data: dict[str, str]


class _Graph(msgspec.Struct):
    nodes: list[_Node]


class _RunJobData(msgspec.Struct):
    job_id: str
    workflow_id: str
    graph: _Graph


class _RunJob(msgspec.Struct):
    data: _RunJobData


class _Ack(msgspec.Struct):
    message: str
    job_id: str
    workflow_id: str


class _Terminal(msgspec.Struct):
    # Field order and names mirror noderun's terminal job_update, so the floor
    # encodes the same number of bytes the server has to.
    type: str
    status: str
    job_id: str
    workflow_id: str
    message: None
    result: dict[str, dict[str, dict[str, dict[str, str]]]]
    error: None
    duration: float
    run_state: None
    job_seq: int


# Built once: constructing msgspec codecs per message would be measured as floor cost.
_decoder = msgspec.msgpack.Decoder(_RunJob)
_encoder = msgspec.msgpack.Encoder()


def answer(frame: bytes) -> tuple[bytes, bytes]:
    """The ack and terminal frames for one binary ``run_job`` frame.

    The terminal's output is ``a + b`` of the graph's first node. Raises
    ``msgspec.ValidationError``/``DecodeError`` when the frame is not such a request.
    """
    started = time.perf_counter()
    request = _decoder.decode(frame).data
    node = request.graph.nodes[0]
    text = node.data.get("a", "") + node.data.get("b", "")
    ack = _encoder.encode(_Ack("Job started", request.job_id, request.workflow_id))
    terminal = _encoder.encode(
        _Terminal(
            type="job_update",
            status="completed",
            job_id=request.job_id,
            workflow_id=request.workflow_id,
            message=None,
            result={"outputs": {node.id: {"output": {"type": "string", "value": text}}}},
            error=None,
            duration=time.perf_counter() - started,
            run_state=None,
            job_seq=1,
        )
    )
    return ack, terminal


async def _websocket(
    scope: WebSocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})
        return
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        if event["type"] != "websocket.receive":
            continue
        data = event.get("bytes")
        if data is None:
            await send({"type": "websocket.close", "code": 1003, "reason": "binary only"})
            return
        ack, terminal = answer(data)
        await send({"type": "websocket.send", "bytes": ack})
        await send({"type": "websocket.send", "bytes": terminal})


async def _http(scope: HTTPScope, send: ASGISendCallable) -> None:
    found = scope["method"] == "GET" and scope["path"] == "/health"
    body = b"ok" if found else b"not found"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if found else 404,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """ASGI 3 entry point (see the module docstring for the routes)."""
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "http":
        await _http(scope, send)
    else:
        # Lifespan is answered rather than switched off so that the floor can use
        # uvicorn_config's defaults unchanged.
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def main(argv: list[str] | None = None) -> None:
    """Serve the floor until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.echo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    config = uvicorn_config(app, host=args.host, port=args.port, log_level=args.log_level)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
