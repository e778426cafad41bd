"""Client → server frames (PROTOCOL.md §2), as msgspec types.

The wire envelope is ``{"command", "type", "request_id", "data"}``; each command's
``data`` decodes into one of the structs below, and the decoder copies the
envelope's ``request_id`` onto it. Unknown keys are ignored everywhere, as the
protocol requires; only the fields the server uses are declared.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

import msgspec

__all__ = [
    "CancelJob",
    "ClearModels",
    "ClientFrame",
    "Edge",
    "EndInputStream",
    "Envelope",
    "ExecutionOptions",
    "GetCapabilities",
    "GetNode",
    "GetNodeTypeInventory",
    "GetStatus",
    "GetWorkflow",
    "GetWorkflowInterface",
    "GetWorkflowInterfaces",
    "Graph",
    "ListNodes",
    "ListWorkflowSummaries",
    "ListWorkflows",
    "Node",
    "Ping",
    "Pong",
    "PreflightWorkflow",
    "ReconnectJob",
    "RunJob",
    "SdkFrame",
    "SdkRequest",
    "SetMode",
    "Stop",
    "StreamInput",
    "UpdateNodeProperties",
]

#: A JSON/MessagePack value: the protocol layer forwards these untouched.
Value = object


class Envelope(msgspec.Struct):
    """The outer map of every client frame; ``data`` stays undecoded until dispatch."""

    command: str | None = None
    type: str | None = None
    request_id: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")


class _Frame(msgspec.Struct, kw_only=True):
    #: Copied from the envelope after decoding, never read from ``data``.
    request_id: str | None = None


class Node(msgspec.Struct, kw_only=True):
    id: str
    type: str
    data: dict[str, Value] = {}


class Edge(msgspec.Struct, kw_only=True):
    source: str
    target: str
    source_handle: str = msgspec.field(name="sourceHandle")
    target_handle: str = msgspec.field(name="targetHandle")
    id: str | None = None
    edge_type: str | None = None


class Graph(msgspec.Struct, kw_only=True):
    nodes: list[Node] = []
    edges: list[Edge] = []


class ExecutionOptions(msgspec.Struct, kw_only=True):
    persistence: Literal["session", "job"] = "session"
    event_detail: Literal["full", "outputs", "terminal"] = "full"


class RunJob(_Frame, kw_only=True):
    """``run_job``: the RunJobRequest of PROTOCOL.md §2.1."""

    job_id: str | None = None
    workflow_id: str = ""
    graph: Graph | None = None
    params: dict[str, Value] | None = None
    explicit_types: bool = False
    require_terminal_result: bool = False
    execution_options: ExecutionOptions | None = None


class CancelJob(_Frame, kw_only=True):
    """``cancel_job``: names one run."""

    job_id: str
    workflow_id: str | None = None


class ReconnectJob(_Frame, kw_only=True):
    """``reconnect_job`` and ``resume_job``.

    ``after_seq`` is a noderun extension: the last ``job_seq`` the client holds,
    so replay starts after it (0 replays the whole buffer).
    """

    job_id: str
    workflow_id: str | None = None
    after_seq: int = 0


class GetStatus(_Frame, kw_only=True):
    job_id: str | None = None


class SetMode(_Frame, kw_only=True):
    mode: Literal["binary", "text"]


class StreamInput(_Frame, kw_only=True):
    job_id: str
    input: str
    value: Value = None
    handle: str | None = None
    workflow_id: str | None = None


class EndInputStream(_Frame, kw_only=True):
    job_id: str
    input: str
    handle: str | None = None
    workflow_id: str | None = None


class UpdateNodeProperties(_Frame, kw_only=True):
    job_id: str
    node_id: str
    properties: dict[str, Value]
    workflow_id: str | None = None


class ClearModels(_Frame, kw_only=True):
    pass


class Stop(_Frame, kw_only=True):
    job_id: str


class SdkRequest(_Frame, kw_only=True):
    """A read-only RPC answered by one ``rpc_response`` with the same ``request_id``
    (PROTOCOL.md §2.2, §8); ``command`` is its name on the wire."""

    command: ClassVar[str]


class ListNodes(SdkRequest, kw_only=True):
    command: ClassVar[str] = "list_nodes"
    namespace: str | None = None


class GetNode(SdkRequest, kw_only=True):
    command: ClassVar[str] = "get_node"
    node_type: str


class GetNodeTypeInventory(SdkRequest, kw_only=True):
    command: ClassVar[str] = "get_node_type_inventory"
    cursor: int = 0
    limit: int = 100


class GetCapabilities(SdkRequest, kw_only=True):
    command: ClassVar[str] = "get_capabilities"


class ListWorkflows(SdkRequest, kw_only=True):
    command: ClassVar[str] = "list_workflows"
    limit: int = 100
    cursor: str | None = None


class GetWorkflow(SdkRequest, kw_only=True):
    command: ClassVar[str] = "get_workflow"
    id: str = ""


class ListWorkflowSummaries(SdkRequest, kw_only=True):
    command: ClassVar[str] = "list_workflow_summaries"
    limit: int = 50
    cursor: str | None = None


class GetWorkflowInterface(SdkRequest, kw_only=True):
    command: ClassVar[str] = "get_workflow_interface"
    id: str = ""
    version: int = 1


class GetWorkflowInterfaces(SdkRequest, kw_only=True):
    """Also the body of ``POST /api/sdk/v1/workflow-interfaces``."""

    command: ClassVar[str] = "get_workflow_interfaces"
    ids: list[str] = []
    version: int = 1


class PreflightWorkflow(SdkRequest, kw_only=True):
    """Validate a run without running it; also the body of ``POST /api/sdk/v1/preflight``.

    NodeTool's form names a stored workflow and its ``inputs``; a noderun extension
    sends a ``graph`` (and ``params``) instead, as ``run_job`` would.
    """

    command: ClassVar[str] = "preflight_workflow"
    workflow_id: str = ""
    inputs: dict[str, Value] | None = None
    level: str = "static"
    workflow_etag: str | None = None
    interface_version: int = 1
    graph: Graph | None = None
    params: dict[str, Value] | None = None


class Ping(_Frame, kw_only=True):
    """Client ``{"type": "ping"}`` (no command): answered with a pong."""


class Pong(_Frame, kw_only=True):
    """Client ``{"type": "pong"}``: the SDK's answer to our ping, accepted silently."""


