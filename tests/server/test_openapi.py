"""The OpenAPI document of the HTTP routes: valid, complete (every route of the app is in
it), and true: every documented route and status, answered by a real server, fits it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import msgspec
import openapi_spec_validator
import pytest
from starlette.routing import Route, WebSocketRoute

from noderun.protocol.schema import asyncapi
from noderun.runtime.catalog import NodeCatalog
from noderun.runtime.registry import default_registry
from noderun.server.answers import NodeMetadata, NodeTypeInventory
from noderun.server.app import create_app
from noderun.server.http_api import QUERIES, query_fields
from noderun.server.openapi import openapi, openapi_path
from noderun.server.settings import Settings
from tests.server.helpers import ServerHandle, running_server
from tests.support.client import connect
from tests.support.graphs import graph, nd
from tests.support.openapi import check_answer, document
from tests.support.timing import TIMEOUT
from tests.support.workflows import write_workflows

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_document_is_openapi_3_1_with_valid_schemas_and_resolving_refs() -> None:
    doc = openapi("0.1.0")
    assert doc["openapi"] == "3.1.0"
    openapi_spec_validator.validate(doc)
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema({**schema, "$id": name})
    for ref in _refs(doc):
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, ref
            target = target[part]
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_every_route_of_the_app_is_documented_and_nothing_else() -> None:
    """A new route without its operation in noderun.server.openapi fails here; /ws is the
    AsyncAPI document's channel."""
    app = create_app(Settings(store="none"), default_registry())
    routed: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            channels = asyncapi("0.1.0")["channels"].values()
            assert route.path in {channel["address"] for channel in channels}
            continue
        assert isinstance(route, Route), route
        methods = (route.methods or set()) - {"HEAD"}
        routed |= {(openapi_path(route.path), method.lower()) for method in methods}
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert routed == documented
    # Each route that reads its query into a struct documents that struct's parameters.
    for path, kind in QUERIES.items():
        parameters = document()["paths"][openapi_path(path)]["get"]["parameters"]
        named = {parameter["name"] for parameter in parameters if parameter["in"] == "query"}
        assert named == {field.encode_name for field in query_fields(kind)}


def test_the_node_catalog_converts_into_the_described_structs() -> None:
    """The runtime builds node metadata and the type inventory as dicts; the document
    describes them with structs (the inventory's forbid unknown keys), so a key or a type
    changed on one side only fails here."""
    nodes = NodeCatalog(default_registry(debug_nodes=True))
    msgspec.convert(nodes.nodes, list[NodeMetadata])
    msgspec.convert(nodes.inventory(0, 100), NodeTypeInventory)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    directory = write_workflows(tmp_path_factory.mktemp("workflows"))
    with running_server(tokens=(TOKEN,), workflows=str(directory), max_asset_bytes=1024) as handle:
        yield handle


def _upload() -> dict[str, Any]:
    return {
        "files": {"file": ("hello.txt", b"hello", "text/plain")},
        "data": {"json": json.dumps({"name": "greeting.txt", "metadata": {"n": 1}})},
    }


