"""End to end, the calls NodeTool's C# SDK and vvvv package make, in their order.

vvvv: ``GET /api/sdk/v1/capabilities`` (non-default execution options are negotiated
first: every value the SDK will send must be advertised) → ``GET
/api/nodes/metadata?fields=full`` → a node built from its metadata defaults → a
single-node ``run_job`` with ``event_detail=outputs`` (the SDK then sends all three
options, ``persistence=job`` included). Workflows: list them (HTTP, as
``GetWorkflowsAsync`` pages them) and their interfaces → ``run_job`` by id with params.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.server import sdk_shapes as shapes
from tests.server.helpers import running_server
from tests.support.client import connect
from tests.support.workflows import write_workflows

TOKEN = {"Authorization": "Bearer vvvv"}
#: ``RunJobExecutionOptions`` for ``WorkflowExecutionOptions(EventDetail: Outputs)``.
OPTIONS = {"persistence": "job", "event_detail": "outputs", "asset_persistence": "temporary"}


def negotiate(capabilities: dict[str, Any], options: dict[str, str]) -> None:
    """``WorkflowExecutionOptionNegotiator.EnsureSupported``: refuse what is not advertised."""
    supported = capabilities["execution_options"]
    for option, value in options.items():
        assert value in supported[option], f"server does not support {option}={value}"


async def test_vvvv_node_then_workflow(tmp_path: Path) -> None:
    with running_server(
        tokens=("vvvv",),
        store=f"sqlite:///{tmp_path / 'runs.db'}",
        workflows=str(write_workflows(tmp_path / "wf")),
    ) as server:
        async with httpx.AsyncClient(base_url=server.http_url, headers=TOKEN) as http:
            capabilities = (await http.get("/api/sdk/v1/capabilities")).json()
            shapes.check(capabilities, shapes.CAPABILITIES)
            negotiate(capabilities, OPTIONS)
            metadata = (await http.get("/api/nodes/metadata?fields=full")).json()
            shapes.check(metadata, shapes.ListOf(shapes.NODE_METADATA))

            # A vvvv node: one pin per property, initialised from the metadata default.
            concat = next(m for m in metadata if m["node_type"] == "nodetool.text.Concat")
            pins = {prop["name"]: prop["default"] for prop in concat["properties"]}
            pins["a"] = "vvvv"
            node_id = str(uuid.uuid4())
            async with connect(server, headers=TOKEN) as ws:
                job_id = str(uuid.uuid4())
                await ws.command(
                    "run_job",
                    {
                        "type": "run_job_request",
                        "job_type": "workflow",
                        "job_id": job_id,
                        "execution_strategy": "threaded",
                        "workflow_id": node_id,
                        "user_id": "",
                        "auth_token": "vvvv",
                        "graph": {
                            "nodes": [{"id": node_id, "type": concat["node_type"], "data": pins}],
                            "edges": [],
                        },
                        "params": None,
                        "explicit_types": True,
                        "require_terminal_result": True,
                        "execution_options": OPTIONS,
                    },
                )
                frames = await ws.until_terminal(job_id)
            assert frames[0]["message"] == "Job started"
            # event_detail=outputs: no job/node progress frames, only outputs and the terminal.
            assert {f.get("type") for f in frames[1:-1]} <= {"output_update"}
            for update in frames[1:-1]:
                assert (update["output_name"], update["value"]) == ("output", "vvvv")
            assert frames[-1]["status"] == "completed"
            assert frames[-1]["result"]["outputs"] == {
                node_id: {"output": {"type": "string", "value": "vvvv"}}
            }
            # persistence=job made the run durable: the store has it.
            stored = (await http.get(f"/api/jobs/{job_id}")).json()
            assert stored["durable"] is True and stored["status"] == "completed"

            # Workflows: the listing the SDK pages through, then an interface, then a run.
            listing = (await http.get("/api/workflows", params={"limit": 25})).json()
            shapes.check(listing, shapes.WORKFLOW_LIST)
            greet = next(wf for wf in listing["workflows"] if wf["name"] == "Greet")
            interface = (
                await http.get(f"/api/workflows/{greet['id']}/interface", params={"version": 1})
            ).json()
            inputs = {pin["name"]: pin["default"] for pin in interface["inputs"]}
            inputs["name"] = "vvvv"
            async with connect(server, headers=TOKEN) as ws:
                job_id = str(uuid.uuid4())
                await ws.command(
                    "run_job",
                    {
                        "type": "run_job_request",
                        "job_id": job_id,
                        "workflow_id": greet["id"],
                        "graph": None,
                        "params": inputs,
                        "explicit_types": True,
                        "require_terminal_result": True,
                        "execution_options": None,
                    },
                )
                frames = await ws.until_terminal(job_id)
            outputs = [f for f in frames if f.get("type") == "output_update"]
            assert [(f["output_name"], f["value"]) for f in outputs] == [
                ("greeting", "Hello, vvvv")
            ]
            assert frames[-1]["status"] == "completed"
            assert frames[-1]["result"]["outputs"] == {
                "greeting": {"type": "list", "value": [{"type": "string", "value": "Hello, vvvv"}]}
            }
            output_names = [pin["name"] for pin in interface["outputs"]]
            assert list(frames[-1]["result"]["outputs"]) == output_names
