"""Helpers of the end-to-end tests: a real server in a thread, a real WebSocket client.

Every frame :class:`Client` receives is checked against NodeTool's golden SDK v1
server frames (``shared/fixtures/nodetool-sdk-v1``): a frame whose ``type`` (and,
for ``job_update``/``node_update``, ``status``) matches a golden frame must carry
every key of it with the same value type, nil allowed where PROTOCOL.md §3.1
marks the field optional. So every test doubles as a conformance check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import uvicorn
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from noderun.runtime.context import NodeContext
from noderun.runtime.node import node
from noderun.runtime.nodes import BUILTIN_NODES, DEBUG_NODES
from noderun.runtime.registry import Registry
from noderun.server.app import create_app
from noderun.server.settings import Settings
from noderun.server.uvicorn_config import uvicorn_config
from tests.golden import FIXTURE
from tests.schema_check import check_server_frame
from tests.support.timing import TIMEOUT

__all__ = [
    "GOLDEN_FRAMES",
    "TERMINAL",
    "Client",
    "Frame",
    "ServerHandle",
    "check_golden_shape",
    "connect",
    "edge",
    "graph",
    "is_terminal",
    "nd",
    "new_job_id",
    "registry_with_test_nodes",
    "running_server",
]


TERMINAL = frozenset({"completed", "failed", "cancelled"})

Frame = dict[str, Any]


def _load_golden() -> list[tuple[str, str, Frame, bytes]]:
    """``(name, direction, decoded frame, exact bytes)`` of every golden frame; none when
    ``../shared`` is not beside the repository (``test_golden`` then skips, or fails in CI)."""
    if not FIXTURE.exists():
        return []
    fixture = json.loads(FIXTURE.read_text())
    frames = []
    for entry in fixture["frames"]:
        raw = bytes.fromhex(entry["messagepack_hex"])
        decoded = msgspec.msgpack.decode(raw)
        assert isinstance(decoded, dict)
        frames.append((entry["name"], entry["direction"], decoded, raw))
    return frames


GOLDEN_FRAMES = _load_golden()

#: PROTOCOL.md §3.1: fields marked ``?`` may be nil.
_OPTIONAL: dict[str, frozenset[str]] = {
    "job_update": frozenset({"message", "result", "error", "duration", "run_state"}),
    "node_update": frozenset({"result", "error", "properties"}),
    "output_update": frozenset({"disposition", "done"}),
}
#: Keys whose type is the node's data, not the protocol's.
_DATA_KEYS = frozenset({"value", "content"})


def _golden_key(frame: Mapping[str, object]) -> tuple[object, object]:
    kind = frame.get("type")
    return kind, frame.get("status") if kind in ("job_update", "node_update") else None


_GOLDEN_SERVER: dict[tuple[object, object], Frame] = {
    _golden_key(frame): frame
    for _name, direction, frame, _raw in GOLDEN_FRAMES
    if direction == "server" and "type" in frame
}
_GOLDEN_REJECTION: Frame = next(
    (
        frame
        for _name, direction, frame, _raw in GOLDEN_FRAMES
        if direction == "server" and frame.get("error") == "invalid_command"
    ),
    {},
)


def check_golden_shape(frame: Mapping[str, object]) -> None:
    """Assert ``frame`` carries every key of its golden counterpart, with the same types."""
    golden = _GOLDEN_SERVER.get(_golden_key(frame))
    is_rejection = frame.get("error") == "invalid_command" and "type" not in frame
    if golden is None and is_rejection and _GOLDEN_REJECTION:
        golden = {
            key: value
            for key, value in _GOLDEN_REJECTION.items()
            if key != "job_id" or "job_id" in frame  # job_id only when the frame named one
        }
    if golden is None:
        return
    optional = _OPTIONAL.get(str(frame.get("type")), frozenset())
    for key, expected in golden.items():
        assert key in frame, f"{key!r} missing from {frame} (golden: {golden})"
        value = frame[key]
        if key in _DATA_KEYS or (value is None and key in optional):
            continue
        assert type(value) is type(expected), (
            f"{key!r} of {frame} is {type(value).__name__}, golden has {type(expected).__name__}"
        )


# -- a node that reaches the message types no built-in emits ---------------------


@node("noderun.test.Chatter", title="Chatter")
async def chatter(ctx: NodeContext, text: str = "hi") -> str:
    """Logs a warning, streams two text chunks, outputs ``text + "!"``."""
    ctx.log(f"saying {text}", "warning")
    ctx.chunk(text)
    ctx.chunk("!", done=True)
    return text + "!"


@node("noderun.test.Amplify", title="Amplify", inline=True)
def amplify(text: str = "", gain: float = 1.0, enabled: bool = False) -> str:
    """``text`` marked with ``gain`` when enabled: the properties of the golden
    ``update_node_properties`` frame."""
    return f"{text}x{gain}" if enabled else text


def registry_with_test_nodes() -> Registry:
    """The built-in and debug nodes, ``noderun.test.Chatter`` and ``noderun.test.Amplify``."""
    return Registry([*BUILTIN_NODES, *DEBUG_NODES, chatter, amplify])


# -- the server --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerHandle:
    port: int
    settings: Settings
    #: The served application (its ``state`` is read across threads: only after the fact).
    app: Any = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def running_server(
    *, registry: Registry | None = None, start_within: float = TIMEOUT, **overrides: Any
) -> Iterator[ServerHandle]:
    """A real uvicorn serving ``create_app`` on a free port, in a thread with its own loop.

    Defaults: no run store, no server pings (they would interleave with the
    frames a test expects), :func:`registry_with_test_nodes`, assets in a temporary
    directory; ``overrides`` are :class:`Settings` fields.
    """
    values: dict[str, Any] = {
        "store": "none",
        "ping_interval": 0.0,
        "runners": 4,
        "debug_nodes": True,
    }
    values.update(overrides)
    assets_dir = None
    if "assets_dir" not in values:
        assets_dir = tempfile.TemporaryDirectory(prefix="noderun-assets-")
        values["assets_dir"] = assets_dir.name
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = Settings(host="127.0.0.1", port=port, **values)
    app = create_app(settings, registry or registry_with_test_nodes())
    config = uvicorn_config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        max_frame_bytes=settings.max_frame_bytes,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + start_within
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            if assets_dir is not None:
                thread.join(TIMEOUT)
                assets_dir.cleanup()
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield ServerHandle(port=port, settings=settings, app=app)
    finally:
        server.should_exit = True
        thread.join(TIMEOUT * 2)
        sock.close()
        if assets_dir is not None:
            assets_dir.cleanup()
        assert not thread.is_alive(), "the test server did not stop"


# -- the client --------------------------------------------------------------------


class Client:
    """A WebSocket client speaking the protocol; checks every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        #: Whether the last frame received was a text (JSON) frame.
        self.last_text: bool | None = None

    async def send(self, frame: Mapping[str, object], *, text: bool = False) -> None:
        if text:
            await self.ws.send(msgspec.json.encode(frame).decode())
        else:
            await self.ws.send(msgspec.msgpack.encode(frame))

    async def command(
        self,
        command: str,
        data: Mapping[str, object] | None = None,
        *,
        request_id: str | None = None,
        text: bool = False,
    ) -> None:
        """Send a command the way the SDK does (``type`` and ``request_id`` too)."""
        frame: Frame = {
            "command": command,
            "type": command,
            "request_id": request_id,
            "data": dict(data or {}),
        }
        await self.send(frame, text=text)

    async def run_job(
        self,
        nodes: Mapping[str, object] | None,
        *,
        job_id: str | None = None,
        workflow_id: str = "wf",
        params: Mapping[str, object] | None = None,
        event_detail: str = "full",
        explicit_types: bool = False,
        require_terminal_result: bool = True,
        text: bool = False,
    ) -> str:
        """Send ``run_job`` for ``nodes`` (a graph); returns the job id (no wait)."""
        job_id = job_id or new_job_id()
        await self.command(
            "run_job",
            {
                "type": "run_job_request",
                "job_id": job_id,
                "workflow_id": workflow_id,
                "graph": nodes,
                "params": dict(params) if params is not None else None,
                "explicit_types": explicit_types,
                "require_terminal_result": require_terminal_result,
                "execution_options": {"persistence": "session", "event_detail": event_detail},
            },
            text=text,
        )
        return job_id

    async def recv(self, within: float = TIMEOUT) -> Frame:
        """The next frame, decoded and checked against the golden frames."""
        raw = await asyncio.wait_for(self.ws.recv(), within)
        if isinstance(raw, bytes):
            frame = msgspec.msgpack.decode(raw)
            self.last_text = False
        else:
            frame = msgspec.json.decode(raw)
            self.last_text = True
        assert isinstance(frame, dict), f"server sent a non-map frame: {frame!r}"
        check_golden_shape(frame)
        check_server_frame(frame)
        return frame

    async def recv_until(
        self, predicate: Callable[[Frame], bool], within: float = TIMEOUT
    ) -> list[Frame]:
        """Every frame up to and including the first that matches ``predicate``."""
        frames: list[Frame] = []
        deadline = asyncio.get_running_loop().time() + within
        while True:
            left = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(max(left, 0.001))
            frames.append(frame)
            if predicate(frame):
                return frames

    async def until_terminal(self, job_id: str, within: float = TIMEOUT) -> list[Frame]:
        """Frames up to and including the terminal ``job_update`` of ``job_id``."""
        return await self.recv_until(lambda frame: is_terminal(frame, job_id), within)

    async def ping_barrier(self) -> list[Frame]:
        """Send a ping; return every frame that arrived before its pong."""
        await self.send({"type": "ping"})
        frames = await self.recv_until(lambda frame: frame.get("type") == "pong")
        return frames[:-1]

    async def status(self, job_id: str | None = None) -> Frame:
        """``get_status``; skips run messages that arrive meanwhile."""
        await self.command("get_status", {"job_id": job_id} if job_id else {})
        frames = await self.recv_until(
            lambda frame: "job_seq" not in frame and ("status" in frame or "active_jobs" in frame)
        )
        return frames[-1]


