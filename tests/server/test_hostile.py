"""Hostile input against a real server (issue 12.4): an error frame or a failed run, the
connection alive, never a dropped socket or a traceback.

The same rules are checked without a socket in ``test_session.py``; here the whole
path runs: uvicorn, the reader, the outbox, the encoders, and the durable store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from tests.server.helpers import ServerHandle, running_server
from tests.support.client import Client, connect
from tests.support.graphs import graph, nd, new_job_id

DEPTH = 10_000


@pytest.fixture(scope="module")
def durable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    path: Path = tmp_path_factory.mktemp("hostile") / "runs.db"
    with running_server(store=f"sqlite:///{path}") as handle:
        yield handle


async def alive(client: Client) -> None:
    """The connection still answers."""
    await client.send({"type": "ping"})
    assert (await client.recv())["type"] == "pong"


async def test_deep_msgpack_nesting_is_invalid_frame(
    server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    head = msgspec.msgpack.encode({"command": "run_job", "data": {"params": {"a": None}}})
    async with connect(server) as client:
        await client.ws.send(head[:-1] + b"\x91" * DEPTH + b"\xc0")
        frame = await client.recv()
        assert (frame["type"], frame["error"]) == ("error", "invalid_frame")
        await alive(client)
    assert "RecursionError" not in caplog.text


async def test_deep_json_nesting_is_invalid_frame(server: ServerHandle) -> None:
    async with connect(server) as client:
        await client.ws.send("[" * DEPTH + "]" * DEPTH)
        frame = await client.recv()
        assert (frame["type"], frame["error"]) == ("error", "invalid_frame")
        await client.ws.send(
            '{"command":"get_status","data":{"x":' + "[" * DEPTH + "]" * DEPTH + "}}"
        )
        assert (await client.recv())["error"] == "invalid_frame"
        await alive(client)


async def test_a_json_integer_beyond_msgpack_is_invalid_command(server: ServerHandle) -> None:
    """2**64+1 in a text run_job: rejected before any run starts; a binary client that
    reconnects to that job id finds nothing (no message of it failed to encode)."""
    job_id = new_job_id()
    async with connect(server) as client:
        await client.ws.send(
            (
                '{"command":"run_job","request_id":"r1","data":{"job_id":"JOB","workflow_id":"w",'
                '"graph":{"nodes":[{"id":"n","type":"lib.math.Add","data":{}}],"edges":[]},'
                '"params":{"a":NUMBER}}}'
            )
            .replace("JOB", job_id)
            .replace("NUMBER", str(2**64 + 1))
        )
        frame = await client.recv()
        assert (frame["error"], frame["job_id"], frame["request_id"]) == (
            "invalid_command",
            job_id,
            "r1",
        )
        assert str(2**64 + 1) in frame["details"]
        assert (await client.status(job_id))["status"] == "not_found"
        await alive(client)


def add_overflow(job_id: str, persistence: str) -> dict[str, object]:
    return {
        "command": "run_job",
        "data": {
            "job_id": job_id,
            "workflow_id": "w",
            "graph": graph(nd("adder", "lib.math.Add", a=2**64 - 1, b=1)),
            "require_terminal_result": True,
            "execution_options": {"persistence": persistence, "event_detail": "full"},
        },
    }


async def test_a_node_output_beyond_msgpack_fails_the_run_naming_the_node(
    server: ServerHandle,
) -> None:
    job_id = new_job_id()
    async with connect(server) as client:
        await client.send(add_overflow(job_id, "session"))
        frames = await client.until_terminal(job_id)
        terminal = frames[-1]
        assert terminal["status"] == "failed"
        assert "adder" in terminal["error"] and "lib.math.Add" in terminal["error"]
        errors = [f for f in frames if f.get("type") == "node_update" and f["status"] == "error"]
        assert [f["node_id"] for f in errors] == ["adder"]
        await alive(client)


async def test_a_durable_run_with_an_output_beyond_msgpack_gets_its_terminal(
    durable_server: ServerHandle,
) -> None:
    """The failed terminal is committed and sent; a reconnect finds the same one."""
    job_id = new_job_id()
    async with connect(durable_server) as client:
        await client.send(add_overflow(job_id, "job"))
        terminal = (await client.until_terminal(job_id))[-1]
        assert terminal["status"] == "failed" and "adder" in terminal["error"]
        await alive(client)
    async with connect(durable_server) as again:
        await again.command("reconnect_job", {"job_id": job_id})
        replayed = await again.until_terminal(job_id)
        assert replayed[0]["type"] == "job_resumed"
        assert replayed[-1] == terminal


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_invalid_utf8_in_a_text_frame_closes_1007_with_one_debug_line() -> None:
    """uvicorn closes the socket with 1007 itself; its traceback becomes one debug line."""
    with running_server() as server:
        uvicorn_log = logging.getLogger("uvicorn.error")
        records = _Records()
        level = uvicorn_log.level
        uvicorn_log.addHandler(records)
        uvicorn_log.setLevel(logging.DEBUG)
        try:
            async with connect(server) as client:
                await client.ws.send(b'{"type":"ping","x":"\xff\xfe"}', text=True)
                with pytest.raises(ConnectionClosed) as closed:
                    await client.ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
            async with connect(server) as client:
                await alive(client)
        finally:
            uvicorn_log.removeHandler(records)
            uvicorn_log.setLevel(level)
    utf8 = [r for r in records.records if "UTF-8" in r.getMessage()]
    assert len(utf8) == 1, [r.getMessage() for r in records.records]
    assert utf8[0].levelno == logging.DEBUG and utf8[0].exc_info is None
    assert all(r.levelno < logging.WARNING for r in records.records)


async def test_invalid_utf8_is_not_logged_at_all_above_debug() -> None:
    """At the server's usual level the 1007 close leaves no log line."""
    with running_server() as server:
        uvicorn_log = logging.getLogger("uvicorn.error")
        records = _Records()
        uvicorn_log.addHandler(records)
        try:
            async with connect(server) as client:
                await client.ws.send(b"\xc3\x28", text=True)
                with pytest.raises(ConnectionClosed):
                    await client.ws.recv()
        finally:
            uvicorn_log.removeHandler(records)
    assert records.records == []
