"""``GET /metrics`` on a real server: the text exposition, parsed with prometheus-client's
own parser, moves exactly as the runs, connections and refusals that happened."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.helpers import ServerHandle, running_server
from tests.support.client import Client, connect
from tests.support.frames import Frame
from tests.support.graphs import graph, nd, new_job_id
from tests.support.timing import SECOND, TIMEOUT
from tests.support.waiting import eventually

#: ``(sample name, sorted label pairs)`` → value.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape_text(server: ServerHandle) -> tuple[str, str]:
    """The body and content type of ``GET /metrics``."""
    with _OPENER.open(server.http_url + "/metrics", timeout=TIMEOUT) as response:
        assert response.status == 200
        return response.read().decode(), response.headers["Content-Type"]


def scrape(server: ServerHandle) -> Samples:
    """Every sample of ``GET /metrics``, parsed by prometheus-client."""
    text, _ = scrape_text(server)
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not exposed"
    return samples[key]


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def scrape_until(
    server: ServerHandle, predicate: Callable[[Samples], bool], within: float = TIMEOUT
) -> Samples:
    """Scrape until ``predicate`` holds: for what the server learns only when a socket's
    end reaches it (nothing to await from the client's side)."""
    scraped: list[Samples] = []

    async def there() -> bool:
        scraped.append(await asyncio.to_thread(scrape, server))
        return predicate(scraped[-1])

    await eventually(there, within, explain=lambda: "the metrics never got there")
    return scraped[-1]


@pytest.fixture(scope="module")
def durable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    path: Path = tmp_path_factory.mktemp("metrics") / "runs.db"
    with running_server(store=f"sqlite:///{path}") as handle:
        yield handle


async def durable_run(client: Client, nodes: Frame, *, event_detail: str) -> str:
    return await client.run_job(
        nodes, durable=True, event_detail=event_detail, require_terminal_result=False
    )


CONCAT = "nodetool.text.Concat"


async def test_runs_move_the_run_counters_exactly(durable_server: ServerHandle) -> None:
    """One completed, failed and cancelled ephemeral run and one durable run (sqlite):
    started by detail and durability, finished by status, durations by node type,
    the store's commits, and nothing active afterwards."""
    server = durable_server
    before = scrape(server)
    async with connect(server) as client:
        job = await client.run_job(graph(nd("c", CONCAT, a="a", b="b")), event_detail="terminal")
        assert (await client.until_terminal(job))[-1]["status"] == "completed"
        job = await client.run_job(graph(nd("f", "noderun.debug.Fail")), event_detail="full")
        assert (await client.until_terminal(job))[-1]["status"] == "failed"
        job = await client.run_job(
            graph(nd("s", "noderun.debug.Sleep", seconds=30)), event_detail="outputs"
        )
        await client.recv_until(lambda frame: frame.get("message") == "Job started")
        await client.command("cancel_job", {"job_id": job})
        assert (await client.until_terminal(job))[-1]["status"] == "cancelled"
        job = await durable_run(
            client, graph(nd("c", CONCAT, a="a", b="b"), nd("d", CONCAT)), event_detail="terminal"
        )
        assert (await client.until_terminal(job))[-1]["status"] == "completed"
    after = scrape(server)

    started = "noderun_runs_started_total"
    assert delta(before, after, started, event_detail="terminal", durable="false") == 1
    assert delta(before, after, started, event_detail="full", durable="false") == 1
    assert delta(before, after, started, event_detail="outputs", durable="false") == 1
    assert delta(before, after, started, event_detail="terminal", durable="true") == 1
    assert delta(before, after, started, event_detail="full", durable="true") == 0
    finished = "noderun_runs_finished_total"
    assert delta(before, after, finished, status="completed") == 2
    assert delta(before, after, finished, status="failed") == 1
    assert delta(before, after, finished, status="cancelled") == 1
    assert value(after, "noderun_runs_active") == 0

    def count(kind: str, samples: Samples) -> float:
        return samples.get(("noderun_run_duration_seconds_count", (("node_type", kind),)), 0)

    for kind in (CONCAT, "noderun.debug.Fail", "noderun.debug.Sleep", "graph"):
        assert count(kind, after) - count(kind, before) == 1, kind
        inf = value(after, "noderun_run_duration_seconds_bucket", node_type=kind, le="+Inf")
        assert inf == count(kind, after)
    assert value(after, "noderun_run_duration_seconds_sum", node_type="noderun.debug.Sleep") > 0

    # The one durable run is in every batch that committed since: as many runs as batches.
    commits = delta(before, after, "noderun_store_commit_seconds_count")
    assert commits >= 1
    assert delta(before, after, "noderun_store_commit_batch_runs_count") == commits
    assert delta(before, after, "noderun_store_commit_batch_runs_sum") == commits
    assert delta(before, after, "noderun_store_commit_seconds_sum") > 0
    assert value(after, "noderun_store_up") == 1
    assert value(after, "noderun_refusals_total", reason="invalid_job_id") == value(
        before, "noderun_refusals_total", reason="invalid_job_id"
    )


async def test_a_refused_run_counts_as_a_refusal_not_a_start(durable_server: ServerHandle) -> None:
    """A ``job_id`` past the limit is refused: the refusal counter moves, nothing starts."""
    before = scrape(durable_server)
    async with connect(durable_server) as client:
        job = await client.run_job(graph(nd("c", CONCAT)), job_id="x" * 257)
        assert (await client.until_terminal(job))[-1]["status"] == "failed"
    after = scrape(durable_server)
    assert delta(before, after, "noderun_refusals_total", reason="invalid_job_id") == 1
    assert delta(before, after, "noderun_refusals_total", reason="server_busy") == 0
    for detail in ("full", "outputs", "terminal"):
        assert delta(before, after, "noderun_runs_started_total", event_detail=detail,
                     durable="false") == 0  # fmt: skip


async def test_a_durable_run_without_a_store_is_a_store_refusal() -> None:
    """With no store configured: ``store_unavailable`` counted, and no store metrics."""
    with running_server() as server:
        async with connect(server) as client:
            job = await durable_run(client, graph(nd("c", CONCAT)), event_detail="terminal")
            assert (await client.until_terminal(job))[-1]["status"] == "failed"
        samples = scrape(server)
    assert value(samples, "noderun_refusals_total", reason="store_unavailable") == 1
    assert value(samples, "noderun_refusals_total", reason="job_already_running") == 0
    assert not any(name.startswith("noderun_store_") for name, _ in samples)


async def test_the_connections_gauge_follows_open_and_close() -> None:
    with running_server() as server:
        assert value(scrape(server), "noderun_connections") == 0
        async with connect(server) as first:
            async with connect(server) as second:
                await first.ping_barrier()
                await second.ping_barrier()
                assert value(scrape(server), "noderun_connections") == 2
            await scrape_until(server, lambda s: value(s, "noderun_connections") == 1)
        await scrape_until(server, lambda s: value(s, "noderun_connections") == 0)
        assert value(scrape(server), "noderun_outbound_queue_frames") == 0


async def test_a_slow_consumer_close_is_counted() -> None:
    """A client that reads nothing is closed after the slow-client timeout: counted once,
    and still counted once the connection is gone."""
    import msgspec

    from tests.server.test_backpressure import _handshake, _wait_closed

    slow = 0.5 * SECOND
    with running_server(slow_client_timeout=slow, outbound_limit=64) as server:
        assert value(scrape(server), "noderun_slow_consumer_closes_total") == 0
        sock, protocol = await asyncio.to_thread(_handshake, server.port)
        run_job = {
            "command": "run_job",
            "data": {
                "job_id": new_job_id(),
                "workflow_id": "wf",
                "graph": graph(nd("p", "noderun.debug.Progress", steps=1_000_000)),
                "execution_options": {"event_detail": "full"},
            },
        }
        protocol.send_binary(msgspec.msgpack.encode(run_job))
        sock.sendall(b"".join(protocol.data_to_send()))
        try:
            await asyncio.to_thread(_wait_closed, sock, slow * 2 + TIMEOUT)
        finally:
            sock.close()
        samples = await scrape_until(server, lambda s: value(s, "noderun_connections") == 0)
        assert value(samples, "noderun_slow_consumer_closes_total") == 1


async def test_a_cancelled_blocking_node_abandons_its_runner() -> None:
    """The runner pool's counters: an abandoned runner and its replacement."""
    with running_server(runners=2) as server:
        before = scrape(server)
        assert value(before, "noderun_runner_threads") == 2
        assert value(before, "noderun_runner_busy") == 0
        async with connect(server) as client:
            job = await client.run_job(graph(nd("b", "noderun.debug.BlockingSleep", seconds=0.5)))
            await client.recv_until(
                lambda frame: frame.get("type") == "node_update" and frame["status"] == "running"
            )
            await client.command("cancel_job", {"job_id": job})
            assert (await client.until_terminal(job))[-1]["status"] == "cancelled"
        after = scrape(server)
    assert delta(before, after, "noderun_runner_abandoned_total") == 1
    assert delta(before, after, "noderun_runner_threads_started_total") == 1
    assert delta(before, after, "noderun_runner_abandon_refused_total") == 0
    assert value(after, "noderun_runner_threads") == 2


def test_metrics_are_prometheus_text_with_the_version(durable_server: ServerHandle) -> None:
    text, content_type = scrape_text(durable_server)
    assert content_type.startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    (info,) = families["noderun_info"].samples
    assert info.name == "noderun_info" and info.value == 1 and info.labels["version"]
    assert families["noderun_runs_started"].type == "counter"
    assert families["noderun_run_duration_seconds"].type == "histogram"
    assert families["noderun_store_commit_seconds"].type == "histogram"
    assert families["noderun_runs_active"].type == "gauge"


def test_metrics_take_only_get(durable_server: ServerHandle) -> None:
    request = urllib.request.Request(durable_server.http_url + "/metrics", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        _OPENER.open(request, timeout=TIMEOUT)
    with info.value:
        assert info.value.code == 405
