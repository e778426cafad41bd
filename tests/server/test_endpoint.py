"""The HTTP/WebSocket edge (PROTOCOL.md §1): auth, /health, no per-message deflate, and
one connection's blocking node not stalling another's run."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Mapping

import pytest
from websockets.exceptions import ConnectionClosed

from tests.server.helpers import ServerHandle, running_server
from tests.support.client import connect
from tests.support.frames import is_terminal
from tests.support.graphs import graph, nd
from tests.support.timing import SECOND, TIMEOUT

CONCAT = graph(nd("n1", "nodetool.text.Concat", a="a", b="b"))
#: Seconds connection A's blocking node holds its runner thread.
BLOCK = 2.0 * SECOND


@pytest.fixture(scope="module")
def auth_server() -> Iterator[ServerHandle]:
    """A server that requires the token "secret"."""
    with running_server(tokens=("secret",)) as handle:
        yield handle


async def closed_with(
    server: ServerHandle, *, query: str = "", headers: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Connect (the handshake succeeds), then return the close code and reason."""
    async with connect(server, query=query, headers=headers) as client:
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def runs_fine(
    server: ServerHandle, *, query: str = "", headers: Mapping[str, str] | None = None
) -> None:
    async with connect(server, query=query, headers=headers) as client:
        job_id = await client.run_job(CONCAT)
        frames = await client.until_terminal(job_id)
    assert frames[-1]["status"] == "completed"


# -- auth -----------------------------------------------------------------------------------


async def test_missing_token_is_closed_1008(auth_server: ServerHandle) -> None:
    """No token: the socket is accepted, then closed with 1008 "Missing authentication"."""
    assert await closed_with(auth_server) == (1008, "Missing authentication")


async def test_wrong_token_is_closed_1008(auth_server: ServerHandle) -> None:
    """A wrong token (header or query) → 1008 "Invalid authentication"."""
    assert await closed_with(auth_server, headers={"Authorization": "Bearer nope"}) == (
        1008,
        "Invalid authentication",
    )
    assert await closed_with(auth_server, query="?api_key=nope") == (
        1008,
        "Invalid authentication",
    )


async def test_empty_bearer_falls_back_to_missing(auth_server: ServerHandle) -> None:
    """An Authorization header that is not a bearer token counts as no token."""
    assert await closed_with(auth_server, headers={"Authorization": "Basic c2VjcmV0"}) == (
        1008,
        "Missing authentication",
    )


async def test_bearer_token_is_accepted(auth_server: ServerHandle) -> None:
    """Authorization: Bearer <token> → the connection works."""
    await runs_fine(auth_server, headers={"Authorization": "Bearer secret"})


async def test_api_key_query_parameter_is_accepted(auth_server: ServerHandle) -> None:
    """?api_key=<token> → the connection works."""
    await runs_fine(auth_server, query="?api_key=secret")


async def test_without_tokens_no_auth_is_needed(server: ServerHandle) -> None:
    """With no tokens configured, any client (even one sending a token) is let in."""
    await runs_fine(server)
    await runs_fine(server, headers={"Authorization": "Bearer whatever"})


# -- HTTP and WebSocket settings ----------------------------------------------------------------


def test_health_returns_ok(server: ServerHandle) -> None:
    """GET /health → 200 {"status":"ok", …} as JSON."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(server.http_url + "/health", timeout=TIMEOUT) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("application/json")
        body = json.loads(response.read())
    assert body["status"] == "ok"
    assert isinstance(body["active_runs"], int)


async def test_per_message_deflate_is_not_negotiated(server: ServerHandle) -> None:
    """The server does not accept permessage-deflate even when the client offers it."""
    async with connect(server, compression="deflate") as client:
        assert client.ws.request is not None and client.ws.response is not None
        assert "permessage-deflate" in client.ws.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in client.ws.response.headers
        assert client.ws.protocol.extensions == []
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"


# -- isolation -----------------------------------------------------------------------------------


async def test_blocking_node_does_not_stall_other_connections(server: ServerHandle) -> None:
    """While connection A's BlockingSleep holds a runner thread, connection B's run
    completes, and A's run is still running when it does; then A completes too."""
    async with connect(server) as a, connect(server) as b:
        slow = await a.run_job(graph(nd("block", "noderun.debug.BlockingSleep", seconds=BLOCK)))
        await a.recv_until(lambda f: f.get("type") == "node_update")
        fast = await b.run_job(CONCAT)
        frames = await b.until_terminal(fast)
        assert frames[-1]["status"] == "completed"
        assert (await b.status(slow))["status"] == "running"
        a_frames = await a.until_terminal(slow, within=TIMEOUT + BLOCK)
    assert not any(is_terminal(f, slow) for f in a_frames[:-1])
    assert a_frames[-1]["status"] == "completed"
    assert a_frames[-1]["result"] == {"outputs": {"block": {"output": BLOCK}}}


async def test_a_burst_past_a_small_outbound_limit_is_paced_not_closed() -> None:
    """A burst far past the outbound limit: the run waits for the client, which gets
    every frame and stays connected (PROTOCOL.md §1; see test_backpressure.py)."""
    with running_server(outbound_limit=4) as small:
        burst = graph(nd("p", "noderun.debug.Progress", steps=1000))
        async with connect(small) as client:
            job_id = await client.run_job(burst)
            frames = await client.until_terminal(job_id)
            assert frames[-1]["status"] == "completed"
            assert len([f for f in frames if f.get("type") == "node_progress"]) == 1000


async def test_runs_belong_to_the_user_whose_token_started_them() -> None:
    """With auth on, another user's run is "not found": no cancel, status, reconnect or stop."""
    with running_server(tokens=("alice", "bob")) as handle:
        alice_auth = {"Authorization": "Bearer alice"}
        bob_auth = {"Authorization": "Bearer bob"}
        async with (
            connect(handle, headers=alice_auth) as alice,
            connect(handle, headers=bob_auth) as bob,
        ):
            job_id = await alice.run_job(graph(nd("s", "noderun.debug.Sleep", seconds=30)))
            await alice.recv_until(lambda f: f.get("status") == "running")

            await bob.command("cancel_job", {"job_id": job_id})
            assert (await bob.recv())["error"] == "Job not found or already completed"
            assert (await bob.status(job_id))["status"] == "not_found"
            await bob.command("reconnect_job", {"job_id": job_id})
            answer = await bob.recv()
            assert (answer["type"], answer["status"], answer["error"]) == (
                "job_update",
                "failed",
                "job not found",
            )
            assert "job_seq" not in answer  # not a message of any run

            await alice.command("cancel_job", {"job_id": job_id})
            frames = await alice.until_terminal(job_id)
            assert frames[-1]["status"] == "cancelled"


async def test_a_replay_longer_than_the_outbound_limit_is_delivered_whole() -> None:
    """Reconnecting to a run with more buffered messages than the outbound limit gets
    every one of them: replayed messages are already held, so they are not refused."""
    with running_server(outbound_limit=8) as small:
        async with connect(small) as client:
            job_id = await client.run_job(
                graph(nd("p", "noderun.debug.Progress", steps=30, interval=0.001))
            )
            await client.until_terminal(job_id)
        async with connect(small) as client:
            await client.command("reconnect_job", {"job_id": job_id})
            resumed = await client.recv()
            assert resumed["type"] == "job_resumed"
            frames = await client.until_terminal(job_id)
        assert resumed["replay_count"] == len(frames) == resumed["last_seq"]
        assert [f["job_seq"] for f in frames] == list(range(1, len(frames) + 1))
