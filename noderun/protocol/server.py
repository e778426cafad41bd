"""Server → client messages (PROTOCOL.md §3), as msgspec types.

Messages of a run are tagged structs (tag field ``type``) with a ``job_seq``
that the run assigns when it emits them. Every declared key is always sent,
``None`` where the field is optional: NodeTool's SDK decodes into typed classes
and the golden frames of ``shared/fixtures`` carry these keys.

Acks, command errors and RPC answers are not messages of a run: they are plain
maps built by the helpers at the bottom, with no ``job_seq``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "Chunk",
    "ErrorMessage",
    "GenerationStopped",
    "JobNotice",
    "JobResumed",
    "JobStarted",
    "JobUpdate",
    "LogUpdate",
    "NodeProgress",
    "NodeUpdate",
    "OutputUpdate",
    "RunMessage",
    "ServerPing",
    "ServerPong",
    "error_frame",
]

Value = object
Map = dict[str, Value]

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
NodeStatus = Literal["running", "completed", "error"]


class _RunMessage(msgspec.Struct, kw_only=True, tag_field="type"):
    job_id: str
    workflow_id: str
    job_seq: int = 0


class JobUpdate(_RunMessage, kw_only=True, tag="job_update"):
    status: JobStatus
    message: str | None = None
    result: Map | None = None
    error: str | None = None
    duration: float | None = None
    run_state: Map | None = None


class JobNotice(msgspec.Struct, kw_only=True, tag_field="type", tag="job_update"):
    """A ``job_update`` about a run this server is not running, so no ``job_seq``:
    a ``run_job`` refused before it started, or ``reconnect_job`` to an unknown run."""

    job_id: str
    workflow_id: str
    status: JobStatus
    message: str | None = None
    result: Map | None = None
    error: str | None = None
    duration: float | None = None
    run_state: Map | None = None


class NodeUpdate(_RunMessage, kw_only=True, tag="node_update"):
    node_id: str
    node_name: str
    node_type: str
    status: NodeStatus
    result: Map | None = None
    error: str | None = None
    properties: Map | None = None


class NodeProgress(_RunMessage, kw_only=True, tag="node_progress"):
    node_id: str
    progress: int
    total: int
    chunk: str = ""


class OutputUpdate(_RunMessage, kw_only=True, tag="output_update"):
    node_id: str
    node_name: str
    output_name: str
    value: Value
    output_type: str
    metadata: Map = {}
    disposition: Literal["append", "replace"] | None = None
    done: bool | None = None


class Chunk(_RunMessage, kw_only=True, tag="chunk"):
    node_id: str
    content_type: Literal["text", "audio", "image", "video", "document"] = "text"
    content: Value = ""
    done: bool = False


class LogUpdate(_RunMessage, kw_only=True, tag="log_update"):
    node_id: str
    node_name: str
    content: str
    severity: Literal["info", "warning", "error"] = "info"


class ErrorMessage(_RunMessage, kw_only=True, tag="error"):
    message: str


RunMessage = JobUpdate | NodeUpdate | NodeProgress | OutputUpdate | Chunk | LogUpdate | ErrorMessage


class JobResumed(msgspec.Struct, kw_only=True, tag_field="type", tag="job_resumed"):
    job_id: str
    workflow_id: str
    status: str
    last_seq: int
    replay_count: int
    replay_incomplete: bool


class GenerationStopped(msgspec.Struct, kw_only=True, tag_field="type", tag="generation_stopped"):
    message: str
    job_id: str


class ServerPing(msgspec.Struct, kw_only=True, tag_field="type", tag="ping"):
    ts: float


class ServerPong(msgspec.Struct, kw_only=True, tag_field="type", tag="pong"):
    ts: float


class JobStarted(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The untyped ``run_job`` ack (no ``type``); ``request_id`` only when the frame had one."""

    message: str
    job_id: str
    workflow_id: str
    request_id: str | None = None


def error_frame(
    error: str,
    *,
    details: str | None = None,
    message: str | None = None,
    typed: bool = False,
    request_id: str | None = None,
    job_id: str | None = None,
) -> Map:
    """An error answer: ``{"error": …}`` plus only the keys that apply.

    ``typed`` adds ``"type": "error"`` (the ``invalid_frame`` shape).
    """
    frame: Map = {"type": "error", "error": error} if typed else {"error": error}
    if details is not None:
        frame["details"] = details
    if message is not None:
        frame["message"] = message
    if job_id is not None:
        frame["job_id"] = job_id
    if request_id is not None:
        frame["request_id"] = request_id
    return frame
