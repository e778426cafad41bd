"""Several server processes on one store: concurrent writers, and following across them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from noderun.contract import RunStore, StoredFrame
from tests.support.timing import SECOND
from tests.support.waiting import eventually

from .helpers import frame, record, started, terminal

RUNS = 8
FRAMES = 150

# A second server process: writes RUNS runs of FRAMES frames each, then exits.
_WRITER = """
import asyncio, sys
from tests.persistence.helpers import frame, record, started, terminal

async def main(url: str, prefix: str, runs: int, frames: int) -> None:
    async with started(url) as store:
        async def one(job_id: str) -> None:
            await store.create_run(record(job_id))
            for seq in range(1, frames + 1):
                store.append(job_id, seq, frame(job_id, seq))
                if seq % 10 == 0:
                    await asyncio.sleep(0.001)
            await store.finish(job_id, "completed", frames + 1, terminal(job_id, frames + 1), None)
        await asyncio.gather(*(one(f"{prefix}{i}") for i in range(runs)))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def _spawn(url: str, prefix: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WRITER,
        url,
        prefix,
        str(RUNS),
        str(FRAMES),
        cwd=Path(__file__).parents[2],  # the repository root, so `tests` is importable
    )


async def _follow(store: RunStore, job_id: str) -> list[StoredFrame]:
    # The run may not exist yet: wait for its row, then follow it to the end.
    async def created() -> bool:
        return await store.get_run(job_id) is not None

    await eventually(created, SECOND * 10)
    return [stored async for stored in store.follow(job_id, 0)]


async def test_processes_write_concurrently_and_follow_each_other(store_url: str) -> None:
    async with started(store_url) as store:
        children = [await _spawn(store_url, prefix) for prefix in ("a", "b")]
        follower = asyncio.create_task(_follow(store, "a0"))
        for i in range(RUNS):
            job_id = f"p{i}"
            await store.create_run(record(job_id))
            for seq in range(1, FRAMES + 1):
                store.append(job_id, seq, frame(job_id, seq))
            await store.finish(job_id, "completed", FRAMES + 1, terminal(job_id, FRAMES + 1), None)
        codes = await asyncio.wait_for(
            asyncio.gather(*(child.wait() for child in children)), SECOND * 30
        )
        assert codes == [0, 0]

        followed = await asyncio.wait_for(follower, SECOND * 5)
        assert [f.seq for f in followed] == list(range(1, FRAMES + 2))
        assert followed[5].frame == frame("a0", 6)
        for prefix in ("a", "b", "p"):
            for i in range(RUNS):
                job_id = f"{prefix}{i}"
                run = await store.get_run(job_id)
                assert run is not None and run.status == "completed", job_id
                stored = await store.read_frames(job_id, 0)
                assert [f.seq for f in stored] == list(range(1, FRAMES + 2)), job_id