async def test_every_documented_route_and_status_answers_as_documented(
    served: ServerHandle,
) -> None:
    """Ask a real server for each documented (route, status) and check each answer; the
    few a running server cannot give are asked of an app whose lifespan has not run."""
    seen: set[tuple[str, str, int]] = set()

    def note(response: httpx.Response) -> httpx.Response:
        request = response.request
        seen.add(
            check_answer(
                request.method,
                request.url.path,
                response.status_code,
                response.headers.get("content-type", ""),
                response.content,
            )
        )
        return response

    big = b"x" * (served.settings.max_asset_bytes + 1)
    async with (
        httpx.AsyncClient(base_url=served.http_url, headers=AUTH, timeout=TIMEOUT) as client,
        httpx.AsyncClient(base_url=served.http_url, timeout=TIMEOUT) as anonymous,
    ):
        for path in ("/livez", "/readyz", "/version", "/health", "/metrics", "/api/health"):
            note(await anonymous.get(path))
        blocked = True

        async def not_yet() -> str | None:
            return "a test says not yet" if blocked else None

        served.app.state.lifecycle.add_readiness_check("test", not_yet)
        note(await anonymous.get("/readyz"))
        blocked = False
        # Assets.
        for path in ("/api/assets", "/api/assets/", "/api/sdk/v1/assets/temporary"):
            note(await client.post(path, **_upload()))
            note(await anonymous.post(path, **_upload()))
            note(await client.post(path, content=b"not a form"))
            note(await client.post(path, files={"file": ("big.bin", big, "text/plain")}))
        asset_id = note(await client.post("/api/assets", **_upload())).json()["id"]
        for path in (f"/api/assets/{asset_id}", f"/api/assets/{asset_id}/download"):
            note(await client.get(path))
            note(await anonymous.get(path))
            note(await client.get(path.replace(asset_id, "missing")))
        # Nodes.
        for query in ("", "?fields=full", "?namespace=lib.math", "?node_type=lib.math.Add"):
            note(await client.get("/api/nodes/metadata" + query))
        note(await client.get("/api/nodes/metadata?node_type=no.such.Node"))
        note(await anonymous.get("/api/nodes/metadata"))
        for query in ("", "?cursor=1&limit=2", "?limit=0"):
            note(await client.get("/api/sdk/v1/node-types" + query))
        note(await anonymous.get("/api/sdk/v1/node-types"))
        note(await client.get("/api/sdk/v1/capabilities"))
        note(await anonymous.get("/api/sdk/v1/capabilities"))
        # Preflight.
        preflight = "/api/sdk/v1/preflight"
        note(await client.post(preflight, json={"workflow_id": "greet", "inputs": {"name": "x"}}))
        note(await client.post(preflight, json={"graph": graph(nd("a", "no.such.Node"))}))
        note(await client.post(preflight, json={"workflow_id": "missing"}))
        note(await client.post(preflight, content=b"{"))
        note(await anonymous.post(preflight, json={}))
        # Workflows.
        for path in ("/api/workflows", "/api/sdk/v1/workflows"):
            note(await client.get(path + "?limit=1"))
            note(await client.get(path + "?cursor=x"))
            note(await anonymous.get(path))
        for path in ("/api/workflows/greet", "/api/workflows/greet/interface"):
            note(await client.get(path))
            note(await client.get(path.replace("greet", "missing")))
            note(await anonymous.get(path))
        note(await client.get("/api/workflows/greet/interface?version=2"))
        interfaces = "/api/sdk/v1/workflow-interfaces"
        note(await client.post(interfaces, json={"ids": ["greet", "missing"]}))
        note(await client.post(interfaces, json={"ids": []}))
        note(await anonymous.post(interfaces, json={"ids": ["greet"]}))
        # Jobs.
        for path in ("/api/jobs/ghost", "/api/jobs/ghost/cancel"):
            method = client.post if path.endswith("cancel") else client.get
            note(await method(path))
            note(await (anonymous.post if path.endswith("cancel") else anonymous.get)(path))
        note(await client.get("/api/no/such/route"))
        note(await anonymous.get("/api/no/such/route"))
    job_id = await _finished_job(served)
    async with httpx.AsyncClient(base_url=served.http_url, headers=AUTH) as client:
        note(await client.get(f"/api/jobs/{job_id}"))
        note(await client.post(f"/api/jobs/{job_id}/cancel"))
    # Not started: what a server answers before its lifespan has run.
    unstarted = create_app(Settings(store="none"), default_registry())
    transport = httpx.ASGITransport(app=unstarted)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for path in ("/health", "/api/health"):
            note(await client.get(path))
        note(await client.get("/api/jobs/ghost"))
        note(await client.post("/api/jobs/ghost/cancel"))
    documented = {
        (path, method, int(status))
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    }
    assert documented - seen == set()


async def _finished_job(server: ServerHandle) -> str:
    async with connect(server, headers=AUTH) as ws:
        job_id = await ws.run_job(graph(nd("a", "lib.math.Add", a=1, b=2)))
        await ws.until_terminal(job_id)
    return job_id


def test_noderun_schema_openapi_prints_the_document() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "noderun", "schema", "--openapi"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == json.loads(json.dumps(openapi(_version())))


def _version() -> str:
    from noderun.server.version import VERSION

    return VERSION
