"""The SDK's HTTP API on a real server (PROTOCOL.md §8): every route with auth on and off,
answers shaped as NodeTool's C# SDK deserializes them, bad input refused with a JSON error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import sdk_shapes as shapes
from tests.server.helpers import ServerHandle, running_server
from tests.support.client import connect
from tests.support.frames import is_terminal
from tests.support.graphs import graph, nd
from tests.support.timing import TIMEOUT
from tests.support.workflows import GREET, write_workflows

TOKEN = {"Authorization": "Bearer secret"}
OTHER = {"Authorization": "Bearer other"}


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """Tokens "secret" and "other" (two users), an embedded store, stored workflows."""
    root = tmp_path_factory.mktemp("api")
    with running_server(
        tokens=("secret", "other"),
        store=f"sqlite:///{root / 'runs.db'}",
        workflows=str(write_workflows(root / "workflows")),
        replay_limit=321,
        max_active_runs=77,
        max_asset_bytes=4321,
    ) as handle:
        yield handle


@pytest.fixture(scope="module")
def http(api_server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.http_url, headers=TOKEN, timeout=TIMEOUT) as client:
        yield client


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert a JSON refusal with this status and code; return it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    shapes.check(body, shapes.ERROR)
    assert body["code"] == code and body["detail"] == body["message"]
    return body  # type: ignore[no-any-return]


# -- auth -----------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/api/nodes/metadata?fields=full", None),
    ("GET", "/api/sdk/v1/node-types", None),
    ("GET", "/api/sdk/v1/capabilities", None),
    ("POST", "/api/sdk/v1/preflight", {"workflow_id": "greet", "inputs": {}}),
    ("GET", "/api/workflows", None),
    ("GET", "/api/workflows/greet", None),
    ("GET", "/api/workflows/greet/interface?version=1", None),
    ("GET", "/api/sdk/v1/workflows", None),
    ("POST", "/api/sdk/v1/workflow-interfaces", {"ids": ["greet"], "version": 1}),
    ("GET", "/api/jobs/some-job", None),
    ("POST", "/api/jobs/some-job/cancel", None),
    ("GET", "/api/nothing/here", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_but_health_needs_a_token(
    api_server: ServerHandle, method: str, path: str, body: object
) -> None:
    """No token → 401 "Missing authentication"; a wrong one → 401 "Invalid
    authentication"; ``?api_key=`` is not accepted over HTTP; the right one passes."""
    with httpx.Client(base_url=api_server.http_url, timeout=TIMEOUT) as client:
        missing = client.request(method, path, json=body)
        wrong = client.request(method, path, json=body, headers={"Authorization": "Bearer x"})
        in_url = client.request(method, path + ("&" if "?" in path else "?") + "api_key=secret")
        right = client.request(method, path, json=body, headers=TOKEN)
    assert refused(missing, 401, "UNAUTHORIZED")["message"] == "Missing authentication"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert refused(wrong, 401, "UNAUTHORIZED")["message"] == "Invalid authentication"
    assert in_url.status_code == 401
    assert right.status_code != 401


def test_health_needs_no_token(api_server: ServerHandle) -> None:
    response = httpx.get(api_server.http_url + "/api/health", timeout=TIMEOUT)
    assert response.status_code == 200
    body = response.json()
    shapes.check(body, shapes.HEALTH)
    assert body["status"] == "ok" and body["uptime"] >= 0 and body["version"]


def test_with_auth_off_everything_is_open_to_user_1() -> None:
    with running_server() as server, httpx.Client(base_url=server.http_url) as client:
        capabilities = client.get("/api/sdk/v1/capabilities").json()
        metadata = client.get("/api/nodes/metadata?fields=full")
        listing = client.get("/api/workflows").json()
    assert capabilities["auth_modes"] == ["trusted_local"]
    # No store: durable runs are refused, so the SDK must not be told they work.
    assert capabilities["execution_options"]["persistence"] == ["session"]
    assert metadata.status_code == 200 and len(metadata.json()) > 10
    assert listing == {"workflows": [], "next": None}


