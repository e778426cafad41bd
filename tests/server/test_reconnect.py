"""Disconnect, reconnect and replay (PROTOCOL.md §4), and the detach grace period."""

from __future__ import annotations

from tests.server.helpers import ServerHandle, running_server
from tests.support.client import Client, connect
from tests.support.frames import Frame, is_terminal
from tests.support.graphs import graph, nd
from tests.support.timing import SECOND, TIMEOUT
from tests.support.waiting import eventually

CONCAT = graph(nd("n1", "nodetool.text.Concat", a="x", b="y"))
#: Full profile: job running, node running, 8 progress, the sink's output_update (§3.2),
#: node completed, terminal = 13.
PROGRESS = graph(nd("p", "noderun.debug.Progress", steps=8, interval=0.15 * SECOND))
PROGRESS_MESSAGES = 13


def seqs(frames: list[Frame], job_id: str) -> list[int]:
    return [f["job_seq"] for f in frames if f.get("job_id") == job_id and "job_seq" in f]


async def reconnect(client: Client, job_id: str, **extra: object) -> Frame:
    """Send reconnect_job; return job_resumed."""
    await client.command("reconnect_job", {"job_id": job_id, "workflow_id": "wf", **extra})
    frames = await client.recv_until(lambda f: f.get("type") == "job_resumed")
    assert len(frames) == 1, frames
    return frames[0]


async def test_reconnect_from_new_connection_replays_then_streams_live(
    server: ServerHandle,
) -> None:
    """Disconnect mid-run; reconnect_job from a new connection → job_resumed, the buffered
    messages in job_seq order, then live ones, then the terminal: every seq exactly once.
    Repeating reconnect_job on that connection does not duplicate the live stream."""
    async with connect(server) as first:
        job_id = await first.run_job(PROGRESS)
        seen = await first.recv_until(lambda f: f.get("type") == "node_progress")
    assert seqs(seen, job_id) == [1, 2, 3]
    async with connect(server) as second:
        resumed = await reconnect(second, job_id)
        assert resumed["job_id"] == job_id and resumed["workflow_id"] == "wf"
        assert resumed["replay_incomplete"] is False
        assert "job_seq" not in resumed
        replayed = [await second.recv() for _ in range(resumed["replay_count"])]
        assert seqs(replayed, job_id) == list(range(1, resumed["last_seq"] + 1))
        # The SDK resends reconnect_job every 2 s: these must not duplicate anything.
        again = await reconnect(second, job_id)
        assert again["replay_count"] == 0
        await second.command("resume_job", {"job_id": job_id})
        frames = await second.until_terminal(job_id, within=TIMEOUT * 2)
    if resumed["status"] == "running":
        assert resumed["last_seq"] >= 3
    assert seqs(replayed + frames, job_id) == list(range(1, PROGRESS_MESSAGES + 1))
    assert [f["type"] for f in frames if "job_seq" not in f] == ["job_resumed"]
    assert frames[-1]["status"] == "completed"
    assert frames[-1]["result"] == {"outputs": {"p": {"output": 8}}}


async def test_repeated_reconnect_on_the_running_connection_does_not_duplicate(
    server: ServerHandle,
) -> None:
    """reconnect_job from the connection that started the run: job_resumed with nothing
    replayed, and each live message still arrives once."""
    async with connect(server) as client:
        job_id = await client.run_job(PROGRESS)
        frames = await client.recv_until(lambda f: f.get("type") == "node_progress")
        for _ in range(3):
            await client.command("reconnect_job", {"job_id": job_id})
        frames += await client.until_terminal(job_id, within=TIMEOUT * 2)
    resumed = [f for f in frames if f.get("type") == "job_resumed"]
    assert len(resumed) == 3
    assert all(r["replay_count"] == 0 for r in resumed)
    assert seqs(frames, job_id) == list(range(1, PROGRESS_MESSAGES + 1))


async def test_reconnect_to_finished_run_resends_terminal_with_outputs(
    server: ServerHandle,
) -> None:
    """reconnect_job of a finished run → job_resumed (status completed) and the buffered
    messages again, ending with the terminal job_update with result.outputs."""
    async with connect(server) as client:
        job_id = await client.run_job(CONCAT, explicit_types=True)
        original = await client.until_terminal(job_id)
    async with connect(server) as client:
        resumed = await reconnect(client, job_id)
        replayed = [await client.recv() for _ in range(resumed["replay_count"])]
        assert await client.ping_barrier() == []
    assert resumed["status"] == "completed"
    assert resumed["last_seq"] == original[-1]["job_seq"]
    assert replayed == original[1:]
    assert replayed[-1]["result"] == {
        "outputs": {"n1": {"output": {"type": "string", "value": "xy"}}}
    }


