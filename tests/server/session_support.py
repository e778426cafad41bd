"""A protocol session driven without a socket: the wire it writes to, and its peer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import msgspec

from noderun.protocol.codec import Outbound
from noderun.runtime.hub import Hub
from noderun.runtime.registry import default_registry
from noderun.runtime.workflows import WorkflowCatalog
from noderun.server.sdk import SdkService
from noderun.server.session import Action, Session
from noderun.server.settings import Settings
from tests.support.frames import Frame

__all__ = ["CLOCK", "Peer", "Wire"]

CLOCK = 1234.5
_REGISTRY = default_registry(debug_nodes=True)
_SDK = SdkService(Settings(), _REGISTRY, WorkflowCatalog())


class Wire:
    """An outlet that keeps what it is given, with the outbox's limit rule."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.queued: list[tuple[Outbound, bool, bool]] = []
        self.writable_callback: Callable[[], None] | None = None

    def put(self, item: Outbound, text: bool, *, replay: bool = False) -> bool:
        if len(self.queued) >= self.limit and not replay:
            return False
        self.queued.append((item, text, replay))
        return True

    def clear(self) -> None:
        self.queued.clear()
        self.on_writable(None)

    def congestion(self) -> asyncio.Future[None] | None:
        return None

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Kept for the test to call: the client read its queue down."""
        self.writable_callback = callback

    def raw(self) -> list[tuple[bytes, bool]]:
        """The bytes queued so far (and whether each is JSON), then forget them."""
        out = [(item.json() if text else item.msgpack(), text) for item, text, _ in self.queued]
        self.queued.clear()
        return out

    def frames(self) -> list[Frame]:
        decoded = []
        for data, text in self.raw():
            frame = msgspec.json.decode(data) if text else msgspec.msgpack.decode(data)
            assert isinstance(frame, dict)
            decoded.append(frame)
        return decoded


class Peer:
    """A session with its wire and the actions it asked for."""

    def __init__(self, hub: Hub | None = None, *, limit: int = 1000, user_id: str = "1") -> None:
        self.hub = hub or Hub(_REGISTRY, None)
        self.wire = Wire(limit)
        self.actions: list[Action] = []
        self.session = Session(
            self.hub,
            self.wire,
            self.actions.append,
            user_id=user_id,
            sdk=_SDK,
            clock=lambda: CLOCK,
        )

    def send(self, frame: Mapping[str, object], *, text: bool = False) -> list[Frame]:
        payload = msgspec.json.encode(frame) if text else msgspec.msgpack.encode(frame)
        self.session.receive(payload, text)
        return self.wire.frames()

    def command(
        self,
        command: str,
        data: Mapping[str, object] | None = None,
        *,
        request_id: str | None = None,
        text: bool = False,
    ) -> list[Frame]:
        frame = {"command": command, "type": command, "request_id": request_id, "data": data}
        return self.send(frame, text=text)

    def run_job(
        self, nodes: list[Frame], job_id: str, *, request_id: str | None = None, **options: object
    ) -> list[Frame]:
        data: Frame = {
            "job_id": job_id,
            "workflow_id": "wf",
            "graph": {"nodes": nodes, "edges": []},
            "require_terminal_result": True,
            "execution_options": {"persistence": "session", "event_detail": "full", **options},
        }
        return self.command("run_job", data, request_id=request_id)
