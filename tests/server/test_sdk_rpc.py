"""The SDK's WebSocket RPCs (PROTOCOL.md §2.2, §8) and running a stored workflow by id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.server import sdk_shapes as shapes
from tests.server.helpers import ServerHandle, running_server
from tests.support.client import Client, connect
from tests.support.frames import Frame
from tests.support.workflows import write_workflows


@pytest.fixture(scope="module")
def wf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("rpc")
    with running_server(
        store=f"sqlite:///{root / 'runs.db'}", workflows=str(write_workflows(root / "wf"))
    ) as handle:
        yield handle


async def rpc(
    client: Client, command: str, data: dict[str, Any] | None = None, *, text: bool = False
) -> Frame:
    await client.command(command, data or {}, request_id=f"r-{command}", text=text)
    answer = await client.recv()
    assert (answer["type"], answer["request_id"], answer["command"]) == (
        "rpc_response",
        f"r-{command}",
        command,
    )
    return answer


def rpc_error(answer: Frame, code: str, api_code: str) -> str:
    assert "result" not in answer
    error = answer["error"]
    assert (error["code"], error["apiCode"], error["retryable"]) == (code, api_code, False)
    return str(error["message"])


async def test_discovery_rpcs(wf_server: ServerHandle) -> None:
    async with connect(wf_server) as client:
        capabilities = await rpc(client, "get_capabilities")
        inventory = await rpc(client, "get_node_type_inventory", {"cursor": 0, "limit": 5})
        bad_page = await rpc(client, "get_node_type_inventory", {"limit": 500})
        node = await rpc(client, "get_node", {"node_type": "lib.math.Add"})
        text_mode = await rpc(client, "get_capabilities", text=True)
    shapes.check(capabilities["result"], shapes.CAPABILITIES)
    assert text_mode["result"]["protocol_version"] == "1" and client.last_text is True
    shapes.check(inventory["result"], shapes.INVENTORY)
    assert len(inventory["result"]["types"]) == 5
    rpc_error(bad_page, "invalid_input", "INVALID_INPUT")
    shapes.check(node["result"], shapes.NODE_METADATA)


async def test_workflow_rpcs(wf_server: ServerHandle) -> None:
    async with connect(wf_server) as client:
        listing = await rpc(client, "list_workflows")
        one = await rpc(client, "get_workflow", {"id": "greet"})
        missing = await rpc(client, "get_workflow", {"id": "nope"})
        no_id = await rpc(client, "get_workflow")
        summaries = await rpc(client, "list_workflow_summaries", {"limit": 1})
        page_two = await rpc(
            client, "list_workflow_summaries", {"limit": 1, "cursor": summaries["result"]["next"]}
        )
        interface = await rpc(client, "get_workflow_interface", {"id": "greet", "version": 1})
        wrong_version = await rpc(client, "get_workflow_interface", {"id": "greet", "version": 3})
        batch = await rpc(client, "get_workflow_interfaces", {"ids": ["greet", "x"], "version": 1})
        too_many = await rpc(
            client, "get_workflow_interfaces", {"ids": [str(i) for i in range(101)]}
        )
    shapes.check(listing["result"], shapes.WORKFLOW_LIST)
    assert [wf["id"] for wf in listing["result"]["workflows"]] == ["greet", "sum"]
    shapes.check(one["result"], shapes.WORKFLOW)
    assert one["result"]["name"] == "Greet"
    assert "'nope'" in rpc_error(missing, "not_found", "WORKFLOW_NOT_FOUND")
    rpc_error(no_id, "invalid_input", "INVALID_INPUT")
    shapes.check(summaries["result"], shapes.SUMMARIES)
    assert [wf["id"] for wf in summaries["result"]["workflows"]] == ["greet"]
    assert [wf["id"] for wf in page_two["result"]["workflows"]] == ["sum"]
    assert page_two["result"]["next"] is None
    shapes.check(interface["result"], shapes.INTERFACE)
    assert interface["result"]["inputs"][0]["name"] == "name"
    rpc_error(wrong_version, "invalid_input", "UNSUPPORTED_WORKFLOW_INTERFACE_VERSION")
    shapes.check(batch["result"], shapes.INTERFACES)
    assert [e["workflow_id"] for e in batch["result"]["errors"]] == ["x"]
    rpc_error(too_many, "invalid_input", "INVALID_INPUT")


async def test_preflight_rpc(wf_server: ServerHandle) -> None:
    async with connect(wf_server) as client:
        ok = await rpc(client, "preflight_workflow", {"workflow_id": "sum", "inputs": {"x": 3}})
        bad = await rpc(client, "preflight_workflow", {"workflow_id": "sum", "inputs": {"x": []}})
    shapes.check(ok["result"], shapes.PREFLIGHT)
    assert ok["result"]["runnable"] is True
    assert bad["result"]["runnable"] is False
    assert bad["result"]["issues"][0]["code"] == "invalid_input"


async def test_malformed_rpc_data_is_an_invalid_command_with_its_request_id(
    wf_server: ServerHandle,
) -> None:
    async with connect(wf_server) as client:
        await client.command("get_workflow_interfaces", {"ids": 5}, request_id="bad-1")
        answer = await client.recv()
        await client.command("get_node_type_inventory", {"cursor": "x"}, request_id="bad-2")
        second = await client.recv()
        alive = await rpc(client, "list_workflows")
    assert (answer["error"], answer["request_id"]) == ("invalid_command", "bad-1")
    assert "get_workflow_interfaces" in answer["details"]
    assert (second["error"], second["request_id"]) == ("invalid_command", "bad-2")
    assert "result" in alive


# -- running a stored workflow ----------------------------------------------------------------


async def run_stored(
    server: ServerHandle,
    workflow_id: str,
    params: dict[str, Any] | None,
    *,
    persistence: str = "session",
) -> list[Frame]:
    """``run_job`` as the SDK sends it for a workflow: an id, no graph, params."""
    async with connect(server) as client:
        await client.command(
            "run_job",
            {
                "type": "run_job_request",
                "job_id": f"job-{workflow_id}-{persistence}-{len(params or {})}",
                "workflow_id": workflow_id,
                "graph": None,
                "params": params,
                "explicit_types": False,
                "require_terminal_result": True,
                "execution_options": {"persistence": persistence, "event_detail": "full"},
            },
        )
        ack = await client.recv()
        assert ack["message"] == "Job started" and ack["workflow_id"] == workflow_id
        return await client.until_terminal(ack["job_id"])


async def test_run_a_stored_workflow_by_id(wf_server: ServerHandle) -> None:
    greeted = await run_stored(wf_server, "greet", {"name": "Ada"})
    assert greeted[-1]["status"] == "completed"
    assert greeted[-1]["result"] == {"outputs": {"greeting": ["Hello, Ada"]}}
    assert all(frame["workflow_id"] == "greet" for frame in greeted)
    defaults = await run_stored(wf_server, "sum", None, persistence="job")
    assert defaults[-1]["result"] == {"outputs": {"total": [3]}}
    summed = await run_stored(wf_server, "sum", {"x": 40})
    assert summed[-1]["result"] == {"outputs": {"total": [42]}}


@pytest.mark.parametrize(
    ("workflow_id", "params", "error"),
    [
        ("sum", {"z": 1}, "workflow 'sum' has no input 'z' (its inputs: 'x', 'y')"),
        ("sum", {"x": "forty"}, "workflow 'sum': input 'x': Expected `int`, got `str`"),
        ("nope", {}, "no graph given and no stored workflow 'nope'"),
    ],
)
async def test_a_bad_stored_run_fails_before_anything_runs(
    wf_server: ServerHandle, workflow_id: str, params: dict[str, Any], error: str
) -> None:
    frames = await run_stored(wf_server, workflow_id, params)
    assert frames[-1]["status"] == "failed"
    assert frames[-1]["error"] == error
    assert not [frame for frame in frames if frame.get("type") == "node_update"]


async def test_without_a_workflows_directory_a_run_by_id_fails_clearly() -> None:
    with running_server() as server:
        frames = await run_stored(server, "greet", {})
    assert frames[-1]["error"] == "no graph given and no stored workflow 'greet'"