# -- nodes ----------------------------------------------------------------------------------


async def test_metadata_is_the_list_nodes_catalog(api_server: ServerHandle) -> None:
    """``?fields=full`` returns every node in the SDK's shape: exactly what ``list_nodes``
    answers over the WebSocket (one catalog)."""
    async with httpx.AsyncClient(base_url=api_server.http_url, headers=TOKEN) as client:
        full = (await client.get("/api/nodes/metadata", params={"fields": "full"})).json()
        slim = (await client.get("/api/nodes/metadata")).json()
        text = (await client.get("/api/nodes/metadata?fields=full&namespace=nodetool.text")).json()
        one = await client.get("/api/nodes/metadata?node_type=nodetool.text.Concat")
        unknown = await client.get("/api/nodes/metadata?node_type=nodetool.text.Nope")
    async with connect(api_server, headers=TOKEN) as ws:
        await ws.command("list_nodes", {"fields": "full"}, request_id="n1")
        listed = (await ws.recv())["result"]["nodes"]
    shapes.check(full, shapes.ListOf(shapes.NODE_METADATA))
    assert full == listed
    assert [meta["node_type"] for meta in slim] == [meta["node_type"] for meta in full]
    assert set(slim[0]) == {"node_type", "title", "description", "namespace"}
    assert text and all(meta["namespace"] == "nodetool.text" for meta in text)
    assert one.json() == next(m for m in full if m["node_type"] == "nodetool.text.Concat")
    assert "nodetool.text.Nope" in refused(unknown, 404, "NOT_FOUND")["message"]


def test_node_type_inventory(http: httpx.Client) -> None:
    first = http.get("/api/sdk/v1/node-types", params={"limit": 2})
    body = first.json()
    shapes.check(body, shapes.INVENTORY)
    assert body["registry_ready"] is True and len(body["types"]) == 2 and body["next_cursor"] == 2
    rest = http.get("/api/sdk/v1/node-types", params={"cursor": 2, "limit": 100}).json()
    assert len(rest["types"]) == body["type_count"] - 2 and rest["next_cursor"] is None
    refused(http.get("/api/sdk/v1/node-types?limit=0"), 400, "INVALID_INPUT")
    refused(http.get("/api/sdk/v1/node-types?cursor=-1"), 400, "INVALID_INPUT")
    refused(http.get("/api/sdk/v1/node-types?cursor=two"), 400, "INVALID_INPUT")


def test_capabilities_advertise_what_this_server_does(
    http: httpx.Client, api_server: ServerHandle
) -> None:
    body = http.get("/api/sdk/v1/capabilities").json()
    shapes.check(body, shapes.CAPABILITIES)
    assert body["protocol_version"] == "1" and body["nodetool_version"].startswith("noderun")
    assert body["auth_modes"] == ["bearer"]
    options = body["execution_options"]
    # The SDK's defaults (persistence=job, asset_persistence=temporary) must be listed.
    assert set(options["persistence"]) == {"session", "job"}
    assert set(options["event_detail"]) == {"full", "outputs", "terminal"}
    assert "temporary" in options["asset_persistence"]
    limits = body["limits"]
    assert limits["max_job_event_replay"] == 321 == api_server.settings.replay_limit
    assert limits["max_queued_jobs"] == 77
    assert limits["max_inline_bytes"] > 0 and limits["max_rpc_batch"] == 100
    # The asset store's limit, and its temporary uploads (the SDK's route for large inputs).
    assert limits["max_upload_bytes"] == 4321 == api_server.settings.max_asset_bytes
    assert body["profiles"]["temporary_asset_upload"] == "available"
    assert body["asset_uri_schemes"] == ["asset"]
    metadata_revision = http.get("/api/sdk/v1/workflows").json()["workflows"][0]
    assert body["registry_revision"] == metadata_revision["registry_revision"]


# -- workflows ------------------------------------------------------------------------------


