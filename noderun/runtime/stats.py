"""What the hub counts about runs, for the metrics endpoint: plain integers only.

The hub bumps these on its hot path, inline (a dict entry incremented per start,
refusal and finish, one ``bisect`` per finish: no call, no lock, no object per
run); turning them into metric families is the scraper's work
(:mod:`noderun.server.metrics`), done only when it asks.
There is no lock: everything here is touched on the server's loop only.
"""

from __future__ import annotations

from typing import Final

from noderun.contract import Refusal, RunStatus

__all__ = ["RUN_SECONDS", "Histogram", "RunStats"]

#: Upper bounds (seconds) of the run duration buckets: from a trivial inline node to
#: minutes-long model calls.
RUN_SECONDS: Final = (
    0.0001,
    0.00025,
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
    10.0,
    30.0,
    60.0,
    300.0,
)

_DETAILS: Final = ("full", "outputs", "terminal")


class Histogram:
    """Bucket counts (not cumulative; the last one is past every bound) and their sum.

    A value is counted at ``bisect_left(bounds, value)``: one equal to a bound belongs
    to that bound's bucket, as Prometheus' ``le`` says.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0


class RunStats:
    """Counters of the hub's runs since it started."""

    __slots__ = ("durations", "finished", "refused", "started_durable", "started_ephemeral")

    def __init__(self) -> None:
        #: Runs acked with ``job_started``, by ``event_detail``: ephemeral ones when
        #: admitted, durable ones once their row is committed.
        self.started_ephemeral = dict.fromkeys(_DETAILS, 0)
        self.started_durable = dict.fromkeys(_DETAILS, 0)
        #: Runs whose terminal was published, by status.
        self.finished: dict[str, int] = dict.fromkeys(
            (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED), 0
        )
        #: ``run_job`` frames refused before a run started, by the error frame's code.
        self.refused = dict.fromkeys(Refusal, 0)
        #: Durations of finished runs by what they ran (:attr:`Run.kind`).
        self.durations: dict[str, Histogram] = {}

    def histogram(self, kind: str) -> Histogram:
        """A new duration histogram for ``kind`` (the hub counts into it inline)."""
        histogram = self.durations[kind] = Histogram(RUN_SECONDS)
        return histogram
