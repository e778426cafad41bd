"""Benchmark results: per-round samples, medians across rounds, ratios, table and JSON.

Ratios are noderun / floor for each noderun target, paired by round (see
``ratios``): above 1 is slower for p50 and p99 and costlier in server CPU per
run, below 1 is less throughput. On a busy machine the CPU-per-run ratio is the
steadiest of the four: other processes steal wall time, not CPU time per run.

A side of the throughput measurement is saturated when it used at least
``SATURATED`` of a CPU in the timed window. ``bound`` names the saturated
side(s): ``server`` is the clean case; with ``client`` the runs/s figure is only
a lower bound for the server; with ``both`` it is close to, but may understate,
the server's capacity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from loadtest.phases import SequentialResult, ThroughputResult
from loadtest.stats import median, percentile

__all__ = ["SATURATED", "Round", "TargetSummary", "render", "to_json"]

SATURATED = 0.85


@dataclass(frozen=True)
class Round:
    """One round's measurements of one target."""

    sequential: SequentialResult
    throughput: ThroughputResult

    @property
    def p50_us(self) -> float | None:
        """None when no sequential run of the round succeeded; so for p99."""
        latencies = self.sequential.latencies_us
        return percentile(latencies, 50) if latencies else None

    @property
    def p99_us(self) -> float | None:
        latencies = self.sequential.latencies_us
        return percentile(latencies, 99) if latencies else None


def _median(values: Iterable[float | None]) -> float | None:
    """The median of the known values, None when none is known."""
    known = [v for v in values if v is not None]
    return median(known) if known else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass
