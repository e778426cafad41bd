"""Logs of a real ``noderun serve`` process: JSON lines off a TTY (uvicorn's included), no
secret at any level, per-connection lines only at debug."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import structlog
from websockets.asyncio.client import connect as ws_connect

from noderun.server.logging import configure_logging, redact
from tests.server.process import Process
from tests.support.client import connect
from tests.support.graphs import graph, nd
from tests.support.ports import free_port
from tests.support.timing import TIMEOUT

SECRET = "s3cr3t-token-value"


def _serve_and_talk(tmp_path: Path, level: str) -> list[str]:
    """Start the CLI, connect with the token by header and by query and once with a wrong
    one, run a node, stop; the server's stderr lines."""
    port = free_port()
    argv = [sys.executable, "-m", "noderun", "serve", "--port", str(port), "--store", "none"]
    server = Process([*argv, "--token", SECRET, "--log-level", level], tmp_path, port=port)
    try:
        server.wait_healthy()

        async def talk() -> None:
            bearer = {"Authorization": f"Bearer {SECRET}"}
            async with connect(server, headers=bearer) as client:
                job_id = await client.run_job(graph(nd("c", "nodetool.text.Concat", a="x", b="y")))
                await client.until_terminal(job_id)
            async with connect(server, query=f"?api_key={SECRET}") as client:
                job_id = await client.run_job(graph(nd("c", "nodetool.text.Concat", a="x", b="y")))
                await client.until_terminal(job_id)
            async with ws_connect(f"{server.ws_url}?api_key=wrong-{SECRET}", proxy=None) as ws:
                await ws.wait_closed()

        asyncio.run(talk())
    finally:
        server.terminate()
    return [line for line in server.output().splitlines() if line.strip()]


def test_every_line_is_json_and_no_secret_is_logged_at_debug(tmp_path: Path) -> None:
    lines = _serve_and_talk(tmp_path, "debug")
    records = [json.loads(line) for line in lines]  # every line, uvicorn's too
    assert all("level" in record and "timestamp" in record for record in records)
    assert not any(SECRET in line for line in lines), "\n".join(lines)
    handshakes = [r for r in records if "WebSocket /ws" in str(r.get("event"))]
    assert handshakes, "\n".join(lines)
    assert all(r["level"] == "debug" for r in handshakes)
    assert any("api_key=***" in str(r.get("event")) for r in handshakes)
    refused = [r for r in records if r.get("event") == "auth.refused"]
    assert len(refused) == 1, "\n".join(lines)
    assert refused[0]["reason"] == "Invalid authentication"
    assert refused[0]["level"] == "warning" and len(refused[0]["connection_id"]) == 12


def test_info_level_has_no_per_connection_lines(tmp_path: Path) -> None:
    lines = _serve_and_talk(tmp_path, "info")
    records = [json.loads(line) for line in lines]
    assert not any(SECRET in line for line in lines)
    events = [str(record.get("event")) for record in records]
    assert not any("connection open" in event or "WebSocket /ws" in event for event in events)
    assert "server.ready" in events


def test_redact_hides_query_tokens_and_authorization_values() -> None:
    assert redact("GET /ws?api_key=abc&x=1") == "GET /ws?api_key=***&x=1"
    assert redact("/ws?token=abc") == "/ws?token=***"
    assert redact("< Authorization: Bearer abc") == "< Authorization: ***"
    assert redact("[(b'authorization', b'Bearer abc')]") == "[(b'authorization', b'***')]"
    assert redact("nothing to hide") == "nothing to hide"


def test_stdlib_and_structlog_records_share_one_renderer() -> None:
    stream = io.StringIO()
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("info", stream=stream)
        logging.getLogger("asyncpg.test").warning("connect to %s", "db?password=x&token=abc")
        structlog.get_logger("noderun.test").info("hello", url="/ws?api_key=abc")
    finally:
        structlog.configure(**saved)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["connect to db?password=x&token=***", "hello"]
    assert records[0]["logger"] == "asyncpg.test" and records[0]["level"] == "warning"
    assert records[1]["url"] == "/ws?api_key=***"


_WRITER = """
import sys
import structlog
from noderun.server.logging import configure_logging
configure_logging("info", stream=sys.stderr)
log = structlog.get_logger()
for i in range(int(sys.argv[1])):
    log.info("record", writer=sys.argv[2], i=i, padding="x" * 200)
"""


def test_processes_sharing_an_unbuffered_output_file_write_whole_lines(tmp_path: Path) -> None:
    # As --workers children do: one inherited stderr file, and python -u makes every
    # write a system call, so a record written in two pieces would interleave.
    records = 3000
    out = tmp_path / "shared.log"
    with out.open("wb") as shared:
        writers = [
            subprocess.Popen(
                [sys.executable, "-u", "-c", _WRITER, str(records), name],
                stdout=subprocess.DEVNULL,
                stderr=shared,
            )
            for name in ("a", "b")
        ]
        for writer in writers:
            assert writer.wait(timeout=TIMEOUT * 6) == 0
    lines = out.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert len(parsed) == 2 * records
    for name in ("a", "b"):
        assert [r["i"] for r in parsed if r["writer"] == name] == list(range(records))
