"""The many-connections test: N idle WebSockets on one real ``noderun serve``.

``python -m loadtest.connections [--connections N] [--store none|sqlite|postgresql://…]
[--clients K] [--concurrency C] [--idle S] [--quick] [--json PATH]``

Starts ``noderun serve`` as a subprocess (``loadtest.servers``; pinned away from
the clients when there are two CPUs), raises the open-file limit for itself and
so for the server (too low a hard limit is an error, exit status 2, saying so),
and then, through ``K`` client processes (``loadtest.fleet``; more when one
process's open-file limit cannot hold its share):

1. opens ``N`` connections, at most ``C`` handshakes in flight across all clients;
2. measures the server (``VmRSS``, descriptors, threads) with all of them open;
3. runs one verified ``nodetool.text.Concat`` run on every connection;
4. leaves them idle for ``S`` seconds (server pings included), checks that all
   are still open and measures again;
5. closes them, waits for the server to release their descriptors, measures again.

Reports connections established, time to open all, handshake p50/p99, runs
completed/failed, server RSS before/open/after and RSS per connection (growth
from before to all open, divided by the connections). ``postgresql://…`` is an
admin DSN: a fresh database is created there and dropped at the end.

Exit status: 0 when every connection opened, ran its run correctly and stayed
open; 1 otherwise; 2 when the server, a client or the database could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loadtest.client import RunError, RunSpec, verified_run
from loadtest.cpu import process_tree_cpu_seconds
from loadtest.database import DatabaseUnavailable
from loadtest.fleet import FD_MARGIN
from loadtest.footprint import Footprint, footprint, raise_fd_limit
from loadtest.servers import ServerError, ServerProcess, plan_cpus, python_module, spawn_servers
from loadtest.stats import percentile
from loadtest.stores import parse_store, server_store

__all__ = ["ConnectionReport", "main", "render"]

ROOT = Path(__file__).resolve().parents[1]
_QUICK = {"connections": 200, "idle": 1.0, "concurrency": 50}
#: Seconds a client process has for one command; opening 10,000 takes ~10-60 s.
COMMAND_TIMEOUT_S = 600.0
#: Seconds the server has to release closed connections' descriptors.
RELEASE_TIMEOUT_S = 60.0
RELEASE_POLL_S = 0.1
REPLY_LIMIT = 2**26


class ClientFailed(Exception):
    """A client process could not start or stopped answering."""


@dataclass
class ConnectionReport:
    """Everything the test measured; ``passed`` when nothing failed."""

    requested: int
    clients: int
    concurrency: int
    store: str
    idle_s: float
    established: int = 0
    open_failures: int = 0
    first_open_error: str | None = None
    open_all_s: float = 0.0
    #: CPU seconds spent while opening, by the server and by all client processes.
    open_server_cpu_s: float | None = None
    open_client_cpu_s: float | None = None
    handshake_p50_ms: float = 0.0
    handshake_p99_ms: float = 0.0
    handshake_max_ms: float = 0.0
    runs_completed: int = 0
    runs_failed: int = 0
    first_run_failure: str | None = None
    open_after_idle: int = 0
    before: Footprint | None = None
    all_open: Footprint | None = None
    after_runs_idle: Footprint | None = None
    after_close: Footprint | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rss_per_connection_kib(self) -> float:
        if self.before is None or self.all_open is None or not self.established:
            return 0.0
        return (self.all_open.rss_kib - self.before.rss_kib) / self.established

    @property
    def open_rate(self) -> float:
        return self.established / self.open_all_s if self.open_all_s else 0.0

    @property
    def passed(self) -> bool:
        return (
            self.established == self.requested
            and self.runs_completed == self.requested
            and self.open_after_idle == self.requested
        )

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["rss_per_connection_kib"] = self.rss_per_connection_kib
        data["open_rate"] = self.open_rate
        data["passed"] = self.passed
        return data


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _cpu(server: ServerProcess, clients: list[_Client]) -> tuple[float | None, float | None]:
    client_cpu = [process_tree_cpu_seconds(c.process.pid) for c in clients]
    total = None if None in client_cpu else sum(c or 0.0 for c in client_cpu)
    return server.cpu_seconds(), total


def _spent(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def _fp(f: Footprint | None) -> str:
    return "n/a" if f is None else f"{f.rss_mib:7.1f} MiB  {f.fds:6d} fds  {f.threads:3d} threads"


def render(r: ConnectionReport) -> str:
    lines = [
        f"noderun connections: {r.requested} requested, store {r.store}, "
        f"{r.clients} client process(es), at most {r.concurrency} handshakes at once, "
        f"idle {r.idle_s:g} s",
        f"established          {r.established} (failed {r.open_failures})",
        f"time to open all     {r.open_all_s:.2f} s ({r.open_rate:.0f} connections/s; CPU "
        f"server {_secs(r.open_server_cpu_s)}, clients {_secs(r.open_client_cpu_s)})",
        f"handshake            p50 {r.handshake_p50_ms:.2f} ms  p99 {r.handshake_p99_ms:.2f} ms"
        f"  max {r.handshake_max_ms:.2f} ms",
        f"runs                 completed {r.runs_completed}, failed {r.runs_failed}",
        f"open after idle      {r.open_after_idle}",
        f"server before        {_fp(r.before)}",
        f"server all open      {_fp(r.all_open)}",
        f"  after runs + idle  {_fp(r.after_runs_idle)}",
        f"server after close   {_fp(r.after_close)}",
        f"RSS per connection   {r.rss_per_connection_kib:.1f} KiB",
    ]
    if r.first_open_error:
        lines.append(f"first open error: {r.first_open_error}")
    if r.first_run_failure:
        lines.append(f"first run failure: {r.first_run_failure}")
    lines += [f"note: {note}" for note in r.notes]
    lines.append("PASS" if r.passed else "FAIL")
    return "\n".join(lines)


class _Client:
    """One ``loadtest.fleet`` process and its command pipe."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, uri: str, count: int, concurrency: int) -> _Client:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        process = await asyncio.create_subprocess_exec(
            *python_module("loadtest.fleet", uri, str(count), str(concurrency)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            # The ``open`` reply carries every handshake time on one line.
            limit=REPLY_LIMIT,
        )
        client = cls(process)
        await client.reply()
        return client

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def reply(self) -> dict[str, object]:
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                line = await self.process.stdout.readline()
        except TimeoutError:
            raise ClientFailed(
                f"client {self.process.pid} silent for {COMMAND_TIMEOUT_S} s"
            ) from None
        if not line:
            raise ClientFailed(f"client {self.process.pid} exited ({await self.process.wait()})")
        message: dict[str, object] = json.loads(line)
        if "error" in message:
            raise ClientFailed(str(message["error"]))
        return message

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def _all(clients: list[_Client], command: str) -> list[dict[str, object]]:
    for client in clients:
        await client.send(command)
    return list(await asyncio.gather(*(client.reply() for client in clients)))