class TargetSummary:
    """All rounds of one target (``floor``, ``terminal`` or ``full``)."""

    name: str
    label: str
    expected_frames: int
    rounds: list[Round] = field(default_factory=list)

    @property
    def p50_us(self) -> float | None:
        return _median(r.p50_us for r in self.rounds)

    @property
    def p99_us(self) -> float | None:
        return _median(r.p99_us for r in self.rounds)

    @property
    def runs_per_s(self) -> float:
        return median([r.throughput.runs_per_s for r in self.rounds])

    @property
    def server_us_per_run(self) -> float | None:
        return _median(r.throughput.server_us_per_run for r in self.rounds)

    @property
    def client_cpu(self) -> float:
        return median([r.throughput.client_cpu for r in self.rounds])

    @property
    def server_cpu(self) -> float | None:
        return _median(r.throughput.server_cpu for r in self.rounds)

    @property
    def other_cpu(self) -> float | None:
        return _median(r.throughput.other_cpu for r in self.rounds)

    @property
    def failures(self) -> int:
        return sum(r.sequential.failures + r.throughput.failures for r in self.rounds)

    @property
    def first_failure(self) -> str | None:
        for r in self.rounds:
            for failure in (r.sequential.first_failure, r.throughput.first_failure):
                if failure is not None:
                    return failure
        return None

    @property
    def frames(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for r in self.rounds:
            total += r.sequential.frames
            total += r.throughput.frames
        return total

    @property
    def bound(self) -> str:
        """Which side limited throughput, judged by CPU use."""
        client = self.client_cpu >= SATURATED
        if self.server_cpu is None:
            return "client" if client else "unknown"
        server = self.server_cpu >= SATURATED
        return {(True, True): "both", (True, False): "client", (False, True): "server"}.get(
            (client, server), "neither"
        )


def _frames_text(frames: Counter[int]) -> str:
    if not frames:
        return "-"
    return "/".join(str(n) for n, _ in frames.most_common())


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def ratios(floor: TargetSummary, target: TargetSummary) -> dict[str, float | None]:
    """``target`` / ``floor`` for p50, p99, throughput and server CPU per run: the
    median of per-round ratios, None where no round has both sides.

    Pairing each round's target with the floor of the same round cancels drift of
    the machine between rounds (a shared VM's speed wanders by tens of percent
    over a minute), which a ratio of medians would keep.
    """
    pairs = list(zip(floor.rounds, target.rounds, strict=True))
    return {
        "p50": _median(_ratio(t.p50_us, f.p50_us) for f, t in pairs),
        "p99": _median(_ratio(t.p99_us, f.p99_us) for f, t in pairs),
        "throughput": _median(
            _ratio(t.throughput.runs_per_s, f.throughput.runs_per_s) for f, t in pairs
        ),
        "server_cpu_per_run": _median(
            _ratio(t.throughput.server_us_per_run, f.throughput.server_us_per_run) for f, t in pairs
        ),
    }


def _num(value: float | None, width: int, decimals: int, suffix: str = "") -> str:
    text = "n/a" if value is None else f"{value:.{decimals}f}{suffix}"
    return f"{text:>{width}}"


def render(
    targets: list[TargetSummary], header: str, inprocess_us: float | None, notes: list[str]
) -> str:
    """The human-readable report: a table, the ratios, the in-process cost and notes."""
    lines = [header, ""]
    lines.append(
        f"{'target':<18}{'p50 µs':>9}{'p99 µs':>9}{'runs/s':>10}{'srv µs/run':>12}"
        f"{'frames/run':>12}"
        f"{'client CPU':>12}{'server CPU':>12}{'other CPU':>11}{'bound':>9}{'failures':>10}"
    )
    for t in targets:
        if not t.rounds:
            continue
        frames = _frames_text(t.frames)
        if frames != str(t.expected_frames):
            frames += f" (!{t.expected_frames})"
        lines.append(
            f"{t.label:<18}{_num(t.p50_us, 9, 1)}{_num(t.p99_us, 9, 1)}"
            f"{t.runs_per_s:>10.0f}{_num(t.server_us_per_run, 12, 1)}{frames:>12}"
            f"{_pct(t.client_cpu):>12}{_pct(t.server_cpu):>12}{_pct(t.other_cpu):>11}"
            f"{t.bound:>9}{t.failures:>10}"
        )
    by_name = {t.name: t for t in targets if t.rounds}
    floor = by_name.get("floor")
    others = [t for t in targets if t.rounds and t.name != "floor"]
    if floor is not None and others:
        lines += [
            "",
            f"{'noderun / floor':<18}{'p50':>9}{'p99':>9}{'runs/s':>10}{'srv µs/run':>12}",
        ]
        for t in others:
            r = ratios(floor, t)
            lines.append(
                f"{t.label:<18}{_num(r['p50'], 9, 2, 'x')}{_num(r['p99'], 9, 2, 'x')}"
                f"{_num(r['throughput'], 10, 2, 'x')}{_num(r['server_cpu_per_run'], 12, 2, 'x')}"
            )
    lines.append("")
    if inprocess_us is None:
        lines.append("in-process: unavailable")
    else:
        lines.append(f"in-process: {inprocess_us:.1f} µs per trivial run (no socket)")
    failures = [
        f"{t.label}: {t.failures} failed runs; first: {t.first_failure}"
        for t in targets
        if t.first_failure is not None
    ]
    lines += [f"note: {n}" for n in [*notes, *failures]]
    return "\n".join(lines)


def to_json(
    targets: list[TargetSummary], config: dict[str, object], inprocess_us: float | None
) -> dict[str, object]:
    """Everything measured, per round and summarised, as JSON-ready data."""
    summary: dict[str, object] = {}
    for t in targets:
        if not t.rounds:
            continue
        summary[t.name] = {
            "p50_us": t.p50_us,
            "p99_us": t.p99_us,
            "runs_per_s": t.runs_per_s,
            "server_us_per_run": t.server_us_per_run,
            "client_cpu": t.client_cpu,
            "server_cpu": t.server_cpu,
            "other_cpu": t.other_cpu,
            "bound": t.bound,
            "failures": t.failures,
            "first_failure": t.first_failure,
            "frames_per_run": {str(k): v for k, v in sorted(t.frames.items())},
            "rounds": [
                {
                    "p50_us": r.p50_us,
                    "p99_us": r.p99_us,
                    "sequential_runs": len(r.sequential.latencies_us),
                    "runs_per_s": r.throughput.runs_per_s,
                    "server_us_per_run": r.throughput.server_us_per_run,
                    "throughput_runs": r.throughput.runs,
                    "throughput_elapsed_s": r.throughput.elapsed_s,
                    "client_cpu": r.throughput.client_cpu,
                    "server_cpu": r.throughput.server_cpu,
                    "other_cpu": r.throughput.other_cpu,
                }
                for r in t.rounds
            ],
        }
    by_name = {t.name: t for t in targets if t.rounds}
    floor = by_name.get("floor")
    ratio_map = {
        t.name: ratios(floor, t) for t in by_name.values() if floor is not None and t is not floor
    }
    return {
        "config": config,
        "summary": summary,
        "ratios": ratio_map,
        "inprocess_us_per_run": inprocess_us,
    }
