"""Media between clients, the asset store and NodeTool workers, and auth around worker
nodes, over a real server WebSocket and HTTP API with tokens."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.nodetool.test_server import DEMO, nodetool_server, run
from tests.server.helpers import ServerHandle
from tests.server.test_assets_api import ALICE, BOB, request, upload
from tests.server.test_endpoint import closed_with
from tests.support.client import connect
from tests.support.graphs import graph, nd
from tests.support.timing import START_TIMEOUT

pytestmark = pytest.mark.timeout(120)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(97))


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with nodetool_server(tokens=(ALICE, BOB)) as handle:
        yield handle


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def size_of(image: object) -> dict[str, object]:
    return graph(nd("size", DEMO + "ImageSize", image=image))


async def test_an_uploaded_asset_reaches_the_worker_node_as_its_bytes(
    server: ServerHandle,
) -> None:
    reply = upload(server, PNG, filename="dot.png", file_type="image/png")
    assert reply.status == 200, reply.body
    asset = reply.json()
    refs = [
        {"type": "image", "uri": f"asset://{asset['id']}"},
        {"type": "image", "uri": f"asset://{asset['id']}.png", "data": None},
        {"type": "image", "uri": "", "asset_id": asset["id"]},
        {"type": "image", "uri": f"{server.http_url}/api/assets/{asset['id']}/download"},
    ]
    async with connect(server, headers=bearer(ALICE)) as client:
        results = [(await run(client, size_of(ref)))[-1] for ref in refs]
        text = (await run(client, size_of(refs[0]), text=True))[-1]
    for terminal in [*results, text]:
        assert terminal["status"] == "completed", terminal
        assert terminal["result"] == {"outputs": {"size": {"output": len(PNG)}}}


async def test_another_users_asset_fails_the_node_naming_the_input(server: ServerHandle) -> None:
    asset = upload(server, PNG, token=BOB, filename="dot.png", file_type="image/png").json()
    async with connect(server, headers=bearer(ALICE)) as client:
        theirs = (await run(client, size_of({"type": "image", "asset_id": asset["id"]})))[-1]
        missing = (await run(client, size_of({"type": "image", "uri": "asset://nope"})))[-1]
    for terminal, asset_id in ((theirs, asset["id"]), (missing, "nope")):
        assert terminal["status"] == "failed", terminal
        assert "'image'" in terminal["error"] and asset_id in terminal["error"]
        assert "not found for this user" in terminal["error"]


async def test_base64_media_from_a_text_client_is_a_blob_and_bad_base64_fails(
    server: ServerHandle,
) -> None:
    encoded = base64.b64encode(PNG).decode()
    async with connect(server, headers=bearer(ALICE)) as client:
        good = await run(client, size_of({"type": "image", "data": encoded}), text=True)
        bad = await run(client, size_of({"type": "image", "data": "not base64!"}), text=True)
    assert good[-1]["result"] == {"outputs": {"size": {"output": len(PNG)}}}
    assert bad[-1]["status"] == "failed"
    assert "'image'" in bad[-1]["error"] and "not base64" in bad[-1]["error"]


async def test_a_data_uri_from_a_text_client_is_a_blob_and_a_bad_one_fails(
    server: ServerHandle,
) -> None:
    """The reverse of the text mode's media outputs: a ``data:`` URI (in ``uri``, as a text
    client gets an output back, or in ``data``) is the input's bytes."""
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    async with connect(server, headers=bearer(ALICE)) as client:
        # What a text client got for Pixel's output, sent back as ImageSize's input.
        pixel = (await run(client, graph(nd("p", DEMO + "Pixel", level=3)), text=True))[-1]
        returned = pixel["result"]["outputs"]["p"]["output"]
        round_trip = (await run(client, size_of(returned), text=True))[-1]
        in_uri = (await run(client, size_of({"type": "image", "uri": uri}), text=True))[-1]
        in_data = (await run(client, size_of({"type": "image", "data": uri}), text=True))[-1]
        bad = [
            (await run(client, size_of({"type": "image", "uri": bad_uri}), text=True))[-1]
            for bad_uri in ("data:image/png;base64,not base64!", "data:image/png;base64")
        ]
    assert returned["uri"].startswith("data:image/png;base64,") and returned["data"] is None
    png_size = len(base64.b64decode(returned["uri"].partition(",")[2]))
    assert round_trip["result"] == {"outputs": {"size": {"output": png_size}}}
    for terminal in (in_uri, in_data):
        assert terminal["result"] == {"outputs": {"size": {"output": len(PNG)}}}, terminal
    for terminal in bad:
        assert terminal["status"] == "failed", terminal
        assert "'image'" in terminal["error"] and "bad data: URI" in terminal["error"]


async def test_worker_nodes_and_their_runs_are_behind_the_servers_tokens(
    server: ServerHandle,
) -> None:
    """Auth is the server's, for worker nodes as for any other: no token, no socket and no
    node listing; a run of a worker node is its user's (another user's token finds no such
    job); secrets come from the server's environment whoever runs the node."""
    assert await closed_with(server) == (1008, "Missing authentication")
    assert await closed_with(server, headers=bearer("nope")) == (1008, "Invalid authentication")
    assert request(server, "GET", "/api/nodes/metadata").status == 401
    listed = request(server, "GET", "/api/nodes/metadata", token=BOB)
    assert listed.status == 200
    assert DEMO + "Shout" in {meta["node_type"] for meta in listed.json()}
    async with connect(server, headers=bearer(ALICE)) as client:
        job_id = await client.run_job(graph(nd("p", DEMO + "Pixel", level=9)))
        pixel = (await client.until_terminal(job_id, START_TIMEOUT))[-1]
        secret = (await run(client, graph(nd("s", DEMO + "Secret"))))[-1]
    assert pixel["status"] == "completed", pixel
    assert secret["result"] == {"outputs": {"s": {"output": "from-the-server"}}}
    mine = request(server, "GET", f"/api/jobs/{job_id}", token=ALICE)
    assert mine.status == 200
    assert request(server, "GET", f"/api/jobs/{job_id}", token=BOB).status == 404
    # JSON over HTTP: the image as a text client gets it on /ws.
    image = pixel["result"]["outputs"]["p"]["output"]
    uri = "data:image/png;base64," + base64.b64encode(image["data"]).decode()
    assert mine.json()["outputs"] == {"p": {"output": {**image, "uri": uri, "data": None}}}
