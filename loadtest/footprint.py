"""A process's footprint from Linux ``/proc``, and this process's open-file limit.

``footprint(pid)`` reads resident memory (``VmRSS`` in ``/proc/<pid>/status``),
the thread count (``Threads`` there) and the open descriptors (entries of
``/proc/<pid>/fd``) in one go; it raises ``FootprintUnavailable`` where ``/proc``
is missing or the process has gone, since a soak or connection test without
these figures has nothing to judge.

``raise_fd_limit(needed)`` lifts this process's soft ``RLIMIT_NOFILE`` as far as
the hard limit allows. A child started afterwards inherits the raised limit
through fork/exec, which is how a server subprocess gets it too.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

__all__ = ["FdLimit", "Footprint", "FootprintUnavailable", "footprint", "raise_fd_limit"]


class FootprintUnavailable(Exception):
    """``/proc/<pid>`` could not be read (no ``/proc``, or the process exited)."""

    def __init__(self, pid: int, reason: str) -> None:
        super().__init__(f"cannot read /proc/{pid}: {reason}")
        self.pid = pid
        self.reason = reason


@dataclass(frozen=True)
class Footprint:
    """Resident memory in KiB, open file descriptors, threads."""

    rss_kib: int
    fds: int
    threads: int

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024


def footprint(pid: int) -> Footprint:
    """``pid``'s resident memory, descriptors and threads right now."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError as exc:
        raise FootprintUnavailable(pid, f"{type(exc).__name__}: {exc}") from None
    fields: dict[str, str] = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    try:
        rss_kib = int(fields["VmRSS"].split()[0])
        threads = int(fields["Threads"])
    except (KeyError, ValueError, IndexError):
        # A zombie has no VmRSS line: it has exited as far as we are concerned.
        raise FootprintUnavailable(pid, "no VmRSS/Threads in status") from None
    return Footprint(rss_kib, fds, threads)


@dataclass(frozen=True)
class FdLimit:
    """``RLIMIT_NOFILE`` after ``raise_fd_limit``: ``enough`` when ``soft >= needed``."""

    soft: int
    hard: int
    needed: int

    @property
    def enough(self) -> bool:
        return self.soft >= self.needed

    def describe(self) -> str:
        if self.enough:
            return f"open-file limit {self.soft} (hard {self.hard}), {self.needed} needed"
        return (
            f"open-file limit too low: {self.needed} descriptors needed, the hard limit "
            f"RLIMIT_NOFILE is {self.hard} (raise it with `ulimit -Hn` as root, "
            f"in /etc/security/limits.conf or with systemd's LimitNOFILE=), or ask for fewer"
        )


def raise_fd_limit(needed: int) -> FdLimit:
    """Raise this process's soft open-file limit to ``needed``, capped at the hard
    limit (never lowered); report what it is now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return FdLimit(soft, hard, needed)
