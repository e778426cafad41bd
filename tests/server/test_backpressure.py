"""Backpressure against a real server (PROTOCOL.md §1): a client that keeps reading
gets everything, however fast its runs produce; one that reads nothing is closed.
"""

from __future__ import annotations

import asyncio
import select
import socket
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close
from websockets.uri import parse_uri

from noderun.server.cli import build_parser, settings_from
from noderun.server.connection import Connection
from noderun.server.settings import SettingError, Settings, load_settings
from tests.server.helpers import ServerHandle, running_server
from tests.support.client import connect
from tests.support.frames import Frame
from tests.support.graphs import graph, nd, new_job_id
from tests.support.timing import SECOND, TIMEOUT

PROGRESS_STEPS = 5_000
GRAPH_NODES = 2_100


def run_seqs(frames: list[Frame], job_id: str) -> list[int]:
    return [f["job_seq"] for f in frames if f.get("job_id") == job_id and "job_seq" in f]


def connections(handle: ServerHandle) -> list[Connection]:
    return list(handle.app.state.lifecycle.connections)


@pytest.mark.parametrize("limit", [64, 4096])
async def test_a_client_reading_flat_out_gets_every_progress_frame(limit: int) -> None:
    """5,000 progress steps in one burst (more than the outbound high-water mark):
    every frame and the terminal arrive, in order, and the connection stays open."""
    with running_server(outbound_limit=limit, outbound_bytes=16 * 1024) as handle:
        async with connect(handle) as client:
            burst = graph(nd("p", "noderun.debug.Progress", steps=PROGRESS_STEPS))
            job_id = await client.run_job(burst, event_detail="full")
            frames = await client.until_terminal(job_id, within=TIMEOUT * 6)
            assert frames[-1]["status"] == "completed"
            progress = [f for f in frames if f.get("type") == "node_progress"]
            assert [f["progress"] for f in progress] == list(range(1, PROGRESS_STEPS + 1))
            seqs = run_seqs(frames, job_id)
            assert seqs == list(range(1, seqs[-1] + 1))
            assert not any(f.get("type") == "job_resumed" for f in frames)
            (connection,) = connections(handle)
            # Paced: the producer stops at the byte mark, one frame past it at most.
            outbox = connection.outbox
            assert 0 < outbox.peak_bytes < 16 * 1024 + 1024
            assert (await client.ping_barrier()) == []  # still open


async def test_a_client_reading_flat_out_gets_every_frame_of_a_large_graph() -> None:
    """2,100 nodes at ``full``: two node_updates each, then the terminal."""
    nodes = [nd(f"c{i}", "nodetool.constant.Integer", value=i) for i in range(GRAPH_NODES)]
    with running_server(outbound_limit=256, outbound_bytes=32 * 1024) as handle:
        async with connect(handle) as client:
            job_id = await client.run_job(graph(*nodes), event_detail="full")
            frames = await client.until_terminal(job_id, within=TIMEOUT * 6)
            assert frames[-1]["status"] == "completed"
            assert len(frames[-1]["result"]["outputs"]) == GRAPH_NODES
            updates = [f for f in frames if f.get("type") == "node_update"]
            assert len(updates) == 2 * GRAPH_NODES
            seqs = run_seqs(frames, job_id)
            assert seqs == list(range(1, seqs[-1] + 1))
            (connection,) = connections(handle)
            # Paced between firings: one node's two node_updates past the mark at most.
            assert connection.outbox.peak_bytes < 32 * 1024 + 4096


async def test_a_durable_runs_live_client_gets_every_seq(tmp_path: Path) -> None:
    """A durable run that may emit more than its replay buffer before its ack: the client
    gets seq 1..N without a gap (caught up from the store when the buffer lost some)."""
    with running_server(store=f"sqlite:///{tmp_path / 'runs.db'}", replay_limit=100) as handle:
        async with connect(handle) as client:
            job_id = await client.run_job(
                graph(nd("p", "noderun.debug.Progress", steps=2_500)), durable=True
            )
            frames = await client.until_terminal(job_id, within=TIMEOUT * 6)
            assert frames[-1]["status"] == "completed"
            # The store holds every message: nothing may be missing, nothing incomplete.
            assert not any(f.get("replay_incomplete") for f in frames)
            seqs = run_seqs(frames, job_id)
            assert seqs == list(range(1, frames[-1]["job_seq"] + 1))


