"""An OpenAPI 3.1 document of every HTTP route the server serves (``noderun schema
--openapi``); ``/ws`` is the AsyncAPI document's (:mod:`noderun.protocol.schema`).

:data:`OPERATIONS` names, per route and method, the parameters, the request body and the
answer per status code; the bodies are the structs the handlers build
(:mod:`noderun.server.answers`) and decode (:mod:`noderun.protocol.client`), turned into
JSON Schema by ``msgspec.json.schema_components``. The tests check that every route of
the app is here and validate real answers of a real server against the document.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST

from noderun.protocol.client import GetWorkflowInterfaces, PreflightWorkflow
from noderun.protocol.schema import any_value
from noderun.server.answers import (
    DESCRIBED,
    SHAPE_KEY,
    Alive,
    Answer,
    AssetAnswer,
    AssetUploadFields,
    CancelAnswer,
    Capabilities,
    ErrorBody,
    JobAnswer,
    NotReady,
    PreflightAnswer,
    ProbeHealth,
    Ready,
    RestError,
    SdkHealth,
    Starting,
    SummaryPage,
    TemporaryAsset,
    UploadRefusal,
    VersionInfo,
    WorkflowAnswer,
    WorkflowInterface,
    WorkflowInterfaces,
    WorkflowPage,
)
from noderun.server.http_api import QUERIES, query_fields

__all__ = ["OPERATIONS", "Operation", "openapi", "openapi_path"]

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(name=name)}


@dataclass(frozen=True)
class Raw:
    """A body that is not a struct: its media type and schema."""

    media_type: str
    schema: Mapping[str, Any]


@dataclass(frozen=True)
class Answered:
    """One status code's answer: a type msgspec describes, or a :class:`Raw` body."""

    description: str
    body: Any


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answers: Mapping[int, Answered]
    #: Takes ``/ws``'s tokens as ``Authorization: Bearer`` (when the server has tokens).
    authed: bool = True
    #: What each query parameter means; their names, types and defaults are those of the
    #: struct the handler reads the query into (``http_api.QUERIES``).
    query: Mapping[str, str] = field(default_factory=dict)
    request: Any = None
    description: str = ""
    #: The form fields sent as JSON (``encoding`` of a multipart body).
    json_fields: Sequence[str] = field(default_factory=tuple)


def _sdk_errors(*statuses: int) -> dict[int, Answered]:
    """The SDK API's refusals (always 401 without a valid token)."""
    reasons = {
        400: "invalid input",
        401: "missing or invalid token",
        404: "not found",
        413: "upload larger than the limit",
        503: "not ready, or the store is unavailable (retryable)",
    }
    return {status: Answered(reasons[status], ErrorBody) for status in (401, *statuses)}


def _rest_errors(*statuses: int) -> dict[int, Answered]:
    """NodeTool's REST asset routes refuse with ``{"detail"}``."""
    reasons = {
        400: "not a valid upload",
        401: "missing or invalid token",
        404: "no such asset of this user",
        413: "upload larger than the limit",
    }
    return {status: Answered(reasons[status], RestError) for status in (401, *statuses)}


