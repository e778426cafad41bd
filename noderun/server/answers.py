"""The JSON bodies the HTTP routes answer with, as msgspec structs.

The handlers build these structs and msgspec encodes them, and the OpenAPI document
(:mod:`noderun.server.openapi`) is generated from the same structs, so the two cannot
drift. Field order is wire order; every field is always sent (``null`` included) unless
its default is ``UNSET``.

Some answers embed data the runtime builds as plain dicts, once, at start-up: node
metadata and its type descriptors (:mod:`noderun.runtime.catalog`), the type inventory
(:mod:`noderun.runtime.inventory`), workflow pins and diagnostics
(:mod:`noderun.runtime.workflows`). Their fields here are ``dict`` annotated with
:func:`shaped`, which names the struct of the "Described" section below that the
document shows for them. Those structs are not built by the code; the tests convert
every node's metadata (noderun's and a NodeTool worker's) into them and validate real
answers against the document, so a key or type changed on one side only fails the suite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from noderun.contract import RunStatus

__all__ = [
    "DESCRIBED",
    "SHAPE_KEY",
    "Alive",
    "Answer",
    "AssetAnswer",
    "AssetUploadFields",
    "CancelAnswer",
    "Capabilities",
    "DateTime",
    "Described",
    "Diagnostic",
    "ErrorBody",
    "ExecutionDefaults",
    "InputPin",
    "InterfaceError",
    "JobAnswer",
    "Limits",
    "NodeMetadata",
    "NodeSummary",
    "NodeTypeInventory",
    "NotReady",
    "ObjectSchema",
    "OutputPin",
    "OutputSlot",
    "PreflightAnswer",
    "PreflightIssue",
    "ProbeHealth",
    "Profiles",
    "PropertyMetadata",
    "PropertySchema",
    "Ready",
    "RestError",
    "SdkHealth",
    "Starting",
    "SummaryPage",
    "SupportedOptions",
    "TemporaryAsset",
    "TypeDescriptor",
    "TypeExample",
    "TypeUsage",
    "UploadRefusal",
    "VersionInfo",
    "WorkflowAnswer",
    "WorkflowInterface",
    "WorkflowInterfaces",
    "WorkflowPage",
    "WorkflowSummary",
    "shaped",
]

#: The JSON Schema key :func:`shaped` leaves for the document's generator to resolve.
SHAPE_KEY = "x-noderun-shape"

DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]


def shaped(name: str) -> msgspec.Meta:
    """Mark a ``dict`` field as the described struct ``name`` (see the module doc)."""
    return msgspec.Meta(extra_json_schema={SHAPE_KEY: name})


class Answer(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of the answers: keyword-only, and ``additionalProperties: false`` in the
    document (the server sends exactly these keys)."""


# -- errors ------------------------------------------------------------------------------


class ErrorBody(Answer, kw_only=True):
    """A refusal of the SDK API (NodeTool's SDK reads ``code``, ``detail``, ``retryable``)."""

    code: str
    message: str
    detail: str
    retryable: bool


class UploadRefusal(Answer, kw_only=True):
    """A refusal of the SDK's temporary upload: :class:`ErrorBody`'s keys, in the order
    that route has always sent them."""

    code: str
    message: str
    retryable: bool
    detail: str


class RestError(Answer, kw_only=True):
    """A refusal of NodeTool's REST asset routes."""

    detail: str


# -- probes ------------------------------------------------------------------------------


class Alive(Answer, kw_only=True):
    status: Literal["alive"] = "alive"


class Ready(Answer, kw_only=True):
    status: Literal["ready"] = "ready"


class NotReady(Answer, kw_only=True):
    status: Literal["unavailable"] = "unavailable"
    reasons: list[str]


class VersionInfo(Answer, kw_only=True):
    name: Literal["noderun"] = "noderun"
    version: str


class ProbeHealth(Answer, kw_only=True):
    status: Literal["ok"] = "ok"
    active_runs: int


class Starting(Answer, kw_only=True):
    status: Literal["starting"] = "starting"


class SdkHealth(Answer, kw_only=True):
    status: Literal["ok"] = "ok"
    version: str
    uptime: int
    active_runs: int


# -- capabilities ------------------------------------------------------------------------

Availability = Literal["available", "unavailable"]


class Profiles(Answer, kw_only=True):
    discovery: Availability
    execution: Availability
    lifecycle: Availability
    workflow_interface: Availability = msgspec.field(name="workflow-interface")
    temporary_asset_upload: Availability
    models: Availability


class ExecutionDefaults(Answer, kw_only=True):
    persistence: str
    event_detail: str
    asset_persistence: str


class SupportedOptions(Answer, kw_only=True):
    persistence: list[str]
    event_detail: list[str]
    asset_persistence: list[str]
    defaults: ExecutionDefaults


