"""The limits of PROTOCOL.md §7 against a real server: connections (1013), in-flight runs
per user and per connection (queued with ``queue_position``, started FIFO, refused past
the queue bound), inbound frame size (1009), each advertised in capabilities; and job
ids scoped per user (one user's id tells another nothing)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.server.helpers import running_server
from tests.support.client import Client, connect
from tests.support.frames import Frame
from tests.support.graphs import graph, nd, new_job_id
from tests.support.timing import TIMEOUT

SLEEP = graph(nd("s", "noderun.debug.Sleep", seconds=30))
CONCAT = graph(nd("c", "nodetool.text.Concat", a="a", b="b"))
ALICE = {"Authorization": "Bearer alice"}
BOB = {"Authorization": "Bearer bob"}


def _queued(frame: Frame, job_id: str) -> int | None:
    """The ``queue_position`` of a ``job_update queued`` of ``job_id``, else ``None``."""
    if (
        frame.get("type") == "job_update"
        and frame.get("job_id") == job_id
        and frame.get("status") == "queued"
    ):
        position = frame["queue_position"]
        assert isinstance(position, int)
        return position
    return None


async def _started(client: Client, job_id: str) -> None:
    await client.recv_until(
        lambda f: f.get("job_id") == job_id and f.get("status") == "running" and "job_seq" in f
    )


async def _queued_at(client: Client, job_id: str, position: int) -> list[Frame]:
    """Frames up to the ack-then-queued of a new run, checking its position."""
    frames = await client.recv_until(lambda f: _queued(f, job_id) is not None)
    assert _queued(frames[-1], job_id) == position
    assert frames[-1]["job_seq"] >= 1  # a message of the run: replayable
    return frames


# -- connections ------------------------------------------------------------------------


async def test_a_connection_past_max_connections_is_closed_1013_with_a_reason() -> None:
    with running_server(max_connections=2) as handle:
        async with connect(handle) as first, connect(handle) as second:
            await first.ping_barrier()
            await second.ping_barrier()
            async with connect(handle) as third:
                with pytest.raises(ConnectionClosed) as info:
                    await third.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1013
            assert info.value.rcvd.reason == "server full: 2 connections"
            # The two admitted ones are unaffected.
            job_id = await first.run_job(CONCAT)
            assert (await first.until_terminal(job_id))[-1]["status"] == "completed"
        # Their slots free when they close (the server notices asynchronously).
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            async with connect(handle) as again:
                try:
                    await again.ping_barrier()
                    break
                except ConnectionClosed:
                    assert asyncio.get_running_loop().time() < deadline


# -- frame size -------------------------------------------------------------------------


async def test_a_message_over_max_frame_bytes_is_closed_1009() -> None:
    with running_server(max_frame_bytes=4096) as handle:
        async with connect(handle) as client:
            # Just under the limit: an ordinary (malformed) frame, answered.
            await client.ws.send(b"\xc1" * 4000)
            assert (await client.recv())["error"] == "invalid_frame"
            await client.ws.send(b"\x00" * 4097)
            with pytest.raises(ConnectionClosed) as info:
                await client.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


# -- capabilities -----------------------------------------------------------------------


def test_capabilities_advertise_every_limit() -> None:
    settings: dict[str, Any] = {
        "max_connections": 7,
        "max_runs_per_connection": 3,
        "max_runs_per_user": 5,
        "max_queued_runs_per_user": 11,
        "max_frame_bytes": 65536,
    }
    with running_server(**settings) as handle:
        limits = httpx.get(f"{handle.http_url}/api/sdk/v1/capabilities").json()["limits"]
    assert {name: limits[name] for name in settings} == settings
    assert limits["max_inline_bytes"] == 65536


# -- in-flight runs and the queue --------------------------------------------------------


async def test_runs_past_the_user_limit_queue_with_positions_and_start_in_fifo_order() -> None:
    with running_server(max_runs_per_user=1) as handle:
        async with connect(handle) as client:
            first = await client.run_job(SLEEP)
            await _started(client, first)
            second = await client.run_job(SLEEP)
            frames = await _queued_at(client, second, 1)
            assert frames[-2]["message"] == "Job started" and frames[-2]["job_id"] == second
            third = await client.run_job(CONCAT)
            await _queued_at(client, third, 2)
            assert (await client.status(third))["status"] == "queued"

            await client.command("cancel_job", {"job_id": first})
            frames = await client.recv_until(lambda f: _queued(f, third) == 1)
            # first ends, which starts second (in its task) and moves third up.
            assert (first, "cancelled") in [(f.get("job_id"), f.get("status")) for f in frames]
            await _started(client, second)
            assert (await client.status(third))["status"] == "queued"

            await client.command("cancel_job", {"job_id": second})
            frames = await client.until_terminal(third)
            assert frames[-1]["status"] == "completed"
            ended = [
                f["job_id"]
                for f in frames
                if f.get("type") == "job_update" and f["status"] in ("cancelled", "completed")
            ]
            assert ended == [second, third]


async def test_the_connection_limit_queues_only_that_connections_runs() -> None:
    with running_server(max_runs_per_connection=1) as handle:
        async with connect(handle) as busy, connect(handle) as other:
            first = await busy.run_job(SLEEP)
            await _started(busy, first)
            waiting = await busy.run_job(CONCAT)
            await _queued_at(busy, waiting, 1)
            # Same user, another connection with room: runs at once, past the queued run.
            quick = await other.run_job(CONCAT)
            frames = await other.until_terminal(quick)
            assert frames[-1]["status"] == "completed"
            assert not any(f.get("status") == "queued" for f in frames)
            await busy.command("cancel_job", {"job_id": first})
            assert (await busy.until_terminal(waiting))[-1]["status"] == "completed"


async def test_a_full_queue_refuses_the_run_with_a_terminal_failed_naming_the_limit() -> None:
    with running_server(max_runs_per_user=1, max_queued_runs_per_user=1) as handle:
        async with connect(handle) as client:
            first = await client.run_job(SLEEP)
            await _started(client, first)
            second = await client.run_job(SLEEP)
            await _queued_at(client, second, 1)
            third = await client.run_job(CONCAT)
            refusal = await client.recv()
            assert (refusal["type"], refusal["job_id"], refusal["status"]) == (
                "job_update",
                third,
                "failed",
            )
            assert "job_seq" not in refusal  # no run was created, no ack
            assert "max_queued_runs_per_user" in refusal["error"]
            assert (await client.status(third))["status"] == "not_found"
            await client.command("cancel_job", {"job_id": first})
            await client.command("cancel_job", {"job_id": second})
            await client.until_terminal(second)


async def test_a_queued_run_can_be_cancelled_and_the_runs_behind_it_move_up() -> None:
    with running_server(max_runs_per_user=1) as handle:
        async with connect(handle) as client:
            first = await client.run_job(SLEEP)
            await _started(client, first)
            second = await client.run_job(SLEEP)
            await _queued_at(client, second, 1)
            third = await client.run_job(SLEEP)
            await _queued_at(client, third, 2)

            await client.command("cancel_job", {"job_id": second})
            frames = await client.recv_until(lambda f: _queued(f, third) == 1)
            ack = frames[0]
            assert (ack["message"], ack["job_id"]) == ("Job cancellation requested", second)
            terminal = frames[1]
            assert (terminal["job_id"], terminal["status"]) == (second, "cancelled")
            # Nothing of it ran.
            assert not any(
                f.get("job_id") == second and f.get("status") == "running" for f in frames
            )
            assert (await client.status(first))["status"] == "running"
            for job_id in (first, third):
                await client.command("cancel_job", {"job_id": job_id})
            await client.until_terminal(third)


async def test_a_queued_run_outlives_its_connection_and_can_be_reconnected() -> None:
    """Runs do not depend on their connection (PROTOCOL.md §4): a queued one stays queued,
    and starts when a slot frees."""
    with running_server(max_runs_per_user=1) as handle:
        async with connect(handle) as client:
            first = await client.run_job(SLEEP)
            await _started(client, first)
            second = await client.run_job(CONCAT)
            await _queued_at(client, second, 1)
        async with connect(handle) as client:
            assert (await client.status(second))["status"] == "queued"
            await client.command("reconnect_job", {"job_id": second})
            await client.recv_until(lambda f: _queued(f, second) == 1)
            await client.command("cancel_job", {"job_id": first})
            assert (await client.until_terminal(second))[-1]["status"] == "completed"


async def test_limits_count_per_user() -> None:
    """One user at the limit does not queue another user's runs."""
    with running_server(tokens=("alice", "bob"), max_runs_per_user=1) as handle:
        async with connect(handle, headers=ALICE) as alice, connect(handle, headers=BOB) as bob:
            first = await alice.run_job(SLEEP)
            await _started(alice, first)
            job_id = await bob.run_job(CONCAT)
            frames = await bob.until_terminal(job_id)
            assert frames[-1]["status"] == "completed"
            assert not any(f.get("status") == "queued" for f in frames)
            await alice.command("cancel_job", {"job_id": first})
            await alice.until_terminal(first)


