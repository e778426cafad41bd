"""A large graph beside trivial runs: does one big run hold up everyone else?

``python -m loadtest.largegraph`` starts ``noderun serve`` (no store,
``--max-graph-nodes`` raised to the chain), then on one connection runs a chain of
``--nodes`` (100,000) ``nodetool.text.Concat`` nodes, each feeding the next, while a
second connection runs trivial single-node runs back to back and a third opens
fresh WebSocket connections (the handshake is what a stalled loop holds up first).
It prints the chain's time to complete, the trivial runs' p50/p99/max and count
during it (against the same runs on an idle server first), the handshakes'
p50/p99/max, and the server's peak RSS; exit status 1 when the trivial runs' p99
during the chain misses ``--goal-ms`` (50).

Opt-in, like ``loadtest.bench``: not part of the test suite (it asserts a time).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from loadtest.servers import plan_cpus, python_module, spawn_servers
from loadtest.stats import percentile

__all__ = ["main"]

_TERMINAL = frozenset({"completed", "failed", "cancelled"})


class _Frame(msgspec.Struct):
    type: str | None = None
    job_id: str | None = None
    status: str | None = None
    error: str | None = None


_decode = msgspec.msgpack.Decoder(_Frame).decode


def _run_job(job_id: str, graph: Mapping[str, object], detail: str) -> bytes:
    return msgspec.msgpack.encode(
        {
            "command": "run_job",
            "type": "run_job",
            "request_id": None,
            "data": {
                "type": "run_job_request",
                "job_id": job_id,
                "workflow_id": job_id,
                "graph": graph,
                "params": {},
                "explicit_types": True,
                "require_terminal_result": True,
                "execution_options": {"persistence": "session", "event_detail": detail},
            },
        }
    )


def chain(length: int) -> dict[str, object]:
    return {
        "nodes": [
            {"id": f"n{i}", "type": "nodetool.text.Concat", "data": {"b": "x"}}
            for i in range(length)
        ],
        "edges": [
            {
                "source": f"n{i - 1}",
                "sourceHandle": "output",
                "target": f"n{i}",
                "targetHandle": "a",
            }
            for i in range(1, length)
        ],
    }


_TRIVIAL: Mapping[str, object] = {
    "nodes": [{"id": "c", "type": "nodetool.text.Concat", "data": {"a": "hello ", "b": "world"}}],
    "edges": [],
}


async def _until_terminal(ws: ClientConnection, job_id: str) -> _Frame:
    while True:
        raw = await ws.recv()
        frame = _decode(raw if isinstance(raw, bytes) else raw.encode())
        if frame.type == "job_update" and frame.job_id == job_id and frame.status in _TERMINAL:
            return frame


async def _trivial_runs(uri: str, stop: asyncio.Event, prefix: str) -> list[float]:
    """Sequential trivial runs until ``stop``; their latencies in seconds."""
    latencies: list[float] = []
    async with connect(uri, compression=None, ping_interval=None, max_size=None) as ws:
        index = 0
        while not stop.is_set():
            job_id = f"{prefix}-{index}"
            index += 1
            started = time.perf_counter()
            await ws.send(_run_job(job_id, _TRIVIAL, "terminal"))
            frame = await _until_terminal(ws, job_id)
            latencies.append(time.perf_counter() - started)
            if frame.status != "completed":
                raise RuntimeError(f"trivial run {job_id} ended {frame.status}: {frame.error}")
    return latencies


async def _handshakes(uri: str, stop: asyncio.Event) -> list[float]:
    """Fresh connections opened and closed one after another until ``stop``."""
    times: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        async with connect(uri, compression=None, ping_interval=None):
            times.append(time.perf_counter() - started)
    return times


@dataclass
class Outcome:
    chain_seconds: float
    chain_status: str
    idle: list[float]
    during: list[float]
    handshakes: list[float]


async def _nothing(stop: asyncio.Event) -> list[float]:
    await stop.wait()
    return []


async def measure(
    uri: str, nodes: int, detail: str, idle_seconds: float, handshakes: bool
) -> Outcome:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(idle_seconds, stop.set)
    idle = await _trivial_runs(uri, stop, "idle")

    payload = _run_job("chain", chain(nodes), detail)
    stop = asyncio.Event()
    async with connect(uri, compression=None, ping_interval=None, max_size=None) as big:
        trivial = asyncio.create_task(_trivial_runs(uri, stop, "during"))
        shaking = asyncio.create_task(_handshakes(uri, stop) if handshakes else _nothing(stop))
        await asyncio.sleep(0.2)  # both running before the chain arrives
        started = time.perf_counter()
        await big.send(payload)
        terminal = await _until_terminal(big, "chain")
        elapsed = time.perf_counter() - started
        stop.set()
        during, shakes = await trivial, await shaking
    return Outcome(elapsed, terminal.status or "?", idle, during, shakes)


def _ms(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    return (
        f"n={len(samples)} p50 {percentile(samples, 50) * 1e3:.1f} ms, "
        f"p99 {percentile(samples, 99) * 1e3:.1f} ms, max {max(samples) * 1e3:.1f} ms"
    )


def _peak_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.largegraph")
    parser.add_argument("--nodes", type=int, default=100_000, help="chain length (100000)")
    parser.add_argument(
        "--detail",
        default="terminal",
        choices=["terminal", "outputs", "full"],
        help="event_detail of the chain's run (terminal)",
    )
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle trivial runs")
    parser.add_argument(
        "--no-handshakes", action="store_true", help="do not open connections meanwhile"
    )
    parser.add_argument("--goal-ms", type=float, default=50.0, help="p99 goal during the chain")
    args = parser.parse_args(argv)
    command = python_module(
        "noderun",
        "serve",
        "--store",
        "none",
        "--ping-interval",
        "0",
        "--log-level",
        "warning",
        "--max-graph-nodes",
        str(args.nodes),
    )
    with spawn_servers({"noderun": command}, plan_cpus()) as servers:
        server = servers["noderun"]
        outcome = asyncio.run(
            measure(server.ws_uri, args.nodes, args.detail, args.idle, not args.no_handshakes)
        )
        rss = _peak_rss_kib(server.process.pid)
    print(
        f"chain of {args.nodes} ({args.detail}): {outcome.chain_status} in "
        f"{outcome.chain_seconds:.2f} s; server peak RSS "
        f"{'n/a' if rss is None else f'{rss / 1024:.0f} MiB'}"
    )
    print(f"trivial runs, idle server:  {_ms(outcome.idle)}")
    print(f"trivial runs, during chain: {_ms(outcome.during)}")
    print(f"handshakes, during chain:   {_ms(outcome.handshakes)}")
    p99 = percentile(outcome.during, 99) * 1e3 if outcome.during else float("inf")
    met = outcome.chain_status == "completed" and p99 < args.goal_ms
    print(f"goal: p99 during the chain < {args.goal_ms:g} ms: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