class Limits(Answer, kw_only=True):
    max_rpc_batch: int
    max_inline_bytes: int
    max_frame_bytes: int
    max_upload_bytes: int
    max_queued_jobs: int
    max_connections: int
    max_runs_per_connection: int
    max_runs_per_user: int
    max_queued_runs_per_user: int
    max_job_event_replay: int
    request_timeout_seconds: float
    max_graph_nodes: int
    run_timeout_seconds: float


class Capabilities(Answer, kw_only=True):
    """NodeTool's ``SdkCapabilitiesResponse``."""

    protocol_version: str
    nodetool_version: str
    server_time: DateTime
    supported_encodings: list[str]
    default_encoding: str
    profiles: Profiles
    registry_revision: int
    python_bridge: str
    auth_modes: list[str]
    asset_uri_schemes: list[str]
    execution_options: SupportedOptions
    limits: Limits


# -- jobs --------------------------------------------------------------------------------


class JobAnswer(Answer, kw_only=True):
    """NodeTool's ``JobResponse``."""

    id: str
    job_id: str
    user_id: str
    job_type: Literal["workflow"] = "workflow"
    status: RunStatus
    workflow_id: str
    progress: float
    result: dict[str, object] | None
    outputs: object
    error: str | None
    created_at: DateTime | None
    started_at: DateTime | None
    completed_at: DateTime | None
    finished_at: DateTime | None
    durable: bool


class CancelAnswer(Answer, kw_only=True):
    job_id: str
    status: RunStatus
    cancel_requested: bool
    message: str


# -- workflows ---------------------------------------------------------------------------


class PropertySchema(Answer, kw_only=True):
    """One input or output of a workflow in its ``input_schema``/``output_schema``."""

    title: str
    description: str
    type: str | UnsetType = UNSET
    enum: list[object] | UnsetType = UNSET
    default: object | UnsetType = UNSET
    minimum: float | UnsetType = UNSET
    maximum: float | UnsetType = UNSET


class ObjectSchema(Answer, kw_only=True):
    type: Literal["object"] = "object"
    properties: dict[str, PropertySchema]
    required: list[str]


class WorkflowAnswer(Answer, kw_only=True):
    """A stored workflow as NodeTool's ``WorkflowResponse``."""

    id: str
    access: Literal["public"] = "public"
    created_at: DateTime
    updated_at: DateTime
    name: str
    tool_name: None = None
    description: str
    tags: list[str]
    thumbnail: None = None
    thumbnail_url: None = None
    graph: Mapping[str, object]
    input_schema: ObjectSchema
    output_schema: ObjectSchema
    settings: Mapping[str, object] | None
    package_name: None = None
    path: None = None
    run_mode: str
    workspace_id: None = None
    required_providers: None = None
    required_models: None = None
    html_app: None = None
    app_doc: None = None
    etag: str


class WorkflowPage(Answer, kw_only=True):
    workflows: list[WorkflowAnswer]
    next: str | None


class WorkflowSummary(Answer, kw_only=True):
    id: str
    name: str
    description: str
    revision: str
    registry_revision: int
    run_mode: str


class SummaryPage(Answer, kw_only=True):
    workflows: list[WorkflowSummary]
    next: str | None


Pin = Annotated[dict[str, object], shaped("InputPin")]
OutPin = Annotated[dict[str, object], shaped("OutputPin")]
Finding = Annotated[dict[str, object], shaped("Diagnostic")]


class WorkflowInterface(Answer, kw_only=True):
    version: Literal[1] = 1
    workflow_id: str
    etag: str
    source: Literal["server"] = "server"
    inputs: list[Pin]
    outputs: list[OutPin]
    diagnostics: list[Finding]


class InterfaceError(Answer, kw_only=True):
    workflow_id: str
    code: Literal["workflow_not_found"] = "workflow_not_found"
    message: str


class WorkflowInterfaces(Answer, kw_only=True):
    interfaces: list[WorkflowInterface]
    errors: list[InterfaceError]


class PreflightIssue(Answer, kw_only=True):
    severity: Literal["error"] = "error"
    code: str
    message: str
    node_id: str | None
    pin_name: str | None


class PreflightAnswer(Answer, kw_only=True):
    version: Literal[1] = 1
    level: str
    workflow_id: str
    workflow_etag: str | None
    runnable: bool
    issues: list[PreflightIssue]
    requirements: list[object]
    cost: None = None


# -- assets ------------------------------------------------------------------------------


class AssetAnswer(Answer, kw_only=True):
    """NodeTool's asset JSON; ``expires_at`` is noderun's, set for temporary assets."""

    id: str
    user_id: str
    workflow_id: None = None
    parent_id: str
    name: str
    content_type: str
    size: int
    metadata: dict[str, object] | None
    created_at: DateTime
    get_url: str
    thumb_url: None = None
    duration: None = None
    node_id: None = None
    job_id: None = None
    expires_at: DateTime | None