_STRING = {"type": "string"}
_CURSOR = "the previous page's next (an offset, digits)"
_UPLOAD = Raw(
    "multipart/form-data",
    {
        "type": "object",
        "properties": {
            "file": {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": "the file (its part's filename and content type are the "
                "defaults of name and content_type)",
            },
            "json": _ref("AssetUploadFields"),
        },
        "required": ["file"],
    },
)
_METADATA_LISTING = Raw(
    "application/json",
    {
        "anyOf": [
            {**_ref("NodeMetadata"), "description": "one node type (with node_type)"},
            {"type": "array", "items": _ref("NodeMetadata"), "description": "fields=full"},
            {"type": "array", "items": _ref("NodeSummary"), "description": "the slim listing"},
        ]
    },
)

OPERATIONS: tuple[Operation, ...] = (
    # -- probes ------------------------------------------------------------------
    Operation(
        "get",
        "/livez",
        "Liveness: the process answers HTTP",
        {200: Answered("alive", Alive)},
        authed=False,
    ),
    Operation(
        "get",
        "/readyz",
        "Readiness: the server should get traffic",
        {
            200: Answered("ready", Ready),
            503: Answered("starting, draining, or the store does not answer", NotReady),
        },
        authed=False,
    ),
    Operation(
        "get",
        "/version",
        "The server's version",
        {200: Answered("the version", VersionInfo)},
        authed=False,
    ),
    Operation(
        "get",
        "/health",
        "Active runs, once started",
        {200: Answered("started", ProbeHealth), 503: Answered("starting", Starting)},
        authed=False,
    ),
    Operation(
        "get",
        "/metrics",
        "Prometheus metrics",
        {200: Answered("the text exposition format", Raw(CONTENT_TYPE_LATEST, _STRING))},
        authed=False,
    ),
    # -- assets -----------------------------------------------------------------------
    *(
        Operation(
            "post",
            path,
            "Upload an asset (NodeTool's REST shape)",
            {200: Answered("the stored asset", AssetAnswer), **_rest_errors(400, 413)},
            request=_UPLOAD,
            json_fields=("json",),
            description="The form's `json` field (or `asset`) is optional.",
        )
        for path in ("/api/assets", "/api/assets/")
    ),
    Operation(
        "get",
        "/api/assets/{asset_id}",
        "An asset's metadata",
        {200: Answered("the asset", AssetAnswer), **_rest_errors(404)},
    ),
    Operation(
        "get",
        "/api/assets/{asset_id}/download",
        "An asset's bytes, in its content type",
        {
            200: Answered("the file", Raw("*/*", {"type": "string", "format": "binary"})),
            **_rest_errors(404),
        },
    ),
    Operation(
        "post",
        "/api/sdk/v1/assets/temporary",
        "Upload a temporary asset (SDK v1), referenced as asset://<id> in inputs",
        {
            200: Answered("the stored asset", TemporaryAsset),
            **{
                status: Answered(answered.description, UploadRefusal)
                for status, answered in _sdk_errors(400, 413).items()
            },
        },
        request=_UPLOAD,
        json_fields=("json",),
    ),
    # -- server and nodes -------------------------------------------------------------
    Operation(
        "get",
        "/api/health",
        "The SDK's health check",
        {
            200: Answered("started", SdkHealth),
            503: Answered("starting (retryable)", ErrorBody),
        },
        authed=False,
    ),
    Operation(
        "get",
        "/api/nodes/metadata",
        "Node metadata: one node type, or the listing",
        {200: Answered("the node type or the listing", _METADATA_LISTING), **_sdk_errors(404)},
        query={
            "node_type": "answer this node type only (404 when unknown)",
            "namespace": "only this namespace and those under it",
            "fields": "full: every node's metadata; anything else or nothing: "
            "node_type/title/description/namespace",
        },
    ),
    Operation(
        "get",
        "/api/sdk/v1/node-types",
        "A page of the distinct types node properties and outputs use",
        {200: Answered("one page", _ref("NodeTypeInventory")), **_sdk_errors(400)},
        query={"cursor": "offset, >= 0", "limit": "page size, 1..100"},
    ),
    Operation(
        "get",
        "/api/sdk/v1/capabilities",
        "What this server supports (the SDK negotiates against it)",
        {200: Answered("the capabilities", Capabilities), **_sdk_errors()},
    ),
    Operation(
        "post",
        "/api/sdk/v1/preflight",
        "Validate a run as run_job would, without running it",
        {200: Answered("the verdict", PreflightAnswer), **_sdk_errors(400, 404)},
        request=PreflightWorkflow,
    ),
    # -- workflows --------------------------------------------------------------------
    Operation(
        "get",
        "/api/workflows",
        "A page of stored workflows",
        {200: Answered("one page", WorkflowPage), **_sdk_errors(400)},
        query={"limit": "page size, clamped to 1..500", "cursor": _CURSOR},
    ),
    Operation(
        "get",
        "/api/workflows/{workflow_id}",
        "One stored workflow",
        {200: Answered("the workflow", WorkflowAnswer), **_sdk_errors(404)},
    ),
    Operation(
        "get",
        "/api/workflows/{workflow_id}/interface",
        "A stored workflow's inputs and outputs",
        {200: Answered("the interface", WorkflowInterface), **_sdk_errors(400, 404)},
        query={"version": "the interface version: 1"},
    ),
    Operation(
        "get",
        "/api/sdk/v1/workflows",
        "A page of workflow summaries",
        {200: Answered("one page", SummaryPage), **_sdk_errors(400)},
        query={"limit": "page size, 1..100", "cursor": _CURSOR},
    ),
    Operation(
        "post",
        "/api/sdk/v1/workflow-interfaces",
        "Several workflows' interfaces at once",
        {200: Answered("found and missing", WorkflowInterfaces), **_sdk_errors(400)},
        request=GetWorkflowInterfaces,
    ),
    # -- jobs -------------------------------------------------------------------------
    Operation(
        "get",
        "/api/jobs/{job_id}",
        "A run of this user (from memory, else from the store)",
        {200: Answered("the job", JobAnswer), **_sdk_errors(404, 503)},
    ),
    Operation(
        "post",
        "/api/jobs/{job_id}/cancel",
        "Ask for a run's cancellation",
        {200: Answered("requested, or already finished", CancelAnswer), **_sdk_errors(404, 503)},
    ),
    Operation(
        "get",
        "/api/{rest:path}",
        "Any other path under /api/",
        _sdk_errors(404),
        description="Answers 404 (401 first without a valid token).",
    ),
)

_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def openapi_path(route_path: str) -> str:
    """A Starlette path as OpenAPI writes it (``{rest:path}`` → ``{rest}``)."""
    return _CONVERTER.sub(r"{\1}", route_path)


def _schema_types() -> list[Any]:
    types: list[Any] = [*DESCRIBED.values(), AssetUploadFields]
    for operation in OPERATIONS:
        if operation.request is not None and not isinstance(operation.request, Raw):
            types.append(operation.request)
        for answered in operation.answers.values():
            if not isinstance(answered.body, Raw | dict):
                types.append(answered.body)
    return list(dict.fromkeys(types))


def _components() -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    types = _schema_types()
    schemas, components = msgspec.json.schema_components(
        types, schema_hook=any_value, ref_template=_REF
    )
    components = _resolve_shapes(dict(components))
    _require_every_field(components)
    return dict(zip(types, schemas, strict=True)), components


def _resolve_shapes(node: Any) -> Any:
    """Replace each :func:`~noderun.server.answers.shaped` field by its struct's ``$ref``."""
    if isinstance(node, dict):
        name = node.get(SHAPE_KEY)
        if name is not None:
            if name not in DESCRIBED:
                raise ValueError(f"no described struct {name!r}")
            return _ref(name)
        return {key: _resolve_shapes(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_shapes(value) for value in node]
    return node


def _answers() -> list[type[Answer]]:
    found: list[type[Answer]] = []
    pending = [Answer]
    while pending:
        kind = pending.pop()
        for sub in kind.__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


def _require_every_field(components: dict[str, Any]) -> None:
    """An answer always carries every field (``null`` included), except ``UNSET`` ones:
    msgspec marks fields with defaults optional, which is right for what a server
    reads and wrong for what it sends."""
    for kind in _answers():
        schema = components.get(kind.__name__)
        if schema is None:
            continue
        if schema.get("title") != kind.__name__:
            raise ValueError(f"two structs named {kind.__name__}")
        required = [
            item.encode_name
            for item in msgspec.structs.fields(kind)
            if item.default is not msgspec.UNSET
        ]
        if required:
            schema["required"] = required
        else:
            schema.pop("required", None)


def _content(body: Any, refs: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(body, Raw):
        return {body.media_type: {"schema": dict(body.schema)}}
    if isinstance(body, dict):
        return {"application/json": {"schema": body}}
    return {"application/json": {"schema": refs[body]}}


def _operation(operation: Operation, refs: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    path = openapi_path(operation.path)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    parameters += _query_parameters(operation)
    document: dict[str, Any] = {
        "operationId": _operation_id(operation),
        "summary": operation.summary,
    }
    if operation.description:
        document["description"] = operation.description
    if parameters:
        document["parameters"] = parameters
    if operation.request is not None:
        content = _content(operation.request, refs)
        if operation.json_fields:
            for media in content.values():
                media["encoding"] = {
                    name: {"contentType": "application/json"} for name in operation.json_fields
                }
        document["requestBody"] = {"required": True, "content": content}
    document["responses"] = {
        str(status): {"description": answered.description, "content": _content(answered.body, refs)}
        for status, answered in sorted(operation.answers.items())
    }
    # Either the bearer token, or nothing when the server runs without tokens.
    document["security"] = [{"bearer": []}, {}] if operation.authed else []
    return document


def _query_parameters(operation: Operation) -> list[dict[str, Any]]:
    kind = QUERIES.get(operation.path)
    if kind is None:
        if operation.query:
            raise ValueError(f"{operation.path} reads no query into a struct")
        return []
    parameters = []
    for item in query_fields(kind):
        if item.encode_name not in operation.query:
            raise ValueError(f"{operation.path}: query parameter {item.encode_name} undescribed")
        # A query parameter is absent rather than null: the type without its None.
        kinds = [arg for arg in typing.get_args(item.type) if arg is not type(None)]
        schema = msgspec.json.schema(kinds[0] if kinds else item.type)
        if item.default not in (None, msgspec.NODEFAULT):
            schema["default"] = item.default
        parameters.append(
            {
                "name": item.encode_name,
                "in": "query",
                "required": False,
                "description": operation.query[item.encode_name],
                "schema": schema,
            }
        )
    return parameters


def _operation_id(operation: Operation) -> str:
    path = openapi_path(operation.path)
    words = re.findall(r"[A-Za-z0-9]+", path)
    # /api/assets/ is a route of its own beside /api/assets (NodeTool's spelling).
    slash = "Slash" if path.endswith("/") and path != "/" else ""
    return operation.method + "".join(word.capitalize() for word in words) + slash


def openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP routes."""
    refs, components = _components()
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        item = paths.setdefault(openapi_path(operation.path), {})
        item[operation.method] = _operation(operation, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "noderun HTTP API",
            "version": version,
            "description": "The HTTP routes beside /ws on the same port: probes, metrics, "
            "NodeTool's SDK API and assets. /ws itself is described by the AsyncAPI "
            "document (`noderun schema --asyncapi`). Generated from noderun's types.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the server's tokens (NODERUN_TOKENS), required "
                    "when it has any. The HTTP API reads the Authorization header only; "
                    "/ws also takes ?api_key=.",
                }
            },
        },
    }
