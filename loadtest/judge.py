"""The soak's verdicts over its samples: flat memory, no descriptor or thread growth,
a stable p99, and every run accounted for.

Pure functions over ``Sample``s, so each rule is tested without a server. Samples
taken during the warm-up are ignored; the rest are split into thirds:

- RSS: the median of the last third is at most ``RSS_GROWTH`` above the median
  of the first third;
- descriptors, threads: the last third never goes above the first third's maximum;
- p99: the last window's p99 is at most ``p99_factor`` times the first window's
  (windows after the warm-up, with at least one timed run);
- runs: none failed, lost, duplicated or stray, and every run sent was completed.

With fewer than ``MIN_SAMPLES`` samples after the warm-up the flatness verdicts
fail: too short a soak proves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from loadtest.stats import median

__all__ = ["MIN_SAMPLES", "RSS_GROWTH", "Counts", "Sample", "Verdict", "judge"]

MIN_SAMPLES = 3
RSS_GROWTH = 0.10


@dataclass(frozen=True)
class Sample:
    """The server at ``t_s`` seconds into the soak, and the window of runs before it."""

    t_s: float
    rss_kib: int
    fds: int
    threads: int
    runs: int
    p50_ms: float | None
    p99_ms: float | None
    #: Gauges read from the server's ``/metrics``, when it has one.
    gauges: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Counts:
    sent: int
    completed: int
    failed: int
    lost: int
    duplicates: int
    strays: int


@dataclass(frozen=True)
class Verdict:
    name: str
    passed: bool
    detail: str


def _thirds(values: Sequence[float]) -> tuple[Sequence[float], Sequence[float]]:
    third = max(1, len(values) // 3)
    return values[:third], values[-third:]


def _no_growth(name: str, values: Sequence[float], unit: str) -> Verdict:
    first, last = _thirds(values)
    limit = max(first)
    peak = max(last)
    return Verdict(
        name,
        peak <= limit,
        f"first-third max {limit:g}{unit}, last-third max {peak:g}{unit}",
    )


def judge(
    samples: Sequence[Sample], counts: Counts, warmup_s: float, p99_factor: float = 2.0
) -> list[Verdict]:
    """Every verdict, passed or not, in a fixed order."""
    steady = [s for s in samples if s.t_s > warmup_s]
    verdicts: list[Verdict] = []
    if len(steady) < MIN_SAMPLES:
        reason = f"{len(steady)} samples after the {warmup_s:g} s warm-up, {MIN_SAMPLES} needed"
        verdicts += [Verdict(name, False, reason) for name in ("rss flat", "fds", "threads")]
    else:
        first, last = _thirds([s.rss_kib / 1024 for s in steady])
        before, after = median(first), median(last)
        verdicts.append(
            Verdict(
                "rss flat",
                after <= before * (1 + RSS_GROWTH),
                f"first-third median {before:.1f} MiB, last-third median {after:.1f} MiB "
                f"({(after / before - 1):+.1%}, limit +{RSS_GROWTH:.0%})",
            )
        )
        verdicts.append(_no_growth("fds", [s.fds for s in steady], ""))
        verdicts.append(_no_growth("threads", [s.threads for s in steady], ""))
    timed = [s.p99_ms for s in steady if s.p99_ms is not None]
    if len(timed) < 2:
        verdicts.append(Verdict("p99 stable", False, f"{len(timed)} timed windows, 2 needed"))
    else:
        verdicts.append(
            Verdict(
                "p99 stable",
                timed[-1] <= timed[0] * p99_factor,
                f"first window {timed[0]:.2f} ms, last window {timed[-1]:.2f} ms "
                f"(limit {p99_factor:g}x)",
            )
        )
    bad = counts.failed + counts.lost + counts.duplicates + counts.strays
    verdicts.append(
        Verdict(
            "runs",
            bad == 0 and counts.completed == counts.sent and counts.sent > 0,
            f"sent {counts.sent}, completed {counts.completed}, failed {counts.failed}, "
            f"lost {counts.lost}, duplicate terminals {counts.duplicates}, "
            f"stray frames {counts.strays}",
        )
    )
    return verdicts
