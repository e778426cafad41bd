"""What the group-commit writer counts about its commits, for the metrics endpoint.

Plain bucket counts updated once per committed batch (never per item); the scraper
(:mod:`noderun.server.metrics`) turns them into histograms when it asks. Touched on
the server's loop only, so there is no lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Final, Protocol

__all__ = ["BATCH_RUNS", "COMMIT_SECONDS", "CommitStats"]

#: Upper bounds (seconds) of the commit latency buckets: a local fsync to a slow network.
COMMIT_SECONDS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

#: Upper bounds of the batch size buckets (distinct runs per committed batch).
BATCH_RUNS: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)


class _Keyed(Protocol):
    @property
    def job_id(self) -> str: ...


class CommitStats:
    """Histograms of successful commits: latency and distinct runs per batch.

    ``*_counts`` are per-bucket counts (not cumulative; the last one is past every bound).
    """

    __slots__ = ("batch_runs_counts", "batch_runs_sum", "seconds_counts", "seconds_sum")

    def __init__(self) -> None:
        self.seconds_counts = [0] * (len(COMMIT_SECONDS) + 1)
        self.seconds_sum = 0.0
        self.batch_runs_counts = [0] * (len(BATCH_RUNS) + 1)
        self.batch_runs_sum = 0

    def committed(self, seconds: float, batch: Sequence[_Keyed]) -> None:
        """Count one committed batch that took ``seconds``."""
        runs = len({item.job_id for item in batch})
        self.seconds_counts[bisect_left(COMMIT_SECONDS, seconds)] += 1
        self.seconds_sum += seconds
        self.batch_runs_counts[bisect_left(BATCH_RUNS, runs)] += 1
        self.batch_runs_sum += runs