def test_workflow_list_and_pages(http: httpx.Client) -> None:
    listing = http.get("/api/workflows").json()
    shapes.check(listing, shapes.WORKFLOW_LIST)
    assert [wf["id"] for wf in listing["workflows"]] == ["greet", "sum"]
    assert listing["next"] is None
    first = http.get("/api/workflows", params={"limit": 1}).json()
    assert [wf["id"] for wf in first["workflows"]] == ["greet"] and first["next"] == "1"
    second = http.get("/api/workflows", params={"limit": 1, "cursor": first["next"]}).json()
    assert [wf["id"] for wf in second["workflows"]] == ["sum"] and second["next"] is None
    refused(http.get("/api/workflows?cursor=abc"), 400, "INVALID_INPUT")
    refused(http.get("/api/workflows?limit=many"), 400, "INVALID_INPUT")


def test_one_workflow(http: httpx.Client) -> None:
    body = http.get("/api/workflows/greet").json()
    shapes.check(body, shapes.WORKFLOW)
    assert body["graph"] == GREET["graph"]  # as the file has it, UI keys included
    assert (body["name"], body["tags"], body["run_mode"]) == ("Greet", ["demo", "text"], "workflow")
    assert body["input_schema"]["properties"]["name"] == {
        "title": "name",
        "description": "who",
        "type": "string",
        "default": "world",
    }
    assert body["output_schema"]["properties"]["greeting"]["type"] == "string"
    refused(http.get("/api/workflows/nope"), 404, "WORKFLOW_NOT_FOUND")


def test_interfaces(http: httpx.Client) -> None:
    one = http.get("/api/workflows/sum/interface", params={"version": 1}).json()
    shapes.check(one, shapes.INTERFACE)
    assert (one["workflow_id"], one["source"], one["version"]) == ("sum", "server", 1)
    assert [pin["name"] for pin in one["inputs"]] == ["x", "y"]
    assert one["inputs"][0]["type"]["type"] == "int"
    assert [pin["name"] for pin in one["outputs"]] == ["total"]
    refused(
        http.get("/api/workflows/sum/interface?version=2"),
        400,
        "UNSUPPORTED_WORKFLOW_INTERFACE_VERSION",
    )
    refused(http.get("/api/workflows/nope/interface?version=1"), 404, "WORKFLOW_NOT_FOUND")
    batch = http.post(
        "/api/sdk/v1/workflow-interfaces", json={"ids": ["sum", "nope", "greet"], "version": 1}
    ).json()
    shapes.check(batch, shapes.INTERFACES)
    assert [item["workflow_id"] for item in batch["interfaces"]] == ["sum", "greet"]
    assert batch["errors"] == [
        {
            "workflow_id": "nope",
            "code": "workflow_not_found",
            "message": "workflow 'nope' not found",
        }
    ]
    bad_bodies: list[dict[str, object]] = [
        {"ids": []},
        {"ids": ["a", "a"]},
        {"ids": ["a"], "version": 2},
        {"ids": [""]},
    ]
    for bad in bad_bodies:
        refused(http.post("/api/sdk/v1/workflow-interfaces", json=bad), 400, "INVALID_INPUT")
    refused(http.post("/api/sdk/v1/workflow-interfaces", json={"ids": "a"}), 400, "INVALID_INPUT")
    refused(
        http.post(
            "/api/sdk/v1/workflow-interfaces",
            content=b"{ids",
            headers={"content-type": "application/json"},
        ),
        400,
        "INVALID_JSON",
    )


def test_workflow_summaries(http: httpx.Client) -> None:
    body = http.get("/api/sdk/v1/workflows").json()
    shapes.check(body, shapes.SUMMARIES)
    assert [(wf["id"], wf["name"]) for wf in body["workflows"]] == [
        ("greet", "Greet"),
        ("sum", "Sum"),
    ]
    assert body["workflows"][0]["revision"] == http.get("/api/workflows/greet").json()["etag"]
    refused(http.get("/api/sdk/v1/workflows?limit=0"), 400, "INVALID_INPUT")
    refused(http.get("/api/sdk/v1/workflows?limit=101"), 400, "INVALID_INPUT")


