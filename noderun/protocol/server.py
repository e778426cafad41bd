"""Server → client messages (PROTOCOL.md §3), as msgspec types.

Messages of a run are tagged structs (tag field ``type``) with a ``job_seq``
that the run assigns when it emits them. Every declared key is always sent,
``None`` where the field is optional: NodeTool's SDK decodes into typed classes
and the golden frames of ``shared/fixtures`` carry these keys.

Acks, command errors and RPC answers are not messages of a run: they carry no
``job_seq``. They are structs too, untagged where the wire has no ``type`` key,
with ``omit_defaults`` so a key absent on the wire stays absent (NodeTool's
shapes: an ack names ``job_id``/``workflow_id``/``node_id`` only where the
command has them). Field order is the wire's key order. The untyped ones forbid
unknown fields: the server never decodes them, but their published schema then
says "exactly these keys", so a typed frame is never mistaken for one.

Every error a client can be told about maps to its frame in one place,
:func:`rejection` (PROTOCOL.md §2): a frame that does not decode →
``invalid_frame`` (typed), no command and no known type → ``invalid_message``,
an unknown command or malformed ``data`` → ``invalid_command``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from noderun.protocol.errors import CommandError, FrameError, MessageError, ProtocolError

__all__ = [
    "Ack",
    "ActiveJobs",
    "Chunk",
    "ErrorAnswer",
    "ErrorMessage",
    "FrameRejected",
    "GenerationStopped",
    "JobNotice",
    "JobQueued",
    "JobResumed",
    "JobStarted",
    "JobUpdate",
    "LogUpdate",
    "NodeProgress",
    "NodeUpdate",
    "OutputUpdate",
    "RpcResponse",
    "RunMessage",
    "ServerPing",
    "ServerPong",
    "StatusAnswer",
    "job_not_found",
    "rejection",
]

Value = object
Map = dict[str, Value]

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
NodeStatus = Literal["running", "completed", "error"]


# gc=False: the messages of finished runs are kept for replay, and an untracked struct
# costs the cyclic collector no walk. A message holds data only (ids, a node's
# outputs), nothing that could refer back to it: it can be part of no cycle.
class _RunMessage(msgspec.Struct, kw_only=True, tag_field="type", gc=False):
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


class JobQueued(_RunMessage, kw_only=True, tag="job_update"):
    """``job_update queued``: the run waits for a slot (PROTOCOL.md §7); sent when it is
    queued and again each time it moves up. Its own struct so that no other
    ``job_update`` carries ``queue_position``."""

    status: Literal["queued"] = "queued"
    message: str | None = None
    queue_position: int


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


class JobStarted(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """The untyped ``run_job`` ack (no ``type``); ``request_id`` only when the frame had one."""

    message: str
    job_id: str
    workflow_id: str
    request_id: str | None = None


class Ack(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """An untyped command ack: ``{"message", …}`` with only the ids that command names."""

    message: str
    job_id: str | None = None
    workflow_id: str | None = None
    node_id: str | None = None


class JobState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    job_id: str
    workflow_id: str
    status: str


class ActiveJobs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``get_status`` without a ``job_id``: this connection's unfinished runs."""

    active_jobs: list[JobState]


class StatusAnswer(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """``get_status {job_id}``; an unknown run has status ``not_found`` and no ``workflow_id``."""

    status: str
    job_id: str
    workflow_id: str | None = None


class ErrorAnswer(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """An untyped error answer ``{"error": <code>, …}`` with only the keys that apply.

    ``input``/``node_id`` name what a rejected ``stream_input``/``update_node_properties``
    was about (after ``request_id``, as NodeTool orders them).
    """

    error: str
    details: str | None = None
    message: str | None = None
    job_id: str | None = None
    request_id: str | None = None
    input: str | None = None
    node_id: str | None = None


class FrameRejected(
    msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="error"
):
    """``{"type": "error", "error": "invalid_frame", "message", "request_id"?}``."""

    error: str
    message: str
    request_id: str | None = None


class RpcError(msgspec.Struct, kw_only=True):
    code: str
    message: str
    retryable: bool = False
    #: NodeTool's error code of the same refusal over HTTP (``WORKFLOW_NOT_FOUND``, …).
    api_code: str | msgspec.UnsetType = msgspec.field(default=msgspec.UNSET, name="apiCode")


class RpcResponse(msgspec.Struct, kw_only=True, tag_field="type", tag="rpc_response"):
    """An RPC answer (§2.2): ``request_id`` always present (nil allowed), then exactly one
    of ``result`` and ``error``."""

    request_id: str | None
    command: str
    result: object | msgspec.UnsetType = msgspec.UNSET
    error: RpcError | msgspec.UnsetType = msgspec.UNSET


#: ``error`` of a command naming a run this connection cannot act on.
NOT_FOUND = "Job not found or already completed"


def job_not_found(job_id: str, request_id: str | None) -> ErrorAnswer:
    return ErrorAnswer(error=NOT_FOUND, job_id=job_id, request_id=request_id)


def rejection(exc: ProtocolError) -> FrameRejected | ErrorAnswer:
    """The frame PROTOCOL.md §2 names for a client frame the server cannot accept."""
    match exc:
        case FrameError():
            return FrameRejected(
                error="invalid_frame", message=exc.detail, request_id=exc.request_id
            )
        case MessageError():
            return ErrorAnswer(
                error="invalid_message", message=exc.detail, request_id=exc.request_id
            )
        case CommandError():
            return ErrorAnswer(
                error="invalid_command",
                details=exc.detail,
                job_id=exc.job_id,
                request_id=exc.request_id,
            )
        case _:
            raise TypeError(f"no frame for {type(exc).__name__}")
