"""Stored workflows: NodeTool workflow files, loaded once, run by id.

``noderun serve --workflows DIR`` reads every ``*.json`` file of ``DIR`` at start-up:
NodeTool's exported workflow format (``id``, ``name``, ``description``, ``tags``,
``graph`` with ``nodes`` and ``edges``, …). A file that does not parse, or whose graph
does not validate against the registry (unknown node type, bad edge, cycle, bad
property), is named in one log line and skipped. The server reads the directory again
on SIGHUP (:meth:`WorkflowCatalog.replace`): runs already started keep their graph.

A workflow's interface is derived from its graph: each input node
(``spec.is_input``) is an input named by its ``name`` property, typed by its
``value`` property, defaulting to its value; each output node (``spec.is_output``)
is an output typed by the output feeding it. ``run_job`` with a ``workflow_id``
and no graph runs the stored graph with ``params`` bound to inputs by name; a param
that names no input or does not fit its input's type refuses the run before
anything executes (:class:`~noderun.runtime.errors.WorkflowError`).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import structlog

from noderun.protocol.client import Graph
from noderun.runtime.catalog import json_value, type_descriptor
from noderun.runtime.errors import GraphError, PropertyError, WorkflowError
from noderun.runtime.graph import plan_graph
from noderun.runtime.node import NodeSpec, Property
from noderun.runtime.registry import Registry

__all__ = ["InputPin", "StoredWorkflow", "WorkflowCatalog", "load_workflows", "run_error"]

log = structlog.get_logger(__name__)


class _WorkflowFile(msgspec.Struct, kw_only=True):
    """The keys of NodeTool's workflow JSON this server reads; others are ignored."""

    graph: Graph
    id: str | None = None
    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    run_mode: str | None = None
    settings: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class InputPin:
    """One input of a workflow: the input node that receives ``params[name]``."""

    node_id: str
    name: str
    node_type: str
    value: Property


@dataclass(frozen=True, slots=True)
class StoredWorkflow:
    id: str
    name: str
    description: str
    tags: tuple[str, ...]
    graph: Graph
    #: The file's graph as written (UI keys included), for clients that read it back.
    raw_graph: Mapping[str, object]
    created_at: str
    updated_at: str
    run_mode: str
    settings: Mapping[str, object] | None
    #: A digest of the file: changes whenever the file does.
    etag: str
    source: str
    inputs: Mapping[str, InputPin]
    #: NodeTool's interface pins (JSON-ready) and diagnostics.
    input_pins: list[dict[str, object]] = field(default_factory=list)
    output_pins: list[dict[str, object]] = field(default_factory=list)
    diagnostics: list[dict[str, object]] = field(default_factory=list)

    def check_params(self, params: Mapping[str, object] | None) -> None:
        """Refuse params that name no input or do not fit their input's type."""
        for name, value in (params or {}).items():
            pin = self.inputs.get(name)
            if pin is None:
                known = ", ".join(map(repr, self.inputs)) or "none"
                raise WorkflowError(
                    f"workflow {self.id!r} has no input {name!r} (its inputs: {known})",
                    code="unknown_input",
                    workflow_id=self.id,
                    input=name,
                )
            try:
                pin.value.check(pin.node_type, value)
            except PropertyError as exc:
                raise WorkflowError(
                    f"workflow {self.id!r}: input {name!r}: {exc.detail}",
                    code="invalid_input",
                    workflow_id=self.id,
                    input=name,
                    node_id=pin.node_id,
                ) from None


class WorkflowCatalog:
    """Stored workflows by id, in file-name order.

    Everyone that reads workflows (hub, HTTP API, RPCs) shares one catalog object,
    so :meth:`replace` changes what all of them see at once.
    """

    def __init__(self, workflows: Iterable[StoredWorkflow] = ()) -> None:
        self._workflows: dict[str, StoredWorkflow] = {}
        for workflow in workflows:
            self._workflows.setdefault(workflow.id, workflow)

    def get(self, workflow_id: str) -> StoredWorkflow | None:
        return self._workflows.get(workflow_id)

    def replace(self, other: WorkflowCatalog) -> None:
        """Take ``other``'s workflows (one assignment: no reader sees a mix)."""
        self._workflows = other._workflows

    def __iter__(self) -> Iterator[StoredWorkflow]:
        return iter(self._workflows.values())

    def __len__(self) -> int:
        return len(self._workflows)

    def require(self, workflow_id: str) -> StoredWorkflow:
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            raise WorkflowError(
                f"no graph given and no stored workflow {workflow_id!r}",
                code="workflow_not_found",
                workflow_id=workflow_id,
            )
        return workflow

    def graph_for(self, workflow_id: str, params: Mapping[str, object] | None) -> Graph:
        """The stored graph a ``run_job`` without a graph runs, its params checked."""
        workflow = self.require(workflow_id)
        workflow.check_params(params)
        return workflow.graph


def run_error(exc: GraphError) -> str:
    """The ``error`` of a run refused for ``exc`` (preflight reports the same text)."""
    if isinstance(exc, WorkflowError):
        return exc.detail
    return f"invalid graph: {exc.detail}"


