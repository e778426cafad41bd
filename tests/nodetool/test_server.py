"""NodeTool worker nodes over a real server WebSocket, inside single-node and mixed graphs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from noderun.runtime.node import node
from noderun.runtime.nodes import BUILTIN_NODES
from noderun.runtime.registry import Registry
from noderun.server.cli import build_parser, settings_from
from tests.nodetool.support import NODEPACK, require_nodetool
from tests.server.helpers import ServerHandle, running_server
from tests.server.test_commands import assert_metadata
from tests.support.client import Client, connect
from tests.support.frames import Frame
from tests.support.graphs import edge, graph, nd
from tests.support.openapi import check_answer
from tests.support.timing import START_TIMEOUT, TIMEOUT

pytestmark = pytest.mark.timeout(120)

DEMO = "noderuntest.demo."
ROOT = Path(__file__).resolve().parents[2]


@node(DEMO + "Echo", title="Native Echo", inline=True)
def native_echo(value: str = "") -> str:
    """A native node under a worker node's name: it must win."""
    return f"native {value}"


@contextlib.contextmanager
def nodetool_server(**overrides: Any) -> Iterator[ServerHandle]:
    """A server with one worker loading the test package (and ``NODERUN_TEST_SECRET``)."""
    require_nodetool()
    with pytest.MonkeyPatch.context() as patch:
        # The workers inherit the server's environment.
        patch.setenv("PYTHONPATH", str(NODEPACK))
        patch.setenv("NODERUN_TEST_SECRET", "from-the-server")
        values: dict[str, Any] = {
            "nodetool_workers": 1,
            "nodetool_namespaces": ("noderuntest",),
            "nodetool_start_timeout": START_TIMEOUT,
        }
        values.update(overrides)
        with running_server(
            registry=Registry([*BUILTIN_NODES, native_echo]),
            start_within=START_TIMEOUT,
            **values,
        ) as handle:
            yield handle


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with nodetool_server() as handle:
        yield handle


async def run(client: Client, nodes: Frame, *, text: bool = False) -> list[Frame]:
    job_id = await client.run_job(nodes, text=text)
    return await client.until_terminal(job_id, TIMEOUT * 4)


async def until_served(client: Client) -> Frame:
    """Run Shout until it completes: refused (queue 0) while the worker restarts."""
    terminal: Frame = {}
    async with asyncio.timeout(TIMEOUT * 4):
        while terminal.get("status") != "completed":
            terminal = (await run(client, graph(nd("s", DEMO + "Shout", text="back"))))[-1]
            assert terminal["status"] == "completed" or "queue full" in terminal["error"]
    return terminal


def of(frames: list[Frame], kind: str) -> list[Frame]:
    return [frame for frame in frames if frame.get("type") == kind]


async def test_list_nodes_has_the_worker_nodes_with_their_package_metadata(
    server: ServerHandle,
) -> None:
    async with connect(server) as client:
        await client.command("list_nodes", {"namespace": "noderuntest.demo"}, request_id="l")
        listed = await client.recv()
        await client.command("get_node", {"node_type": DEMO + "Shout"}, request_id="g")
        shout = (await client.recv())["result"]
    nodes = {meta["node_type"]: meta for meta in listed["result"]["nodes"]}
    assert set(nodes) >= {DEMO + n for n in ("Shout", "Count", "Wait", "Pixel", "Secret")}
    for meta in nodes.values():
        assert meta["namespace"] == "noderuntest.demo"
        assert set(meta) >= {"node_type", "title", "description", "properties", "outputs"}
    # The metadata file's bounds, which discover drops.
    (level,) = nodes[DEMO + "Pixel"]["properties"]
    assert (level["min"], level["max"], level["default"]) == (0.0, 255.0, 128)
    assert nodes[DEMO + "Pixel"]["outputs"][0]["type"]["type"] == "image"
    assert nodes[DEMO + "Count"]["is_streaming_output"] is True
    # A native node keeps its name.
    assert nodes[DEMO + "Echo"]["title"] == "Native Echo"
    assert shout["title"] == "Shout"
    assert {p["name"]: p["description"] for p in shout["properties"]} == {
        "text": "The text to shout",
        "suffix": "Appended after the text",
    }
    for meta in (shout, nodes[DEMO + "Count"]):
        assert_metadata({**meta, "outputs": []})
        assert all(set(out) >= {"name", "type"} for out in meta["outputs"])


def test_worker_node_metadata_fits_the_openapi_document(server: ServerHandle) -> None:
    """A worker node keeps NodeTool's own metadata: the HTTP listing of them still fits
    the document (``noderun schema --openapi``)."""
    for query in ("?fields=full&namespace=noderuntest.demo", "?node_type=" + DEMO + "Pixel"):
        response = httpx.get(server.http_url + "/api/nodes/metadata" + query, timeout=TIMEOUT)
        assert response.status_code == 200
        check_answer(
            "GET",
            "/api/nodes/metadata",
            response.status_code,
            response.headers["content-type"],
            response.content,
        )