class TemporaryAsset(Answer, kw_only=True):
    """The SDK v1 temporary-upload answer."""

    version: Literal[1] = 1
    uri: str
    name: str
    content_type: str
    size: int
    expires_at: DateTime | None


class AssetUploadFields(msgspec.Struct, kw_only=True):
    """The upload's optional ``json`` form field: a JSON object whose keys are all
    optional; a value of another type counts as absent, other keys are ignored."""

    name: str | UnsetType | None = UNSET
    content_type: str | UnsetType | None = UNSET
    metadata: dict[str, object] | UnsetType | None = UNSET


# -- described: built by the runtime as dicts ----------------------------------------------


class Described(msgspec.Struct, kw_only=True):
    """Base of the node metadata's structs. A NodeTool worker's node keeps NodeTool's own
    metadata (:mod:`noderun.nodetool.catalog`): only the keys it guarantees are required
    (the fields without a default), and other keys are allowed."""


class TypeDescriptor(Described, kw_only=True):
    """NodeTool's ``NodeTypeDefinition`` (``values`` for enums, ``type_name`` for named
    types)."""

    type: str
    optional: bool
    type_args: list[TypeDescriptor]
    values: list[object] | UnsetType | None = UNSET
    type_name: str | UnsetType | None = UNSET


class PropertyMetadata(Described, kw_only=True):
    name: str
    type: TypeDescriptor
    default: object
    description: str | None
    title: str | UnsetType = UNSET
    required: bool | UnsetType = UNSET
    min: float | UnsetType | None = UNSET
    max: float | UnsetType | None = UNSET
    values: list[object] | UnsetType | None = UNSET


class OutputSlot(Described, kw_only=True):
    name: str
    type: TypeDescriptor
    stream: bool | UnsetType = UNSET


class NodeMetadata(Described, kw_only=True):
    """NodeTool's ``NodeMetadata`` (``GET /api/nodes/metadata?fields=full``); noderun's
    own nodes carry every key."""

    node_type: str
    title: str
    description: str
    namespace: str
    properties: list[PropertyMetadata]
    outputs: list[OutputSlot]
    is_streaming_output: bool
    layout: str | UnsetType = UNSET
    basic_fields: list[str] | UnsetType = UNSET
    is_dynamic: bool | UnsetType = UNSET
    is_streaming_input: bool | UnsetType = UNSET
    supports_dynamic_inputs: bool | UnsetType = UNSET
    supports_dynamic_outputs: bool | UnsetType = UNSET
    expose_as_tool: bool | UnsetType = UNSET
    hidden: bool | UnsetType = UNSET
    deprecated: bool | UnsetType = UNSET
    replaced_by: str | UnsetType | None = UNSET
    the_model_info: dict[str, object] | UnsetType = UNSET
    recommended_models: list[object] | UnsetType = UNSET
    required_settings: list[str] | UnsetType = UNSET
    required_runtimes: list[str] | UnsetType = UNSET


class NodeSummary(Answer, kw_only=True):
    """A node in the slim listing (without ``?fields=full``)."""

    node_type: str
    title: str
    description: str
    namespace: str


class TypeExample(Answer, kw_only=True):
    node_type: str
    pin: str
    direction: Literal["input", "output"]


class TypeUsage(Answer, kw_only=True):
    """NodeTool's ``NodeTypeUsage``."""

    signature: str
    type: str
    type_name: str | None
    optional: bool
    type_args: list[str]
    values: list[object]
    values_truncated: bool
    input_uses: int
    output_uses: int
    node_count: int
    sources: dict[str, int]
    examples: list[TypeExample]


class NodeTypeInventory(Answer, kw_only=True):
    """NodeTool's ``NodeTypeInventoryResponse``."""

    version: Literal[1]
    registry_revision: int
    registry_ready: bool
    python_bridge_ready: bool
    node_count: int
    type_count: int
    provenance_counts: dict[str, int]
    cursor: int
    next_cursor: int | None
    types: list[TypeUsage]
    unavailable_packs: list[object]


class InputPin(Answer, kw_only=True):
    node_id: str
    name: str
    description: str
    type: TypeDescriptor
    required: bool
    default: object
    min: float | UnsetType = UNSET
    max: float | UnsetType = UNSET


class OutputPin(Answer, kw_only=True):
    node_id: str
    name: str
    description: str
    type: TypeDescriptor
    stream: bool


class Diagnostic(Answer, kw_only=True):
    severity: Literal["warning"]
    code: str
    message: str
    node_id: str
    pin_name: str | UnsetType = UNSET


#: The described structs by the name :func:`shaped` uses.
DESCRIBED: dict[str, type[msgspec.Struct]] = {
    kind.__name__: kind
    for kind in (
        TypeDescriptor,
        PropertyMetadata,
        OutputSlot,
        NodeMetadata,
        NodeSummary,
        TypeExample,
        TypeUsage,
        NodeTypeInventory,
        InputPin,
        OutputPin,
        Diagnostic,
    )
}