def load_workflows(directory: str | Path, registry: Registry) -> WorkflowCatalog:
    """Every valid workflow file of ``directory``; raises :class:`ValueError` when
    ``directory`` is not a directory (a typo must not start an empty server)."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"workflows directory {str(root)!r} does not exist")
    loaded: list[StoredWorkflow] = []
    seen: set[str] = set()
    for path in sorted(root.glob("*.json")):
        try:
            workflow = _load(path, registry)
        except (OSError, UnicodeDecodeError) as exc:
            _skip(path, f"unreadable: {exc}")
            continue
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _skip(path, f"not a NodeTool workflow: {exc}")
            continue
        except GraphError as exc:
            _skip(path, run_error(exc))
            continue
        if workflow.id in seen:
            _skip(path, f"duplicate workflow id {workflow.id!r}")
            continue
        seen.add(workflow.id)
        loaded.append(workflow)
    log.info("workflows.loaded", directory=str(root), count=len(loaded))
    return WorkflowCatalog(loaded)


def _skip(path: Path, reason: str) -> None:
    log.warning("workflows.skipped", file=str(path), error=reason)


def _load(path: Path, registry: Registry) -> StoredWorkflow:
    data = path.read_bytes()
    raw = msgspec.json.decode(data)
    if not isinstance(raw, dict):
        raise msgspec.ValidationError("expected a JSON object")
    parsed = msgspec.convert(raw, _WorkflowFile)
    plan_graph(parsed.graph, None, registry)
    stat = path.stat()
    modified = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.UTC).isoformat()
    specs = {node.id: registry.get(node.type) for node in parsed.graph.nodes}
    workflow_id = parsed.id or path.stem
    inputs, input_pins, diagnostics = _inputs(parsed.graph, specs)
    raw_graph = raw["graph"]
    assert isinstance(raw_graph, dict)
    return StoredWorkflow(
        id=workflow_id,
        name=parsed.name or path.stem,
        description=parsed.description or "",
        tags=tuple(parsed.tags or ()),
        graph=parsed.graph,
        raw_graph=raw_graph,
        created_at=_timestamp(parsed.created_at, modified),
        updated_at=_timestamp(parsed.updated_at, modified),
        run_mode=parsed.run_mode or "workflow",
        settings=parsed.settings,
        etag=hashlib.sha256(data).hexdigest()[:32],
        source=path.name,
        inputs=inputs,
        input_pins=input_pins,
        output_pins=_outputs(parsed.graph, specs),
        diagnostics=diagnostics,
    )


def _timestamp(value: str | None, fallback: str) -> str:
    """An ISO 8601 time with an offset (the SDK parses it strictly), else ``fallback``."""
    if value:
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            return fallback
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return parsed.isoformat()
    return fallback


def _inputs(
    graph: Graph, specs: Mapping[str, NodeSpec | None]
) -> tuple[dict[str, InputPin], list[dict[str, object]], list[dict[str, object]]]:
    inputs: dict[str, InputPin] = {}
    pins: list[dict[str, object]] = []
    diagnostics: list[dict[str, object]] = []
    for node in graph.nodes:
        spec = specs[node.id]
        if spec is None or not spec.is_input:
            continue
        properties = spec.check_properties(node.data)
        name = properties.get("name")
        value = spec.properties["value"]
        if not isinstance(name, str) or not name:
            diagnostics.append(
                {
                    "severity": "warning",
                    "code": "unnamed_input",
                    "message": f"input node {node.id!r} has no name: no param can reach it",
                    "node_id": node.id,
                }
            )
            continue
        if name in inputs:
            diagnostics.append(
                {
                    "severity": "warning",
                    "code": "duplicate_input",
                    "message": f"input name {name!r} is used by more than one input node",
                    "node_id": node.id,
                    "pin_name": name,
                }
            )
            continue
        inputs[name] = InputPin(node.id, name, spec.node_type, value)
        pin: dict[str, object] = {
            "node_id": node.id,
            "name": name,
            "description": _text(node.data.get("description")),
            "type": type_descriptor(value.plain),
            "required": False,
            "default": json_value(properties.get("value")),
        }
        for bound in ("min", "max"):
            limit = _number(node.data.get(bound))
            if limit is None:
                limit = value.min if bound == "min" else value.max
            if limit is not None:
                pin[bound] = limit
        pins.append(pin)
    return inputs, pins, diagnostics


def _outputs(graph: Graph, specs: Mapping[str, NodeSpec | None]) -> list[dict[str, object]]:
    feeds = {
        edge.target: (edge.source, edge.source_handle)
        for edge in graph.edges
        if edge.target_handle == "value"
    }
    pins: list[dict[str, object]] = []
    for node in graph.nodes:
        spec = specs[node.id]
        if spec is None or not spec.is_output:
            continue
        properties = spec.check_properties(node.data)
        kind = type_descriptor(spec.properties["value"].plain)
        stream = False
        feed = feeds.get(node.id)
        if feed is not None:
            source = specs.get(feed[0])
            if source is not None:
                kind = type_descriptor(source.outputs.get(feed[1]))
                stream = source.kind == "stream"
        pins.append(
            {
                "node_id": node.id,
                "name": _text(properties.get("name")) or node.id,
                "description": _text(node.data.get("description")),
                "type": kind,
                "stream": stream,
            }
        )
    return pins


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