def _handshake(port: int) -> tuple[socket.socket, ClientProtocol]:
    """A WebSocket client on a plain socket with a small receive buffer: the sans-I/O
    ``ClientProtocol`` does the handshake; afterwards nothing reads the socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws"))
    protocol.send_request(protocol.connect())
    sock.sendall(b"".join(protocol.data_to_send()))
    while protocol.handshake_exc is None and not protocol.events_received():
        protocol.receive_data(sock.recv(4096))
        if protocol.state.name == "OPEN":
            break
    assert protocol.state.name == "OPEN", protocol.handshake_exc
    return sock, protocol


def _wait_closed(sock: socket.socket, within: float) -> int:
    """Block until the peer closes or resets the connection (never reading): poll events."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP | select.POLLERR | select.POLLHUP)
    events = poller.poll(within * 1000)
    return events[0][1] if events else 0


def _read_to_end(sock: socket.socket, protocol: ClientProtocol) -> Close | None:
    """Read what is left; the close frame the server sent, if it arrived before the reset."""
    sock.settimeout(TIMEOUT)
    try:
        while data := sock.recv(65536):
            protocol.receive_data(data)
    except ConnectionResetError:
        pass
    protocol.events_received()
    return protocol.close_rcvd


async def test_a_client_that_reads_nothing_is_closed_and_its_run_goes_on() -> None:
    """Frames wait for a client that stopped reading (its socket is not writable): after
    the slow-client timeout the server closes it (1013, transport aborted) anyway."""
    slow = 0.5 * SECOND
    with running_server(slow_client_timeout=slow, outbound_limit=64) as handle:
        sock, protocol = await asyncio.to_thread(_handshake, handle.port)
        job_id = new_job_id()
        run_job: dict[str, Any] = {
            "command": "run_job",
            "data": {
                "job_id": job_id,
                "workflow_id": "wf",
                "graph": graph(nd("p", "noderun.debug.Progress", steps=1_000_000)),
                "execution_options": {"event_detail": "full"},
            },
        }
        protocol.send_binary(msgspec.msgpack.encode(run_job))
        sock.sendall(b"".join(protocol.data_to_send()))
        try:
            events = await asyncio.to_thread(_wait_closed, sock, slow * 2 + TIMEOUT)
            assert events & (select.POLLRDHUP | select.POLLERR | select.POLLHUP), "not closed"
            close = await asyncio.to_thread(_read_to_end, sock, protocol)
            assert close is None or close.code == 1013
        finally:
            sock.close()
        async with connect(handle) as client:
            # Detached, not cancelled: the run goes on (grace period as for any disconnect).
            assert (await client.status(job_id))["status"] == "running"
            await client.command("reconnect_job", {"job_id": job_id})
            await client.command("cancel_job", {"job_id": job_id})
            frames = await client.until_terminal(job_id, within=TIMEOUT * 2)
            assert frames[-1]["status"] == "cancelled"


async def test_a_run_longer_than_the_timeout_does_not_close_its_reading_client() -> None:
    """The timeout counts only while frames wait for the client: a run that lasts many
    timeouts, read as it goes, keeps its connection."""
    slow = 0.2 * SECOND
    with running_server(slow_client_timeout=slow, outbound_limit=16) as handle:
        async with connect(handle) as client:
            burst = graph(nd("p", "noderun.debug.Progress", steps=40, interval=slow / 4))
            job_id = await client.run_job(burst, event_detail="full")
            frames = await client.until_terminal(job_id, within=TIMEOUT * 4)
            assert frames[-1]["status"] == "completed"
            assert len([f for f in frames if f.get("type") == "node_progress"]) == 40


def test_the_backpressure_settings_come_from_flags_and_the_environment() -> None:
    """``--slow-client-timeout``, ``NODERUN_SLOW_CLIENT_TIMEOUT``, ``NODERUN_OUTBOUND_BYTES``;
    a value that is not a number is refused, naming the variable."""
    assert Settings().slow_client_timeout == 30.0
    flags = build_parser().parse_args(["serve", "--slow-client-timeout", "2.5"])
    assert settings_from(flags, {}).slow_client_timeout == 2.5
    env = {"NODERUN_SLOW_CLIENT_TIMEOUT": "7", "NODERUN_OUTBOUND_BYTES": "65536"}
    settings = load_settings(env=env)
    assert (settings.slow_client_timeout, settings.outbound_bytes) == (7.0, 65536)
    with pytest.raises(SettingError, match="NODERUN_SLOW_CLIENT_TIMEOUT"):
        load_settings(env={"NODERUN_SLOW_CLIENT_TIMEOUT": "soon"})
    with pytest.raises(SettingError, match="NODERUN_OUTBOUND_BYTES"):
        load_settings(env={"NODERUN_OUTBOUND_BYTES": "0"})
    with pytest.raises(SettingError, match="--slow-client-timeout"):
        settings_from(build_parser().parse_args(["serve", "--slow-client-timeout", "soon"]), {})
