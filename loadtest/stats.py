"""Order statistics for the benchmark: percentiles of latencies, medians across rounds."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["median", "percentile"]


def percentile(samples: Sequence[float], pct: float) -> float:
    """The nearest-rank ``pct`` percentile (0 < pct <= 100) of ``samples``.

    Nearest-rank always returns an observed sample, so p99 of 2,000 runs is the
    20th slowest run rather than an interpolation between two runs.
    Raises ``ValueError`` on an empty sequence or a ``pct`` out of range.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile out of range: {pct}")
    ordered = sorted(samples)
    rank = math.ceil(pct / 100 * len(ordered))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (mean of the middle two for an even count).

    Raises ``ValueError`` on an empty sequence.
    """
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