def test_unknown_api_route_is_a_json_404(http: httpx.Client) -> None:
    assert "/api/nothing" in refused(http.get("/api/nothing"), 404, "NOT_FOUND")["message"]


# -- preflight ------------------------------------------------------------------------------


async def run_error(server: ServerHandle, **run: Any) -> str:
    """The ``error`` a real ``run_job`` ends ``failed`` with."""
    async with connect(server, headers=TOKEN) as ws:
        job_id = await ws.run_job(run.pop("nodes", None), **run)
        terminal = (await ws.until_terminal(job_id))[-1]
    assert terminal["status"] == "failed"
    return str(terminal["error"])


async def test_preflight_reports_what_a_run_would_fail_with(api_server: ServerHandle) -> None:
    bad_graph = graph(nd("n1", "nodetool.text.Nope"))
    async with httpx.AsyncClient(base_url=api_server.http_url, headers=TOKEN) as client:
        ok = (
            await client.post(
                "/api/sdk/v1/preflight",
                json={
                    "workflow_id": "sum",
                    "interface_version": 1,
                    "level": "static",
                    "inputs": {"x": 4},
                },
            )
        ).json()
        wrong_type = (
            await client.post(
                "/api/sdk/v1/preflight", json={"workflow_id": "sum", "inputs": {"x": "four"}}
            )
        ).json()
        unknown_input = (
            await client.post(
                "/api/sdk/v1/preflight", json={"workflow_id": "sum", "inputs": {"q": 1}}
            )
        ).json()
        graph_form = (await client.post("/api/sdk/v1/preflight", json={"graph": bad_graph})).json()
        missing = await client.post("/api/sdk/v1/preflight", json={"workflow_id": "nope"})
        malformed = await client.post("/api/sdk/v1/preflight", content=b'{"workflow_id":')
        wrong_shape = await client.post(
            "/api/sdk/v1/preflight", json={"workflow_id": "sum", "inputs": 5}
        )
        bad_version = await client.post(
            "/api/sdk/v1/preflight", json={"workflow_id": "sum", "interface_version": 2}
        )
        bad_level = await client.post(
            "/api/sdk/v1/preflight", json={"workflow_id": "sum", "level": "x"}
        )
    for body in (ok, wrong_type, unknown_input, graph_form):
        shapes.check(body, shapes.PREFLIGHT)
    assert ok["runnable"] is True and ok["issues"] == [] and ok["workflow_id"] == "sum"
    assert ok["workflow_etag"] and ok["level"] == "static"
    assert wrong_type["runnable"] is False
    [issue] = wrong_type["issues"]
    assert (issue["code"], issue["node_id"], issue["pin_name"]) == ("invalid_input", "x", "x")
    assert issue["message"] == await run_error(
        api_server, nodes=None, workflow_id="sum", params={"x": "four"}
    )
    [unknown] = unknown_input["issues"]
    assert unknown["code"] == "unknown_input"
    assert unknown["message"] == await run_error(
        api_server, nodes=None, workflow_id="sum", params={"q": 1}
    )
    [invalid] = graph_form["issues"]
    assert invalid["code"] == "invalid_graph" and invalid["node_id"] == "n1"
    assert invalid["message"] == await run_error(api_server, nodes=bad_graph)
    refused(missing, 404, "WORKFLOW_NOT_FOUND")
    refused(malformed, 400, "INVALID_JSON")
    refused(wrong_shape, 400, "INVALID_INPUT")
    refused(bad_level, 400, "INVALID_INPUT")
    refused(bad_version, 400, "INVALID_INPUT")


# -- jobs -----------------------------------------------------------------------------------


