"""CPU accounting from Linux ``/proc``: a process tree's CPU time, and the whole machine's.

Every function returns cumulative seconds, or None where ``/proc`` is missing or
unreadable (another OS, a process that exited): callers difference two readings
and show "n/a" when either is None. Resolution is one clock tick (10 ms), so
windows of a second or more are needed for percent-level figures.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["process_tree_cpu_seconds", "system_busy_cpu_seconds"]

_MAX_PROCESSES = 1000


def _tick() -> float:
    return 1 / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, bounded to ``_MAX_PROCESSES``."""
    tree: list[int] = []
    todo = [pid]
    while todo and len(tree) < _MAX_PROCESSES:
        current = todo.pop()
        tree.append(current)
        for task in os.listdir(f"/proc/{current}/task"):
            # A thread or child may exit between listdir and open.
            with (
                contextlib.suppress(OSError),
                open(f"/proc/{current}/task/{task}/children") as f,
            ):
                todo.extend(int(child) for child in f.read().split())
    return tree


def _process_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # Fields after the parenthesised command name; utime and stime are the 14th/15th.
    fields = stat.rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def process_tree_cpu_seconds(pid: int) -> float | None:
    """User+system CPU of ``pid`` and its live descendants. Descendants count
    because a server may run work in child processes."""
    try:
        return sum(_process_ticks(p) for p in _process_tree(pid)) * _tick()
    except (OSError, ValueError, IndexError):
        return None


def system_busy_cpu_seconds() -> float | None:
    """Non-idle CPU time of the whole machine, summed over CPUs.

    Busy is everything but idle and iowait, so it includes steal: time the
    hypervisor gave to someone else is time the benchmark did not get.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest and guest_nice (fields 9, 10) are already counted in user and nice.
    return (sum(fields[:8]) - idle) * _tick()
