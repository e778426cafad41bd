"""The NodeTool worker pool's metrics on a real server with a real worker process."""

from __future__ import annotations

import pytest

from tests.nodetool.test_server import DEMO, nodetool_server, run
from tests.server.test_metrics import scrape, scrape_until, value
from tests.support.client import connect
from tests.support.graphs import graph, nd

pytestmark = pytest.mark.timeout(120)


async def test_worker_pool_metrics_follow_a_busy_worker_and_a_restart() -> None:
    with nodetool_server() as server:
        idle = scrape(server)
        assert value(idle, "noderun_nodetool_workers") == 1
        assert value(idle, "noderun_nodetool_busy") == 0
        assert value(idle, "noderun_nodetool_queued") == 0
        assert value(idle, "noderun_nodetool_restarts_total") == 0
        async with connect(server) as client:
            job_id = await client.run_job(graph(nd("w", DEMO + "Wait", seconds=30)))
            await client.recv_until(lambda frame: frame.get("type") == "node_progress")
            assert value(scrape(server), "noderun_nodetool_busy") == 1
            await client.command("cancel_job", {"job_id": job_id})
            assert (await client.until_terminal(job_id))[-1]["status"] == "cancelled"

            crashed = await run(client, graph(nd("d", DEMO + "Die", code=3)))
            assert crashed[-1]["status"] == "failed"
        back = await scrape_until(
            server,
            lambda s: (
                value(s, "noderun_nodetool_restarts_total") == 1
                and value(s, "noderun_nodetool_workers") == 1
            ),
            within=60,
        )
        assert value(back, "noderun_nodetool_busy") == 0