async def test_reconnect_after_seq_replays_only_later_messages(server: ServerHandle) -> None:
    """The after_seq extension: replay starts after the client's last job_seq."""
    nodes = graph(nd("p", "noderun.debug.Progress", steps=3))
    async with connect(server) as client:
        job_id = await client.run_job(nodes)
        original = await client.until_terminal(job_id)
    total = original[-1]["job_seq"]
    async with connect(server) as client:
        resumed = await reconnect(client, job_id, after_seq=3)
        replayed = [await client.recv() for _ in range(resumed["replay_count"])]
        assert await client.ping_barrier() == []
    assert resumed["replay_count"] == total - 3
    assert resumed["replay_incomplete"] is False
    assert seqs(replayed, job_id) == list(range(4, total + 1))
    assert replayed[-1]["status"] == "completed"


async def test_reconnect_unknown_job_is_failed_job_not_found(server: ServerHandle) -> None:
    """reconnect_job of an unknown run → job_update failed with error "job not found"."""
    async with connect(server) as client:
        await client.command("reconnect_job", {"job_id": "never-ran", "workflow_id": "w"})
        frame = await client.recv()
        await client.command("resume_job", {"job_id": "never-ran-either"})
        resumed = await client.recv()
    assert frame["type"] == "job_update"
    assert (frame["status"], frame["error"]) == ("failed", "job not found")
    assert (frame["job_id"], frame["workflow_id"]) == ("never-ran", "w")
    assert resumed["error"] == "job not found"


async def test_replay_buffer_drops_oldest_and_says_so() -> None:
    """With a replay buffer smaller than the run, reconnect says replay_incomplete and
    replays the newest messages only."""
    with running_server(replay_limit=3) as server:
        nodes = graph(nd("p", "noderun.debug.Progress", steps=5))
        async with connect(server) as client:
            job_id = await client.run_job(nodes)
            original = await client.until_terminal(job_id)
        async with connect(server) as client:
            resumed = await reconnect(client, job_id)
            replayed = [await client.recv() for _ in range(resumed["replay_count"])]
    total = original[-1]["job_seq"]
    assert resumed["replay_incomplete"] is True
    assert seqs(replayed, job_id) == [total - 2, total - 1, total]


async def test_detached_run_is_cancelled_after_the_grace_period() -> None:
    """A run left with no connection is cancelled after detach_grace; a later
    reconnect_job sees it ended cancelled."""
    with running_server(detach_grace=0.2) as server:
        async with connect(server) as client:
            job_id = await client.run_job(graph(nd("s", "noderun.debug.Sleep", seconds=30)))
            await client.recv_until(lambda f: f.get("type") == "node_update")
        async with connect(server) as client:

            async def ended() -> bool:
                status: str = (await client.status(job_id))["status"]
                return status != "running"

            await eventually(ended)
            assert (await client.status(job_id))["status"] == "cancelled"
            resumed = await reconnect(client, job_id)
            replayed = [await client.recv() for _ in range(resumed["replay_count"])]
    assert resumed["status"] == "cancelled"
    assert is_terminal(replayed[-1], job_id) and replayed[-1]["status"] == "cancelled"


async def test_reattaching_within_the_grace_period_keeps_the_run(server: ServerHandle) -> None:
    """A run whose client reconnects is not cancelled (default grace): it completes."""
    nodes = graph(nd("s", "noderun.debug.Sleep", seconds=0.3))
    async with connect(server) as client:
        job_id = await client.run_job(nodes)
        await client.recv()
    async with connect(server) as client:
        await reconnect(client, job_id)
        frames = await client.until_terminal(job_id)
    assert frames[-1]["status"] == "completed"


async def test_two_connections_follow_one_run(server: ServerHandle) -> None:
    """A second connection that reconnects to a live run gets it too; the first keeps
    getting it: both see every job_seq once and the same terminal."""
    async with connect(server) as first, connect(server) as second:
        job_id = await first.run_job(PROGRESS)
        first_frames = await first.recv_until(lambda f: f.get("type") == "node_progress")
        resumed = await reconnect(second, job_id)
        second_frames = [resumed] + await second.until_terminal(job_id, within=TIMEOUT * 2)
        first_frames += await first.until_terminal(job_id, within=TIMEOUT * 2)
    expected = list(range(1, PROGRESS_MESSAGES + 1))
    assert seqs(first_frames, job_id) == expected
    assert seqs(second_frames, job_id) == expected
    assert first_frames[-1] == second_frames[-1]