# -- job ids per user --------------------------------------------------------------------


async def test_two_users_run_the_same_job_id_independently() -> None:
    with running_server(tokens=("alice", "bob")) as handle:
        async with connect(handle, headers=ALICE) as alice, connect(handle, headers=BOB) as bob:
            job_id = new_job_id()
            await alice.run_job(SLEEP, job_id=job_id, workflow_id="alice-wf")
            await _started(alice, job_id)
            # Not "job_already_running": Alice's id tells Bob nothing.
            await bob.run_job(SLEEP, job_id=job_id, workflow_id="bob-wf")
            frames = await bob.recv_until(lambda f: f.get("status") == "running")
            assert frames[0]["message"] == "Job started"
            status = await bob.status(job_id)
            assert (status["status"], status["workflow_id"]) == ("running", "bob-wf")

            async with httpx.AsyncClient(base_url=handle.http_url) as http:
                for auth, workflow in ((ALICE, "alice-wf"), (BOB, "bob-wf")):
                    answer = (await http.get(f"/api/jobs/{job_id}", headers=auth)).json()
                    assert answer["workflow_id"] == workflow

            await bob.command("cancel_job", {"job_id": job_id})
            frames = await bob.until_terminal(job_id)
            assert frames[-1]["workflow_id"] == "bob-wf"
            assert frames[-1]["status"] == "cancelled"
            assert (await alice.status(job_id))["status"] == "running"

            await bob.command("reconnect_job", {"job_id": job_id})
            resumed = await bob.recv()
            assert (resumed["type"], resumed["status"]) == ("job_resumed", "cancelled")

            await alice.command("cancel_job", {"job_id": job_id})
            assert (await alice.until_terminal(job_id))[-1]["workflow_id"] == "alice-wf"


