"""Helpers of the end-to-end tests: a real server in a thread, the golden-shape check of
its frames, and the test nodes it serves.

A client of a :class:`ServerHandle` (``tests.support.client.connect(server)``) checks every
frame it receives with :func:`conformance`: against NodeTool's golden SDK v1 server frames
(``shared/fixtures/nodetool-sdk-v1``) -- a frame whose ``type`` (and, for
``job_update``/``node_update``, ``status``) matches a golden frame must carry every key of
it with the same value type, nil allowed where PROTOCOL.md §3.1 marks the field optional --
and against the protocol's schema. So every test doubles as a conformance check. Clients of
``noderun serve`` processes get the same check through :data:`CONFORMANT`.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import uvicorn

from noderun.runtime.context import NodeContext
from noderun.runtime.node import node
from noderun.runtime.nodes import BUILTIN_NODES, DEBUG_NODES
from noderun.runtime.registry import Registry
from noderun.server.app import create_app
from noderun.server.settings import Settings
from noderun.server.uvicorn_config import uvicorn_config
from tests.support.client import ClientOptions
from tests.support.frames import Frame
from tests.support.golden import available_golden_frames
from tests.support.schema import check_server_frame
from tests.support.timing import TIMEOUT
from tests.support.waiting import eventually_blocking

__all__ = [
    "CONFORMANT",
    "GOLDEN_FRAMES",
    "ServerHandle",
    "check_golden_shape",
    "conformance",
    "registry_with_test_nodes",
    "running_server",
]


def _decoded_golden() -> list[tuple[str, str, Frame, bytes]]:
    """``(name, direction, frame decoded from its MessagePack, exact bytes)`` of every golden
    frame; none when ``../shared`` is not beside the repository (``test_golden`` then skips,
    or fails in CI)."""
    frames = []
    for golden in available_golden_frames():
        decoded = msgspec.msgpack.decode(golden.payload)
        assert isinstance(decoded, dict)
        frames.append((golden.name, golden.direction, decoded, golden.payload))
    return frames


GOLDEN_FRAMES = _decoded_golden()

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


def conformance(frame: Frame) -> None:
    """The check of every frame a test receives: its golden shape, and the protocol schema."""
    check_golden_shape(frame)
    check_server_frame(frame)


#: What a client checks of a server under test: every frame conforms.
CONFORMANT = ClientOptions(check=conformance)


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
    #: What its clients check (:func:`tests.support.client.connect`).
    client_options: ClientOptions = field(default=CONFORMANT)

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
    try:
        eventually_blocking(lambda: server.started or not thread.is_alive(), start_within)
        assert server.started, "the server thread ended"
    except AssertionError as failure:
        server.should_exit = True
        sock.close()
        if assets_dir is not None:
            thread.join(TIMEOUT)
            assets_dir.cleanup()
        raise RuntimeError(f"the test server did not start: {failure}") from None
    try:
        yield ServerHandle(port=port, settings=settings, app=app)
    finally:
        server.should_exit = True
        thread.join(TIMEOUT * 2)
        sock.close()
        if assets_dir is not None:
            assets_dir.cleanup()
        assert not thread.is_alive(), "the test server did not stop"