async def test_a_single_worker_node_run_completes_with_its_output(server: ServerHandle) -> None:
    async with connect(server) as client:
        frames = await run(client, graph(nd("s", DEMO + "Shout", text="hi")))
    terminal = frames[-1]
    assert terminal["status"] == "completed", terminal
    assert terminal["result"] == {"outputs": {"s": {"output": "HI!"}}}
    node_updates = [(f["node_id"], f["status"]) for f in of(frames, "node_update")]
    assert node_updates == [("s", "running"), ("s", "completed")]


async def test_a_mixed_graph_passes_values_between_native_and_worker_nodes(
    server: ServerHandle,
) -> None:
    nodes = graph(
        nd("cat", "nodetool.text.Concat", a="ab", b="c"),
        nd("shout", DEMO + "Shout", suffix="?"),
        nd("len", "nodetool.text.Length"),
        nd("out", "nodetool.output.Output", name="shouted"),
        nd("echo", DEMO + "Echo", value="x"),
        edges=[
            edge("cat", "shout", "text"),
            edge("shout", "len", "text"),
            edge("shout", "out", "value"),
        ],
    )
    async with connect(server) as client:
        frames = await run(client, nodes)
    terminal = frames[-1]
    assert terminal["status"] == "completed", terminal
    assert terminal["result"]["outputs"]["shouted"] == ["ABC?"]
    assert terminal["result"]["outputs"]["len"] == {"output": 4}
    assert terminal["result"]["outputs"]["echo"] == {"output": "native x"}


async def test_a_streaming_worker_node_reports_progress_chunks_and_logs(
    server: ServerHandle,
) -> None:
    nodes = graph(
        nd("count", DEMO + "Count", text="one two three"),
        nd("out", "nodetool.output.Output", name="words"),
        edges=[edge("count", "out", "value", source_handle="word")],
    )
    async with connect(server) as client:
        frames = await run(client, nodes)
    terminal = frames[-1]
    assert terminal["status"] == "completed", terminal
    assert terminal["result"]["outputs"]["words"] == ["one", "two", "three"]
    assert [f["content"] for f in of(frames, "chunk")] == ["one", "two", "three"]
    assert all(f["node_id"] == "count" for f in of(frames, "chunk"))
    progress = [(f["progress"], f["total"]) for f in of(frames, "node_progress")]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    logs = of(frames, "log_update")
    assert [(f["node_id"], f["content"], f["severity"]) for f in logs] == [
        ("count", "counting", "info")
    ]


async def test_an_image_output_arrives_as_bytes_in_binary_and_as_a_data_uri_in_text(
    server: ServerHandle,
) -> None:
    """NodeTool's asset output modes: the bytes inline over MessagePack; over JSON, ``uri``
    a ``data:`` URI and ``data`` null, in every frame that carries the value."""
    nodes = graph(
        nd("p", DEMO + "Pixel", level=9),
        nd("out", "nodetool.output.Output", name="pixel"),
        edges=[edge("p", "out", "value")],
    )
    async with connect(server) as client:
        binary = await run(client, nodes)
        text = await run(client, nodes, text=True)
    image = binary[-1]["result"]["outputs"]["pixel"][0]
    assert image["type"] == "image"
    assert isinstance(image["data"], bytes) and image["data"].startswith(b"\x89PNG")
    assert image["uri"] == ""
    expected = {
        **image,
        "uri": "data:image/png;base64," + base64.b64encode(image["data"]).decode(),
        "data": None,
    }
    assert text[-1]["status"] == "completed", text[-1]
    carried = [
        text[-1]["result"]["outputs"]["pixel"][0],
        *(f["value"] for f in of(text, "output_update")),
        *(
            f["result"]["output"]
            for f in of(text, "node_update")
            if f["node_id"] == "p" and f["result"]
        ),
    ]
    assert len(carried) >= 3
    assert all(value == expected for value in carried), carried
    # The binary frames of the same run are unchanged by the text client's.
    assert [f["value"] for f in of(binary, "output_update")] == [image]


