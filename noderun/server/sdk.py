"""What NodeTool's SDK asks besides running: node metadata, capabilities, stored
workflows and their interfaces, preflight (PROTOCOL.md §2.2, §8).

One :class:`SdkService` answers both transports: the HTTP routes
(:mod:`noderun.server.http_api`) and the WebSocket RPCs (:meth:`SdkService.answer`),
so an answer has one shape whichever way it is asked. Every answer is plain data
shaped as the SDK's C# models deserialize it; a refusal is an :class:`ApiError`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import assert_never

from noderun.protocol.client import (
    GetCapabilities,
    GetNode,
    GetNodeTypeInventory,
    GetWorkflow,
    GetWorkflowInterface,
    GetWorkflowInterfaces,
    ListNodes,
    ListWorkflows,
    ListWorkflowSummaries,
    PreflightWorkflow,
    SdkFrame,
)
from noderun.protocol.server import RpcError, RpcResponse
from noderun.runtime.catalog import NodeCatalog
from noderun.runtime.errors import GraphError, WorkflowError
from noderun.runtime.graph import plan_graph
from noderun.runtime.registry import Registry
from noderun.runtime.workflows import StoredWorkflow, WorkflowCatalog, run_error
from noderun.server.answers import (
    Capabilities,
    InterfaceError,
    ObjectSchema,
    PreflightAnswer,
    PreflightIssue,
    PropertySchema,
    SdkHealth,
    SummaryPage,
    WorkflowAnswer,
    WorkflowInterface,
    WorkflowInterfaces,
    WorkflowPage,
    WorkflowSummary,
)
from noderun.server.capabilities import MAX_RPC_BATCH, capabilities
from noderun.server.errors import ApiError
from noderun.server.settings import Settings
from noderun.server.version import VERSION

__all__ = ["SdkService"]

_JSON_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
    "dict": "object",
}


class SdkService:
    """Answers from the node catalog and the stored workflows, both fixed at start-up."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        workflows: WorkflowCatalog,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self.catalog = NodeCatalog(registry)
        self.workflows = workflows
        self._started = time.monotonic()
        self._version = VERSION

    def reload_nodes(self) -> None:
        """Rebuild the node catalog after start-up added nodes (NodeTool workers)."""
        self.catalog = NodeCatalog(self._registry)

    # -- server ---------------------------------------------------------------------

    def health(self, active_runs: int) -> SdkHealth:
        return SdkHealth(
            version=self._version,
            uptime=int(time.monotonic() - self._started),
            active_runs=active_runs,
        )

    def capabilities(self) -> Capabilities:
        return capabilities(self._settings, self.catalog.revision, self._version)

    # -- nodes ----------------------------------------------------------------------

    def node(self, node_type: str) -> dict[str, object]:
        meta = self.catalog.by_type.get(node_type)
        if meta is None:
            raise ApiError(404, "NOT_FOUND", f"unknown node type {node_type!r}")
        return meta

    def inventory(self, cursor: int, limit: int) -> dict[str, object]:
        if cursor < 0 or not 1 <= limit <= 100:
            raise ApiError(400, "INVALID_INPUT", "cursor must be >= 0 and limit 1..100")
        return self.catalog.inventory(cursor, limit)

    # -- workflows ------------------------------------------------------------------

    def _workflow(self, workflow_id: str) -> StoredWorkflow:
        if not workflow_id:
            raise ApiError(400, "INVALID_INPUT", "a workflow id is required")
        workflow = self.workflows.get(workflow_id)
        if workflow is None:
            raise ApiError(404, "WORKFLOW_NOT_FOUND", f"workflow {workflow_id!r} not found")
        return workflow

    def workflow(self, workflow_id: str) -> WorkflowAnswer:
        return self._response(self._workflow(workflow_id))

    def workflows_page(self, limit: int, cursor: str | None) -> WorkflowPage:
        """``{"workflows": [full workflow], "next"}``; ``limit`` clamped to 1..500."""
        page, following = self._page(max(1, min(limit, 500)), cursor)
        return WorkflowPage(workflows=[self._response(wf) for wf in page], next=following)

    def summaries(self, limit: int, cursor: str | None) -> SummaryPage:
        if not 1 <= limit <= 100:
            raise ApiError(400, "INVALID_INPUT", "limit must be 1..100")
        page, following = self._page(limit, cursor)
        return SummaryPage(
            workflows=[
                WorkflowSummary(
                    id=wf.id,
                    name=wf.name,
                    description=wf.description,
                    revision=wf.etag,
                    registry_revision=self.catalog.revision,
                    run_mode=wf.run_mode,
                )
                for wf in page
            ],
            next=following,
        )

    def _page(self, limit: int, cursor: str | None) -> tuple[list[StoredWorkflow], str | None]:
        """A page of workflows; the cursor is the offset of the next page, as a string."""
        if cursor is None or cursor == "":
            start = 0
        elif cursor.isdigit():
            start = int(cursor)
        else:
            raise ApiError(400, "INVALID_INPUT", f"invalid cursor {cursor!r}")
        workflows = list(self.workflows)
        end = start + limit
        return workflows[start:end], str(end) if end < len(workflows) else None

    def interface(self, workflow_id: str, version: int = 1) -> WorkflowInterface:
        if version != 1:
            raise ApiError(
                400,
                "UNSUPPORTED_WORKFLOW_INTERFACE_VERSION",
                "workflow interface version 1 is required",
            )
        return self._interface(self._workflow(workflow_id))

    def interfaces(self, ids: list[str], version: int = 1) -> WorkflowInterfaces:
        if (
            version != 1
            or not 1 <= len(ids) <= MAX_RPC_BATCH
            or len(set(ids)) != len(ids)
            or not all(ids)
        ):
            raise ApiError(
                400,
                "INVALID_INPUT",
                f"expected 1 to {MAX_RPC_BATCH} unique workflow ids and version 1",
            )
        found: list[WorkflowInterface] = []
        errors: list[InterfaceError] = []
        for workflow_id in ids:
            workflow = self.workflows.get(workflow_id)
            if workflow is None:
                errors.append(
                    InterfaceError(
                        workflow_id=workflow_id, message=f"workflow {workflow_id!r} not found"
                    )
                )
            else:
                found.append(self._interface(workflow))
        return WorkflowInterfaces(interfaces=found, errors=errors)

    def _interface(self, workflow: StoredWorkflow) -> WorkflowInterface:
        return WorkflowInterface(
            workflow_id=workflow.id,
            etag=workflow.etag,
            inputs=workflow.input_pins,
            outputs=workflow.output_pins,
            diagnostics=workflow.diagnostics,
        )

    def _response(self, workflow: StoredWorkflow) -> WorkflowAnswer:
        """A workflow as NodeTool's ``WorkflowResponse``."""
        return WorkflowAnswer(
            id=workflow.id,
            created_at=workflow.created_at,
            updated_at=workflow.updated_at,
            name=workflow.name,
            description=workflow.description,
            tags=list(workflow.tags),
            graph=workflow.raw_graph,
            input_schema=_schema(workflow.input_pins, inputs=True),
            output_schema=_schema(workflow.output_pins, inputs=False),
            settings=workflow.settings,
            run_mode=workflow.run_mode,
            etag=workflow.etag,
        )

    # -- preflight ------------------------------------------------------------------

    def preflight(self, request: PreflightWorkflow) -> PreflightAnswer:
        """Validate a run as ``run_job`` would, without running it.

        A stored workflow (``workflow_id`` + ``inputs``) or a ``graph`` (+ ``params``);
        each validation error is an ``issue`` whose message is the ``error`` the run
        would have ended ``failed`` with.
        """
        if request.level not in ("static", "availability", "execution"):
            raise ApiError(400, "INVALID_INPUT", f"unsupported preflight level {request.level!r}")
        if request.interface_version != 1:
            raise ApiError(400, "INVALID_INPUT", "workflow interface version 1 is required")
        params = request.params if request.params is not None else request.inputs
        issues: list[PreflightIssue] = []
        etag: str | None = None
        try:
            graph = request.graph
            if graph is None:
                workflow = self._workflow(request.workflow_id)
                etag = workflow.etag
                workflow.check_params(params)
                graph = workflow.graph
            plan_graph(graph, params, self._registry)
        except GraphError as exc:
            issues.append(
                PreflightIssue(
                    code=exc.code if isinstance(exc, WorkflowError) else "invalid_graph",
                    message=run_error(exc),
                    node_id=exc.node_id,
                    pin_name=exc.input if isinstance(exc, WorkflowError) else None,
                )
            )
        return PreflightAnswer(
            level=request.level,
            workflow_id=request.workflow_id,
            workflow_etag=etag,
            runnable=not issues,
            issues=issues,
            requirements=[],
        )

    # -- WebSocket RPC ---------------------------------------------------------------

    def answer(self, frame: SdkFrame) -> RpcResponse:
        """The ``rpc_response`` to one RPC frame."""
        try:
            result = self._result(frame)
        except ApiError as exc:
            error = RpcError(
                code=_RPC_CODES.get(exc.status, "invalid_input"),
                message=exc.message,
                retryable=exc.retryable,
                api_code=exc.code,
            )
            return RpcResponse(request_id=frame.request_id, command=frame.command, error=error)
        return RpcResponse(request_id=frame.request_id, command=frame.command, result=result)

    def _result(self, frame: SdkFrame) -> object:
        match frame:
            case ListNodes():
                return {"nodes": self.catalog.select(namespace=frame.namespace)}
            case GetNode():
                return self.node(frame.node_type)
            case GetNodeTypeInventory():
                return self.inventory(frame.cursor, frame.limit)
            case GetCapabilities():
                return self.capabilities()
            case ListWorkflows():
                return self.workflows_page(frame.limit, frame.cursor)
            case GetWorkflow():
                return self.workflow(frame.id)
            case ListWorkflowSummaries():
                return self.summaries(frame.limit, frame.cursor)
            case GetWorkflowInterface():
                return self.interface(frame.id, frame.version)
            case GetWorkflowInterfaces():
                return self.interfaces(frame.ids, frame.version)
            case PreflightWorkflow():
                return self.preflight(frame)
            case _:
                assert_never(frame)


#: HTTP status → the RPC error code (the NodeTool code rides along as ``apiCode``).
_RPC_CODES = {400: "invalid_input", 404: "not_found", 503: "unavailable"}


def _schema(pins: list[dict[str, object]], *, inputs: bool) -> ObjectSchema:
    """A JSON schema of a workflow's inputs or outputs (``input_schema``/``output_schema``)."""
    properties: dict[str, PropertySchema] = {}
    for pin in pins:
        kind = pin["type"]
        assert isinstance(kind, Mapping)
        name, description = str(pin["name"]), pin["description"]
        assert isinstance(description, str)
        entry = PropertySchema(title=name, description=description)
        json_type = _JSON_TYPES.get(str(kind["type"]))
        if json_type is not None:
            entry.type = json_type
        if "values" in kind:
            entry.enum = kind["values"]
        if inputs:
            entry.default = pin["default"]
            low, high = pin.get("min"), pin.get("max")
            if isinstance(low, int | float):
                entry.minimum = low
            if isinstance(high, int | float):
                entry.maximum = high
        properties[name] = entry
    return ObjectSchema(properties=properties, required=[])