async def _durable(client: Client, graph_: Frame, job_id: str, workflow_id: str) -> None:
    await client.run_job(graph_, durable=True, job_id=job_id, workflow_id=workflow_id)


async def test_two_users_run_the_same_durable_job_id_independently(store_url: str) -> None:
    with running_server(tokens=("alice", "bob"), store=store_url) as handle:
        job_id = new_job_id()
        async with connect(handle, headers=ALICE) as alice, connect(handle, headers=BOB) as bob:
            await _durable(
                alice, graph(nd("c", "nodetool.text.Concat", a="al", b="ice")), job_id, "wa"
            )
            await _durable(bob, graph(nd("c", "nodetool.text.Concat", a="b", b="ob")), job_id, "wb")
            a = (await alice.until_terminal(job_id))[-1]
            b = (await bob.until_terminal(job_id))[-1]
        assert a["result"] == {"outputs": {"c": {"output": "alice"}}}
        assert b["result"] == {"outputs": {"c": {"output": "bob"}}}
        # From a fresh connection (a durable run is read back through the store).
        for auth, output in ((ALICE, "alice"), (BOB, "bob")):
            async with connect(handle, headers=auth) as client:
                await client.command("reconnect_job", {"job_id": job_id})
                terminal = (await client.until_terminal(job_id))[-1]
                assert terminal["result"] == {"outputs": {"c": {"output": output}}}
                assert terminal["job_id"] == job_id  # the wire keeps the client's id
        async with httpx.AsyncClient(base_url=handle.http_url) as http:
            for auth, workflow in ((ALICE, "wa"), (BOB, "wb")):
                answer = (await http.get(f"/api/jobs/{job_id}", headers=auth)).json()
                assert (answer["job_id"], answer["workflow_id"]) == (job_id, workflow)