async def test_media_travels_between_worker_nodes_and_from_the_client_as_blobs(
    server: ServerHandle,
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
    chained = graph(
        nd("p", DEMO + "Pixel", level=9),
        nd("size", DEMO + "ImageSize"),
        edges=[edge("p", "size", "image")],
    )
    async with connect(server) as client:
        chain = (await run(client, chained))[-1]
        given = await run(
            client, graph(nd("size", DEMO + "ImageSize", image={"type": "image", "data": png}))
        )
        pixel = (await run(client, graph(nd("p", DEMO + "Pixel", level=9))))[-1]
    png_size = len(pixel["result"]["outputs"]["p"]["output"]["data"])
    assert chain["result"]["outputs"] == {"size": {"output": png_size}}
    assert given[-1]["result"] == {"outputs": {"size": {"output": len(png)}}}


async def test_the_secret_comes_from_the_server_environment(server: ServerHandle) -> None:
    async with connect(server) as client:
        terminal = (await run(client, graph(nd("s", DEMO + "Secret"))))[-1]
    assert terminal["result"] == {"outputs": {"s": {"output": "from-the-server"}}}


async def test_a_worker_node_that_raises_fails_the_run_naming_the_node(
    server: ServerHandle,
) -> None:
    async with connect(server) as client:
        frames = await run(client, graph(nd("f", DEMO + "Fail", message="kaput")))
        after = (await run(client, graph(nd("s", DEMO + "Shout", text="ok"))))[-1]
    terminal = frames[-1]
    assert terminal["status"] == "failed"
    assert "kaput" in terminal["error"] and DEMO + "Fail" in terminal["error"]
    assert [f["status"] for f in of(frames, "node_update")] == ["running", "error"]
    assert after["status"] == "completed"


async def test_bad_property_values_fail_the_run_with_the_worker_message(
    server: ServerHandle,
) -> None:
    async with connect(server) as client:
        terminal = (await run(client, graph(nd("s", DEMO + "Shout", text=5))))[-1]
    assert terminal["status"] == "failed"
    assert "Invalid value for property `text`" in terminal["error"]


async def test_cancelling_a_run_cancels_the_worker_node_cooperatively(
    server: ServerHandle,
) -> None:
    async with connect(server) as client:
        job_id = await client.run_job(graph(nd("w", DEMO + "Wait", seconds=60)))
        await client.recv_until(lambda f: f.get("type") == "node_progress")
        await client.command("cancel_job", {"job_id": job_id})
        frames = await client.until_terminal(job_id)
        after = (await run(client, graph(nd("s", DEMO + "Shout", text="next"))))[-1]
    assert frames[-1]["status"] == "cancelled"
    assert after["result"] == {"outputs": {"s": {"output": "NEXT!"}}}


async def test_faults_end_runs_with_terminals_and_the_worker_comes_back() -> None:
    """Forced cancel, a crash and a full queue, on a server with one worker and no queue."""
    with nodetool_server(nodetool_cancel_grace=0.2, nodetool_queue=0) as handle:
        async with connect(handle) as client:
            # A node that blocks its worker's loop ignores cancel: the worker is replaced.
            job_id = await client.run_job(graph(nd("b", DEMO + "Block", seconds=60)))
            await client.recv_until(lambda f: f.get("type") == "node_progress")
            # Meanwhile the one worker is busy and nothing may queue: a clear failure.
            full = (await run(client, graph(nd("s", DEMO + "Shout"))))[-1]
            await client.command("cancel_job", {"job_id": job_id})
            cancelled = await client.until_terminal(job_id)
            replaced = await until_served(client)
            # A node that kills its worker fails its run, naming node and worker.
            crashed = await run(client, graph(nd("d", DEMO + "Die", code=3)))
            back = await until_served(client)
    assert full["status"] == "failed"
    assert "queue full" in full["error"]
    assert cancelled[-1]["status"] == "cancelled"
    crash = crashed[-1]
    assert crash["status"] == "failed"
    assert DEMO + "Die" in crash["error"] and "nodetool-0" in crash["error"]
    assert "exited with code 3" in crash["error"]
    assert replaced["result"] == back["result"] == {"outputs": {"s": {"output": "BACK!"}}}


def test_the_server_does_not_start_without_the_worker_interpreter(tmp_path: Path) -> None:
    require_nodetool()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "noderun",
            "serve",
            "--port",
            "0",
            "--store",
            "none",
            "--nodetool-workers",
            "1",
            "--nodetool-python",
            str(tmp_path / "nope"),
        ],
        cwd=ROOT,
        # The server opens its asset directory first: keep it out of the checkout.
        env={**os.environ, "NODERUN_ASSETS_DIR": str(tmp_path / "assets")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "nodetool_unavailable" in line]
    assert len(lines) == 1, output
    assert "cannot run" in lines[0] and "nope" in lines[0]


def test_flags_and_environment_configure_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODERUN_NODETOOL_NAMESPACES", "a, b")
    monkeypatch.setenv("NODERUN_NODETOOL_QUEUE", "7")
    from_env = settings_from(build_parser().parse_args(["serve"]))
    assert from_env.nodetool_workers == 0
    assert from_env.nodetool_namespaces == ("a", "b")
    assert from_env.nodetool_queue == 7
    flags = [
        "serve",
        "--nodetool-workers",
        "3",
        "--nodetool-python",
        "/opt/nt/bin/python",
        "--nodetool-namespace",
        "huggingface",
        "--nodetool-namespace",
        "base",
    ]
    settings = settings_from(build_parser().parse_args(flags))
    assert settings.nodetool_workers == 3
    assert settings.nodetool_python == "/opt/nt/bin/python"
    assert settings.nodetool_namespaces == ("huggingface", "base")
    monkeypatch.setenv("NODERUN_NODETOOL_WORKERS", "many")
    with pytest.raises(ValueError, match="NODERUN_NODETOOL_WORKERS"):
        settings_from(build_parser().parse_args(["serve"]))