#: Every RPC, for dispatch closed with ``assert_never``.
SdkFrame = (
    ListNodes
    | GetNode
    | GetNodeTypeInventory
    | GetCapabilities
    | ListWorkflows
    | GetWorkflow
    | ListWorkflowSummaries
    | GetWorkflowInterface
    | GetWorkflowInterfaces
    | PreflightWorkflow
)

ClientFrame = (
    RunJob
    | ReconnectJob
    | CancelJob
    | GetStatus
    | SetMode
    | StreamInput
    | EndInputStream
    | UpdateNodeProperties
    | ClearModels
    | Stop
    | SdkFrame
    | Ping
    | Pong
)

#: command name → the struct its ``data`` decodes into.
COMMANDS: dict[str, type[_Frame]] = {
    "run_job": RunJob,
    "reconnect_job": ReconnectJob,
    "resume_job": ReconnectJob,
    "cancel_job": CancelJob,
    "get_status": GetStatus,
    "set_mode": SetMode,
    "stream_input": StreamInput,
    "end_input_stream": EndInputStream,
    "update_node_properties": UpdateNodeProperties,
    "clear_models": ClearModels,
    "stop": Stop,
    # Every RPC of the SdkFrame union: adding one is its struct and its union member
    # here, and its case in SdkService (closed with assert_never).
    **{cls.command: cls for cls in get_args(SdkFrame)},
}
