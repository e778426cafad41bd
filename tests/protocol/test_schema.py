"""The published protocol schema: valid JSON Schema 2020-12 and AsyncAPI 3 documents, generated
from the protocol's structs, that NodeTool's golden frames and real server frames satisfy."""

from __future__ import annotations

import jsonschema
import pytest

from noderun.protocol.schema import asyncapi, client_commands, json_schema, server_frames
from tests.server.helpers import running_server
from tests.support.client import connect
from tests.support.golden import golden_frames
from tests.support.graphs import edge, graph, nd
from tests.support.schema import check_client_frame, check_server_frame


def test_schema_is_valid_json_schema_2020_12() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    for struct in server_frames():
        assert struct.__name__ in schema["$defs"]
    for command_struct in client_commands().values():
        assert command_struct.__name__ in schema["$defs"]


def test_golden_client_frames_are_client_frames() -> None:
    frames = [frame for frame in golden_frames() if frame.direction == "client"]
    assert frames
    for frame in frames:
        check_client_frame(frame.message)


async def test_frames_of_a_real_run_are_server_frames() -> None:
    """Every frame of a full-detail graph run on a real server validates (the end-to-end
    suite's client checks every typed frame it receives the same way)."""
    with running_server() as server:
        async with connect(server) as client:
            job_id = await client.run_job(
                graph(
                    nd("a", "lib.math.Add", a=1, b=2),
                    nd("o", "nodetool.output.Output", name="x"),
                    edges=[edge("a", "o", target_handle="value")],
                ),
                event_detail="full",
            )
            frames = await client.until_terminal(job_id)
    typed = [frame for frame in frames if "type" in frame]
    assert len(typed) >= 4
    for frame in typed:
        check_server_frame(frame)


def test_a_run_job_without_its_graph_types_is_refused() -> None:
    bad = {
        "command": "run_job",
        "data": {"job_id": 5, "graph": {"nodes": "not a list", "edges": []}},
    }
    with pytest.raises(jsonschema.ValidationError):
        check_client_frame(bad)


def test_a_job_update_with_an_unknown_status_is_refused() -> None:
    bad = {"type": "job_update", "job_id": "j", "workflow_id": "w", "status": "exploded"}
    with pytest.raises(jsonschema.ValidationError):
        check_server_frame(bad)


def test_asyncapi_document_names_every_command_and_server_frame() -> None:
    document = asyncapi("0.1.0")
    assert document["asyncapi"] == "3.0.0"
    channel = document["channels"]["ws"]
    assert channel["address"] == "/ws"
    for name in client_commands():
        assert name in channel["messages"]
    for struct in server_frames():
        assert struct.__name__ in channel["messages"]
    operations = document["operations"]
    assert operations["receiveClientFrame"]["action"] == "receive"
    assert operations["sendServerFrame"]["action"] == "send"
    # Every $ref in the document resolves inside it.
    _assert_refs_resolve(document, document)


def _assert_refs_resolve(node: object, document: dict[str, object]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: object = document
            for part in ref.removeprefix("#/").split("/"):
                assert isinstance(target, dict) and part in target, ref
                target = target[part]
        for value in node.values():
            _assert_refs_resolve(value, document)
    elif isinstance(node, list):
        for value in node:
            _assert_refs_resolve(value, document)


def test_noderun_schema_prints_the_schema_and_asyncapi_documents() -> None:
    import json
    import subprocess
    import sys

    def run(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "noderun", "schema", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        document = json.loads(done.stdout)
        assert isinstance(document, dict)
        return document

    printed = run()
    assert printed == json.loads(json.dumps(json_schema()))
    jsonschema.Draft202012Validator.check_schema(printed)
    document = run("--asyncapi")
    assert document["asyncapi"] == "3.0.0"
    _assert_refs_resolve(document, document)