async def _released(server: ServerProcess, fds: int) -> Footprint:
    """The server's footprint once its descriptors are back to ``fds`` (or the deadline)."""
    deadline = time.monotonic() + RELEASE_TIMEOUT_S
    while True:
        now = footprint(server.process.pid)
        if now.fds <= fds or time.monotonic() > deadline:
            return now
        await asyncio.sleep(RELEASE_POLL_S)


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def _measure(server: ServerProcess, report: ConnectionReport) -> None:
    await verified_run(server.ws_uri, RunSpec("terminal"))
    report.before = footprint(server.process.pid)
    counts = [c for c in _shares(report.requested, report.clients) if c]
    gates = [max(1, g) for g in _shares(report.concurrency, len(counts))]
    clients: list[_Client] = []
    try:
        for count, gate in zip(counts, gates, strict=True):
            clients.append(await _Client.start(server.ws_uri, count, gate))
        cpu_before = _cpu(server, clients)
        started = time.perf_counter()
        opened = await _all(clients, "open")
        report.open_all_s = time.perf_counter() - started
        cpu_after = _cpu(server, clients)
        report.open_server_cpu_s = _spent(cpu_after[0], cpu_before[0])
        report.open_client_cpu_s = _spent(cpu_after[1], cpu_before[1])
        handshakes: list[float] = []
        for reply in opened:
            report.established += int(str(reply["opened"]))
            report.open_failures += int(str(reply["failed"]))
            report.first_open_error = report.first_open_error or _text(reply["first_error"])
            handshakes += [float(v) for v in reply["handshake_ms"]]  # type: ignore[attr-defined]
        if handshakes:
            report.handshake_p50_ms = percentile(handshakes, 50)
            report.handshake_p99_ms = percentile(handshakes, 99)
            report.handshake_max_ms = max(handshakes)
        report.all_open = footprint(server.process.pid)
        for reply in await _all(clients, "run"):
            report.runs_completed += int(str(reply["completed"]))
            report.runs_failed += int(str(reply["failed"]))
            report.first_run_failure = report.first_run_failure or _text(reply["first_failure"])
        # Idle on purpose: what matters is what idle connections cost over time.
        await asyncio.sleep(report.idle_s)
        report.open_after_idle = sum(int(str(r["open"])) for r in await _all(clients, "check"))
        report.after_runs_idle = footprint(server.process.pid)
        await _all(clients, "close")
        report.after_close = await _released(server, report.before.fds)
    finally:
        for client in clients:
            await client.stop()


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.connections", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument(
        "--store", default="none", help="none | sqlite | sqlite:///PATH | postgresql://admin-dsn"
    )
    parser.add_argument("--clients", type=int, default=1, help="client processes (at least)")
    parser.add_argument(
        "--concurrency", type=int, default=100, help="handshakes in flight, all clients together"
    )
    parser.add_argument(
        "--idle", type=float, default=30.0, help="seconds the connections stay idle after their run"
    )
    parser.add_argument("--quick", action="store_true", help=f"{_QUICK} unless given")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    if args.quick:
        given = set(argv if argv is not None else sys.argv[1:])
        for name, value in _QUICK.items():
            if f"--{name}" not in given:
                setattr(args, name, value)
    if args.connections < 1 or args.clients < 1 or args.concurrency < 1 or args.idle < 0:
        parser.error("--connections, --clients and --concurrency must be positive, --idle >= 0")
    try:
        args.store_choice = parse_store(args.store)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    limit = raise_fd_limit(args.connections + FD_MARGIN)
    if not limit.enough:
        print(f"error: server process: {limit.describe()}", file=sys.stderr)
        return 2
    per_client = limit.soft - FD_MARGIN
    clients = min(args.connections, max(args.clients, math.ceil(args.connections / per_client)))
    plan = plan_cpus()
    try:
        with server_store(args.store_choice) as (url, store):
            report = ConnectionReport(args.connections, clients, args.concurrency, store, args.idle)
            if plan.warning:
                report.notes.append(plan.warning)
            argv = python_module("noderun", "serve", "--store", url, "--log-level", "warning")
            with spawn_servers({"noderun": argv}, plan) as servers:
                _run(_measure(servers["noderun"], report))
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ServerError, ClientFailed, RunError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2))
    return 0 if report.passed else 1


def _run(coro: Coroutine[None, None, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
