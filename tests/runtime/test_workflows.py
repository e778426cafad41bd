"""Stored workflows: loading a directory (bad files skipped with one log line each),
interfaces derived from input and output nodes, params checked before a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from noderun.runtime.errors import WorkflowError
from noderun.runtime.registry import default_registry
from noderun.runtime.workflows import WorkflowCatalog, load_workflows, run_error
from tests.support.workflows import write_workflows


@pytest.fixture
def catalog(tmp_path: Path) -> WorkflowCatalog:
    return load_workflows(write_workflows(tmp_path / "wf"), default_registry())


def test_valid_files_load_in_file_order_and_bad_ones_are_skipped(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        catalog = load_workflows(write_workflows(tmp_path / "wf"), default_registry())
    assert [wf.id for wf in catalog] == ["greet", "sum"]
    skipped = {
        Path(str(entry["file"])).name: entry
        for entry in logs
        if entry["event"] == "workflows.skipped"
    }
    assert set(skipped) == {"broken.json", "unknown_node.json", "zz_duplicate.json"}
    assert "not a NodeTool workflow" in str(skipped["broken.json"]["error"])
    assert "unknown node type 'nodetool.image.Nope'" in str(skipped["unknown_node.json"]["error"])
    assert "duplicate workflow id 'greet'" in str(skipped["zz_duplicate.json"]["error"])
    assert all(entry["log_level"] == "warning" for entry in skipped.values())


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_workflows(tmp_path / "nope", default_registry())


def test_metadata_and_timestamps(catalog: WorkflowCatalog) -> None:
    greet = catalog.get("greet")
    assert greet is not None
    assert (greet.name, greet.description, greet.tags) == ("Greet", "Says hello", ("demo", "text"))
    assert greet.created_at == "2026-01-02T03:04:05+00:00"
    assert greet.updated_at == "2026-01-03T03:04:05+00:00"  # no offset in the file: UTC
    summed = catalog.get("sum")
    assert summed is not None and summed.name == "Sum"  # id from the file name
    assert summed.created_at.endswith("+00:00")  # no time in the file: its mtime
    assert len(greet.etag) == 32 and greet.etag != summed.etag


def test_interface_comes_from_input_and_output_nodes(catalog: WorkflowCatalog) -> None:
    greet = catalog.get("greet")
    assert greet is not None
    assert greet.input_pins == [
        {
            "node_id": "in",
            "name": "name",
            "description": "who",
            "type": {"type": "str", "optional": False, "type_args": []},
            "required": False,
            "default": "world",
        }
    ]
    # The output's type is the type of the output feeding it.
    assert greet.output_pins == [
        {
            "node_id": "out",
            "name": "greeting",
            "description": "the greeting",
            "type": {"type": "str", "optional": False, "type_args": []},
            "stream": False,
        }
    ]
    summed = catalog.get("sum")
    assert summed is not None
    pins = {pin["name"]: pin for pin in summed.input_pins}
    assert pins["y"]["min"] == 0.0 and pins["y"]["max"] == 100.0 and pins["y"]["default"] == 2
    assert "min" not in pins["x"]


def test_params_are_checked_against_the_inputs(catalog: WorkflowCatalog) -> None:
    graph = catalog.graph_for("sum", {"x": 5})
    assert [node.id for node in graph.nodes] == ["x", "y", "add", "total"]
    with pytest.raises(WorkflowError) as unknown:
        catalog.graph_for("sum", {"z": 1})
    assert unknown.value.code == "unknown_input" and unknown.value.input == "z"
    assert run_error(unknown.value) == "workflow 'sum' has no input 'z' (its inputs: 'x', 'y')"
    with pytest.raises(WorkflowError) as wrong:
        catalog.graph_for("sum", {"x": "five"})
    assert wrong.value.code == "invalid_input" and wrong.value.node_id == "x"
    assert "input 'x'" in run_error(wrong.value) and "int" in run_error(wrong.value)
    with pytest.raises(WorkflowError) as missing:
        catalog.graph_for("nope", None)
    assert missing.value.code == "workflow_not_found"
    assert run_error(missing.value) == "no graph given and no stored workflow 'nope'"
