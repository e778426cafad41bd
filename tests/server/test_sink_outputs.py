"""A sink that is not an Output node reports its outputs as ``output_update`` (PROTOCOL.md §3.2).

NodeTool's TypeScript server sends one ``output_update`` per output handle of each sink node,
and vvvv reads a single node's value from it in ``outputs`` mode.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.helpers import ServerHandle, running_server
from tests.server.test_runs import CONCAT, kinds, run_to_end
from tests.support.client import Client, connect
from tests.support.frames import Frame
from tests.support.graphs import edge, graph, nd

DATE_DIFFERENCE = graph(
    nd(
        "d",
        "lib.date.DateDifference",
        start_date={"type": "datetime", "year": 2026, "month": 1, "day": 1},
        end_date={"type": "datetime", "year": 2026, "month": 1, "day": 3, "hour": 4, "minute": 5},
    )
)
DATE_HANDLES = {
    "total_seconds": 2 * 86400 + 4 * 3600 + 5 * 60,
    "days": 2,
    "hours": 4,
    "minutes": 5,
    "seconds": 0,
}


def outputs_of(messages: list[Frame]) -> list[Frame]:
    return [m for m in messages if m["type"] == "output_update"]


async def test_outputs_profile_single_node_gets_one_output_update_before_the_terminal(
    server: ServerHandle,
) -> None:
    """``outputs``: exactly one output_update (the handle as output_name, the value
    never wrapped by explicit_types), then the terminal."""
    async with connect(server) as client:
        _ack, messages = await run_to_end(
            client, CONCAT, event_detail="outputs", explicit_types=True
        )
    assert kinds(messages) == [("output_update",), ("job_update", "completed")]
    update = messages[0]
    assert update["node_id"] == "n1"
    assert update["node_name"] == "Concatenate Text"
    assert update["output_name"] == "output"
    assert update["value"] == "hello world"
    assert update["output_type"] == "string"
    assert (update["metadata"], update["disposition"], update["done"]) == ({}, None, None)
    assert messages[-1]["result"] == {
        "outputs": {"n1": {"output": {"type": "string", "value": "hello world"}}}
    }


async def test_full_profile_puts_it_between_node_running_and_completed(
    server: ServerHandle,
) -> None:
    nodes = graph(nd("add", "lib.math.Add", a=2, b=3))
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    assert kinds(messages) == [
        ("job_update", "running"),
        ("node_update", "running"),
        ("output_update",),
        ("node_update", "completed"),
        ("job_update", "completed"),
    ]
    update = messages[2]
    assert (update["node_id"], update["output_name"], update["value"]) == ("add", "output", 5)
    assert update["output_type"] == "integer"


async def test_terminal_profile_sends_no_output_update(server: ServerHandle) -> None:
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, CONCAT, event_detail="terminal")
    assert kinds(messages) == [("job_update", "completed")]
    assert messages[0]["result"] == {"outputs": {"n1": {"output": "hello world"}}}


async def test_a_multi_output_node_reports_each_handle(server: ServerHandle) -> None:
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, DATE_DIFFERENCE, event_detail="outputs")
    updates = outputs_of(messages)
    assert len(updates) == len(DATE_HANDLES) == len(messages) - 1
    assert {u["output_name"]: u["value"] for u in updates} == DATE_HANDLES
    assert {u["node_id"] for u in updates} == {"d"}
    assert {u["output_type"] for u in updates} == {"integer"}
    assert messages[-1]["result"] == {"outputs": {"d": DATE_HANDLES}}


async def test_a_streaming_sink_reports_its_last_values_before_completed(
    server: ServerHandle,
) -> None:
    nodes = graph(nd("count", "noderun.debug.Count", count=3))
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes)
    assert kinds(messages) == [
        ("job_update", "running"),
        ("node_update", "running"),
        ("output_update",),
        ("node_update", "completed"),
        ("job_update", "completed"),
    ]
    assert (messages[2]["output_name"], messages[2]["value"]) == ("output", 3)


async def test_nodes_feeding_an_output_node_report_nothing_of_their_own(
    server: ServerHandle,
) -> None:
    """Concat → Output: only the Output node's output_update (its name), none for Concat."""
    nodes = graph(
        CONCAT["nodes"][0],
        nd("out", "nodetool.output.Output", name="greeting"),
        edges=[edge("n1", "out", "value")],
    )
    for detail in ("full", "outputs"):
        async with connect(server) as client:
            _ack, messages = await run_to_end(client, nodes, event_detail=detail)
        updates = outputs_of(messages)
        assert [(u["node_id"], u["output_name"], u["value"]) for u in updates] == [
            ("out", "greeting", "hello world")
        ], detail


async def test_every_unconnected_sink_reports_its_outputs(server: ServerHandle) -> None:
    nodes = graph(CONCAT["nodes"][0], nd("add", "lib.math.Add", a=1, b=2))
    async with connect(server) as client:
        _ack, messages = await run_to_end(client, nodes, event_detail="outputs")
    updates = outputs_of(messages)
    assert len(updates) == 2 == len(messages) - 1
    assert {u["node_id"]: (u["output_name"], u["value"]) for u in updates} == {
        "n1": ("output", "hello world"),
        "add": ("output", 3),
    }


async def test_a_failing_sink_sends_no_output_update(server: ServerHandle) -> None:
    nodes = graph(nd("f", "noderun.debug.Fail", message="boom"))
    for detail in ("full", "outputs"):
        async with connect(server) as client:
            _ack, messages = await run_to_end(client, nodes, event_detail=detail)
        assert outputs_of(messages) == [], detail
        assert kinds(messages)[-2:] == [("node_update", "error"), ("job_update", "failed")]


# -- durable -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def durable_server() -> Iterator[ServerHandle]:
    with tempfile.TemporaryDirectory(prefix="noderun-sink-") as tmp:
        path = Path(tmp) / "runs.db"
        with running_server(store=f"sqlite:///{path}") as handle:
            yield handle


async def run_durable(client: Client, nodes: Frame, event_detail: str) -> list[Frame]:
    job_id = await client.run_job(nodes, durable=True, event_detail=event_detail)
    frames = await client.until_terminal(job_id)
    return [f for f in frames if "job_seq" in f]


@pytest.mark.parametrize("detail", ["full", "outputs"])
async def test_a_durable_run_replays_the_same_output_update(
    durable_server: ServerHandle, detail: str
) -> None:
    async with connect(durable_server) as client:
        live = await run_durable(client, CONCAT, detail)
    updates = outputs_of(live)
    assert [(u["node_id"], u["output_name"], u["value"]) for u in updates] == [
        ("n1", "output", "hello world")
    ]
    job_id = live[-1]["job_id"]
    async with connect(durable_server) as client:
        await client.command("reconnect_job", {"job_id": job_id, "workflow_id": "wf"})
        resumed = await client.recv_until(lambda f: f.get("type") == "job_resumed")
        assert len(resumed) == 1 and resumed[0]["replay_count"] == len(live)
        replayed = [await client.recv() for _ in range(len(live))]
    assert replayed == live
