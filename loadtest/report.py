"""Benchmark results: per-round samples, medians across rounds, ratios, table and JSON.

Ratios are noderun / floor for each noderun target, paired by round (see
``ratios``): above 1 is slower for p50 and p99 and costlier in server CPU per
run, below 1 is less throughput. On a busy machine the CPU-per-run ratio is the
steadiest of the four: other processes steal wall time, not CPU time per run.

A durable target also names its ``baseline``, the ephemeral target of the same
run shape (``terminal``): it gets ratios against that baseline, the p50 difference
in milliseconds, and, when it has a ``Goal``, whether it met it.

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

__all__ = ["SATURATED", "Goal", "Round", "TargetSummary", "ratios", "render", "to_json"]

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


@dataclass(frozen=True)
class Goal:
    """What a target should reach: against its baseline, paired by round, at least
    ``min_throughput`` times its runs/s and at most ``max_p50_delta_ms`` more p50;
    on its own, at least ``min_runs_per_s``. ``None`` sets no goal for that figure."""

    min_throughput: float | None = None
    max_p50_delta_ms: float | None = None
    min_runs_per_s: float | None = None

    def met(
        self, throughput: float | None, p50_delta_us: float | None, runs_per_s: float | None
    ) -> dict[str, bool | None]:
        """Whether each goal that is set was met (None where its figure is unknown), by
        the word the verdict uses for it."""
        checks: dict[str, bool | None] = {}
        if self.min_throughput is not None:
            checks["throughput"] = None if throughput is None else throughput >= self.min_throughput
        if self.max_p50_delta_ms is not None:
            checks["p50"] = (
                None if p50_delta_us is None else p50_delta_us <= self.max_p50_delta_ms * 1000
            )
        if self.min_runs_per_s is not None:
            checks["runs/s"] = None if runs_per_s is None else runs_per_s >= self.min_runs_per_s
        return checks

    def verdict(
        self, throughput: float | None, p50_delta_us: float | None, runs_per_s: float | None
    ) -> str:
        words = {None: "n/a", True: "met", False: "missed"}
        wanted = []
        if self.min_throughput is not None:
            wanted.append(f">= {self.min_throughput:.2f}x")
        if self.max_p50_delta_ms is not None:
            wanted.append(f"<= +{self.max_p50_delta_ms:.2f} ms")
        if self.min_runs_per_s is not None:
            wanted.append(f">= {self.min_runs_per_s:.0f} runs/s")
        checks = self.met(throughput, p50_delta_us, runs_per_s)
        return f"goal {', '.join(wanted)}: " + ", ".join(
            f"{name} {words[ok]}" for name, ok in checks.items()
        )

    def to_json(
        self, throughput: float | None, p50_delta_us: float | None, runs_per_s: float | None
    ) -> dict[str, object]:
        checks = self.met(throughput, p50_delta_us, runs_per_s)
        entry: dict[str, object] = {}
        if self.min_throughput is not None:
            entry["min_throughput"] = self.min_throughput
            entry["throughput_met"] = checks["throughput"]
        if self.max_p50_delta_ms is not None:
            entry["max_p50_delta_ms"] = self.max_p50_delta_ms
            entry["p50_met"] = checks["p50"]
        if self.min_runs_per_s is not None:
            entry["min_runs_per_s"] = self.min_runs_per_s
            entry["runs_per_s_met"] = checks["runs/s"]
        return entry


@dataclass
class TargetSummary:
    """All rounds of one target (``floor``, ``terminal``, ``durable-pg``, …).

    ``baseline`` names the target this one is also compared with, ``goal`` what it
    should reach against it.
    """

    name: str
    label: str
    expected_frames: int
    rounds: list[Round] = field(default_factory=list)
    baseline: str | None = None
    goal: Goal | None = None

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
    def db_cpu(self) -> float | None:
        return _median(r.throughput.db_cpu for r in self.rounds)

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


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def ratios(base: TargetSummary, target: TargetSummary) -> dict[str, float | None]:
    """``target`` / ``base`` for p50, p99, throughput and server CPU per run, and
    ``p50_delta_us`` = target p50 - base p50: the median of per-round values, None
    where no round has both sides.

    Pairing each round's target with the base of the same round cancels drift of
    the machine between rounds (a shared VM's speed wanders by tens of percent
    over a minute), which a ratio of medians would keep.
    """
    pairs = list(zip(base.rounds, target.rounds, strict=True))
    return {
        "p50": _median(_ratio(t.p50_us, f.p50_us) for f, t in pairs),
        "p99": _median(_ratio(t.p99_us, f.p99_us) for f, t in pairs),
        "throughput": _median(
            _ratio(t.throughput.runs_per_s, f.throughput.runs_per_s) for f, t in pairs
        ),
        "server_cpu_per_run": _median(
            _ratio(t.throughput.server_us_per_run, f.throughput.server_us_per_run) for f, t in pairs
        ),
        "p50_delta_us": _median(_difference(t.p50_us, f.p50_us) for f, t in pairs),
    }


def _num(value: float | None, width: int, decimals: int, suffix: str = "") -> str:
    text = "n/a" if value is None else f"{value:.{decimals}f}{suffix}"
    return f"{text:>{width}}"


def _baseline_lines(targets: list[TargetSummary], by_name: dict[str, TargetSummary]) -> list[str]:
    """The durable and remote targets against their ephemeral baseline: a table, then one
    sentence per target with the two figures the issue sets goals for."""
    compared = [(t, by_name[t.baseline]) for t in targets if t.rounds and t.baseline in by_name]
    if not compared:
        return []
    lines = [
        "",
        f"{'vs ephemeral':<18}{'p50':>9}{'p50 +ms':>9}{'runs/s':>10}{'srv µs/run':>12}",
    ]
    for t, base in compared:
        r = ratios(base, t)
        delta = "n/a" if r["p50_delta_us"] is None else f"{r['p50_delta_us'] / 1000:+.2f}"
        lines.append(
            f"{t.label:<18}{_num(r['p50'], 9, 2, 'x')}{delta:>9}"
            f"{_num(r['throughput'], 10, 2, 'x')}{_num(r['server_cpu_per_run'], 12, 2, 'x')}"
        )
    lines.append("")
    for t, base in compared:
        r = ratios(base, t)
        throughput = "n/a" if r["throughput"] is None else f"{r['throughput']:.2f}x"
        p50 = "n/a" if r["p50_delta_us"] is None else f"{r['p50_delta_us'] / 1000:+.2f} ms"
        sentence = f"{t.label}: throughput {throughput} ephemeral, p50 {p50}"
        if t.goal is not None and t.goal.min_runs_per_s is not None:
            sentence += f", {t.runs_per_s:.0f} runs/s"
        if t.goal is not None:
            sentence += f" ({t.goal.verdict(r['throughput'], r['p50_delta_us'], t.runs_per_s)})"
        lines.append(sentence)
    return lines


def render(
    targets: list[TargetSummary], header: str, inprocess_us: float | None, notes: list[str]
) -> str:
    """The human-readable report: a table, the ratios, the in-process cost and notes."""
    lines = [header, ""]
    lines.append(
        f"{'target':<18}{'p50 µs':>9}{'p99 µs':>9}{'runs/s':>10}{'srv µs/run':>12}"
        f"{'frames/run':>12}"
        f"{'client CPU':>12}{'server CPU':>12}{'db CPU':>8}{'other CPU':>11}{'bound':>9}"
        f"{'failures':>10}"
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
            f"{_pct(t.client_cpu):>12}{_pct(t.server_cpu):>12}"
            f"{'-' if t.db_cpu is None else _pct(t.db_cpu):>8}{_pct(t.other_cpu):>11}"
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
    lines += _baseline_lines(targets, by_name)
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
            "db_cpu": t.db_cpu,
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
                    "db_cpu": r.throughput.db_cpu,
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
    vs_baseline: dict[str, object] = {}
    for t in by_name.values():
        base = by_name.get(t.baseline) if t.baseline else None
        if base is None:
            continue
        r = ratios(base, t)
        entry: dict[str, object] = {"baseline": base.name, **r}
        if t.goal is not None:
            entry["goal"] = t.goal.to_json(r["throughput"], r["p50_delta_us"], t.runs_per_s)
        vs_baseline[t.name] = entry
    return {
        "config": config,
        "summary": summary,
        "ratios": ratio_map,
        "vs_baseline": vs_baseline,
        "inprocess_us_per_run": inprocess_us,
    }