def is_terminal(frame: Mapping[str, object], job_id: str) -> bool:
    return (
        frame.get("type") == "job_update"
        and frame.get("job_id") == job_id
        and frame.get("status") in TERMINAL
    )


@contextlib.asynccontextmanager
async def connect(
    server: ServerHandle,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    compression: str | None = None,
) -> AsyncIterator[Client]:
    async with ws_connect(
        server.ws_url + query,
        compression=compression,
        additional_headers=headers,
        proxy=None,
        ping_interval=None,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
    ) as ws:
        yield Client(ws)


# -- graphs ------------------------------------------------------------------------


def nd(node_id: str, node_type: str, **data: object) -> Frame:
    """A graph node as the SDK sends it (with the UI keys the server must ignore)."""
    return {
        "id": node_id,
        "parent_id": None,
        "type": node_type,
        "data": data,
        "ui_properties": {},
        "dynamic_properties": {},
        "dynamic_outputs": {},
        "sync_mode": "on_any",
    }


def edge(source: str, target: str, target_handle: str, source_handle: str = "output") -> Frame:
    return {
        "id": f"{source}-{target}-{target_handle}",
        "source": source,
        "sourceHandle": source_handle,
        "target": target,
        "targetHandle": target_handle,
        "ui_properties": None,
        "edge_type": "data",
    }


def graph(*nodes: Frame, edges: list[Frame] | None = None) -> Frame:
    return {"nodes": list(nodes), "edges": edges or []}


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"
