"""Server subprocesses for the benchmark: start on a free port, wait for health, stop.

Also CPU pinning: the client gets one CPU and the servers the others, so the
client's work never steals cycles from the server it measures. Pinning is
applied by setting this process's own affinity before spawning (a child inherits
it through fork/exec) and narrowing it to the client CPU afterwards; that avoids
``preexec_fn``, which is unsafe once threads exist.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from loadtest.cpu import process_tree_cpu_seconds

__all__ = [
    "HEALTH_TIMEOUT_S",
    "CpuPlan",
    "ServerError",
    "ServerProcess",
    "plan_cpus",
    "spawn_servers",
    "unpinned",
]

HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class ServerError(Exception):
    """A server did not become healthy; ``stderr`` holds the tail of its output."""

    def __init__(self, name: str, reason: str, stderr: str) -> None:
        super().__init__(f"{name}: {reason}\n--- {name} stderr ---\n{stderr}")
        self.name = name
        self.reason = reason
        self.stderr = stderr


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the client and the servers run on; ``None`` means unpinned."""

    client: frozenset[int] | None
    servers: frozenset[int] | None
    warning: str | None

    def describe(self) -> str:
        if self.client is None or self.servers is None:
            return "unpinned"
        return f"client on CPU {_cpus(self.client)}, servers on CPU {_cpus(self.servers)}"


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def plan_cpus() -> CpuPlan:
    """Client on the lowest allowed CPU, servers on the rest; unpinned (with a warning)
    when only one CPU is allowed or the platform has no affinity API."""
    if not hasattr(os, "sched_getaffinity"):
        return CpuPlan(None, None, "no sched_setaffinity on this platform: running unpinned")
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return CpuPlan(None, None, "only one CPU available: client and servers share it")
    return CpuPlan(frozenset(allowed[:1]), frozenset(allowed[1:]), None)


def unpinned() -> CpuPlan:
    """Client and servers share every CPU (``--no-pin``)."""
    return CpuPlan(None, None, "--no-pin: client and servers share every CPU")


@dataclass
class ServerProcess:
    """A running server; ``stop()`` is idempotent."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]

    @property
    def ws_uri(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    def stderr_tail(self, limit: int = 4000) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-limit:]

    def cpu_seconds(self) -> float | None:
        """Cumulative CPU of the server and its descendants, or None (see ``loadtest.cpu``)."""
        return process_tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self.stderr.close()


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the server binds it next)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _start(name: str, argv: Sequence[str], port: int, env: Mapping[str, str]) -> ServerProcess:
    # A file, not a pipe: a chatty server can't block on it. ServerProcess.stop() closes it.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        process = subprocess.Popen(
            [*argv, "--host", HOST, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            env=env,
        )
    except BaseException:
        stderr.close()
        raise
    return ServerProcess(name, port, process, stderr)


def _healthy(server: ServerProcess) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{server.port}/health", timeout=1) as r:
            status: int = r.status
            return status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_healthy(server: ServerProcess, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Poll ``GET /health`` until 200; raise ``ServerError`` on exit or timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(
                server.name, f"exited with code {server.process.returncode}", server.stderr_tail()
            )
        if _healthy(server):
            return
        time.sleep(0.05)
    raise ServerError(server.name, f"not healthy after {timeout_s} s", server.stderr_tail())


@contextlib.contextmanager
def spawn_servers(
    commands: Mapping[str, Sequence[str]],
    plan: CpuPlan,
    env: Mapping[str, str] | None = None,
    spread: Collection[str] = (),
) -> Iterator[dict[str, ServerProcess]]:
    """Start each ``name → argv`` (``--host``/``--port`` are appended) on the plan's
    server CPUs with this environment plus ``env``, wait until all are healthy, pin
    this process to the client CPU, and stop every server on exit, whatever happened.

    The servers named in ``spread`` get every CPU the plan has, the client's included:
    a server whose work runs in several processes (NodeTool workers) needs more than
    the CPUs left beside the client."""
    child_env = {**os.environ, **(env or {})}
    servers: dict[str, ServerProcess] = {}
    try:
        try:
            for name, argv in commands.items():
                if plan.servers is not None and plan.client is not None:
                    cpus = plan.servers | plan.client if name in spread else plan.servers
                    os.sched_setaffinity(0, cpus)
                servers[name] = _start(name, argv, free_port(), child_env)
        finally:
            if plan.client is not None:
                os.sched_setaffinity(0, plan.client)
        for server in servers.values():
            wait_healthy(server)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