async def test_jobs_of_this_server_ephemeral_and_durable(api_server: ServerHandle) -> None:
    """A finished run of either kind is readable by its user, "not found" to another."""
    concat = graph(nd("n1", "nodetool.text.Concat", a="a", b="b"))
    async with connect(api_server, headers=TOKEN) as ws:
        ephemeral = await ws.run_job(concat)
        await ws.until_terminal(ephemeral)
        durable = await ws.run_job(concat, durable=True, job_id=ephemeral + "-durable")
        await ws.until_terminal(durable)
    async with httpx.AsyncClient(base_url=api_server.http_url, headers=TOKEN) as client:
        first = (await client.get(f"/api/jobs/{ephemeral}")).json()
        second = (await client.get(f"/api/jobs/{durable}")).json()
        other = await client.get(f"/api/jobs/{ephemeral}", headers=OTHER)
        unknown = await client.get("/api/jobs/nope")
    for body, durability in ((first, False), (second, True)):
        shapes.check(body, shapes.JOB)
        assert body["status"] == "completed" and body["progress"] == 1.0
        assert body["outputs"] == {"n1": {"output": "ab"}} and body["error"] is None
        assert body["durable"] is durability and body["workflow_id"] == "wf"
        assert body["finished_at"] >= body["created_at"]
    refused(other, 404, "NOT_FOUND")
    refused(unknown, 404, "NOT_FOUND")


async def test_cancel_a_running_job(api_server: ServerHandle) -> None:
    slow = graph(nd("s", "noderun.debug.Sleep", seconds=TIMEOUT * 4))
    async with (
        connect(api_server, headers=TOKEN) as ws,
        httpx.AsyncClient(base_url=api_server.http_url, headers=TOKEN) as client,
    ):
        job_id = await ws.run_job(slow)
        await ws.recv_until(
            lambda f: f.get("type") == "node_update" and f.get("status") == "running"
        )
        assert (await client.post(f"/api/jobs/{job_id}/cancel", headers=OTHER)).status_code == 404
        running = (await client.get(f"/api/jobs/{job_id}")).json()
        cancel = (await client.post(f"/api/jobs/{job_id}/cancel")).json()
        frames = await ws.until_terminal(job_id)
        again = (await client.post(f"/api/jobs/{job_id}/cancel")).json()
        after = (await client.get(f"/api/jobs/{job_id}")).json()
        unknown = await client.post("/api/jobs/nope/cancel")
    assert running["status"] == "running" and running["completed_at"] is None
    assert running["progress"] == 0.0
    assert cancel["cancel_requested"] is True and cancel["job_id"] == job_id
    assert frames[-1]["status"] == "cancelled"
    assert again == {
        "job_id": job_id,
        "status": "cancelled",
        "cancel_requested": False,
        "message": "Job already finished",
    }
    assert after["status"] == "cancelled"
    refused(unknown, 404, "NOT_FOUND")


async def test_a_durable_job_is_read_from_the_store_after_a_restart(tmp_path: Path) -> None:
    """A server that did not run the job answers from the store (and only to its user)."""
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    concat = graph(nd("n1", "nodetool.text.Concat", a="x", b="y"))
    with running_server(tokens=("secret", "other"), store=store) as first:
        async with connect(first, headers=TOKEN) as ws:
            await ws.run_job(concat, durable=True, job_id="kept")
            await ws.recv_until(lambda frame: is_terminal(frame, "kept"))
    with running_server(tokens=("secret", "other"), store=store) as second:
        async with httpx.AsyncClient(base_url=second.http_url, headers=TOKEN) as client:
            body = (await client.get("/api/jobs/kept")).json()
            other = await client.get("/api/jobs/kept", headers=OTHER)
            cancel = (await client.post("/api/jobs/kept/cancel")).json()
    shapes.check(body, shapes.JOB)
    assert body["status"] == "completed" and body["durable"] is True
    assert body["result"] == {"outputs": {"n1": {"output": "xy"}}}
    refused(other, 404, "NOT_FOUND")
    assert cancel["cancel_requested"] is False and cancel["status"] == "completed"


def test_workflows_setting_names_a_directory(tmp_path: Path) -> None:
    """A missing ``--workflows`` directory stops start-up with a clear error."""
    from noderun.server.app import create_app
    from noderun.server.settings import Settings

    with pytest.raises(ValueError, match="does not exist"):
        create_app(Settings(workflows=str(tmp_path / "missing"), store="none"))
