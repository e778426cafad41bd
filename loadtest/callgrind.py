"""Instructions per run of a real server process, counted by valgrind's callgrind.

Wall-clock figures move with whatever else the machine runs; instruction counts
do not. This starts the server (``noderun serve`` or the echo floor,
``loadtest.echo``) under ``valgrind --tool=callgrind --instr-atstart=no``, makes
``--warmup`` verified runs from this process (not instrumented), switches
collection on (``callgrind_control -i on``), makes ``--runs`` runs over
``--connections`` connections, switches it off, and reads the server's total
instructions (``Ir``) from its dump. Everything the server process executes in
that window counts: uvicorn, websockets' framing, the event loop, the collector.

``python -m loadtest.callgrind [--target noderun|floor|both] [--runs N]
[--connections C] [--detail terminal|full] [--out DIR]``

The dumps (``DIR/callgrind.<target>.out``) open with ``callgrind_annotate``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest.client import BenchConnection, RunSpec
from loadtest.servers import HOST, ServerProcess, free_port, python_module, wait_healthy

__all__ = ["main", "measure"]

# Start-up runs some fifty times slower under valgrind.
_HEALTH_TIMEOUT_S = 300.0
_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)


def _argv(target: str) -> list[str]:
    if target == "floor":
        return python_module("loadtest.echo", "--log-level", "warning")
    return python_module(
        "noderun", "serve", "--log-level", "warning", "--store", "none", "--ping-interval", "0"
    )


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


async def _runs(uri: str, spec: RunSpec, runs: int, connections: int) -> None:
    conns = [await BenchConnection.open(uri) for _ in range(connections)]
    try:

        async def drive(conn: BenchConnection, count: int) -> None:
            for _ in range(count):
                outcome = await conn.run_once(spec)
                if outcome.failure is not None:
                    raise RuntimeError(f"run failed: {outcome.failure}")

        share, extra = divmod(runs, connections)
        await asyncio.gather(*(drive(conn, share + (i < extra)) for i, conn in enumerate(conns)))
    finally:
        for conn in conns:
            await conn.close()


def measure(target: str, runs: int, warmup: int, connections: int, detail: str, out: Path) -> float:
    """Instructions per run of ``target``; its dump is left in ``out``."""
    dump = out / f"callgrind.{target}.out"
    port = free_port()
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by ServerProcess.stop
    process = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={dump}",
            *_argv(target),
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=stderr,
        stderr=stderr,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    server = ServerProcess(target, port, process, stderr)
    spec = RunSpec("full" if detail == "full" else "terminal")
    try:
        wait_healthy(server, _HEALTH_TIMEOUT_S)
        asyncio.run(_runs(server.ws_uri, spec, warmup, connections))
        _control(process.pid, "-i", "on")
        asyncio.run(_runs(server.ws_uri, spec, runs, connections))
        _control(process.pid, "-i", "off")
        _control(process.pid, "-d")
    finally:
        server.stop()
    total = 0
    for path in out.glob(f"callgrind.{target}.out*"):
        match = _TOTALS.search(path.read_bytes())
        if match:
            total = max(total, int(match.group(1)))
    return total / runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.callgrind", description=__doc__)
    parser.add_argument("--target", choices=("noderun", "floor", "both"), default="both")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--detail", choices=("terminal", "full"), default="terminal")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args(argv)
    targets = ("floor", "noderun") if args.target == "both" else (args.target,)
    results = {}
    for target in targets:
        for stale in args.out.glob(f"callgrind.{target}.out*"):
            stale.unlink()
        results[target] = measure(
            target, args.runs, args.warmup, args.connections, args.detail, args.out
        )
        print(f"{target}: {results[target]:,.0f} instructions per run", flush=True)
    if len(results) == 2:
        delta = results["noderun"] - results["floor"]
        print(f"noderun - floor: {delta:,.0f} ({results['noderun'] / results['floor']:.2f}x)")
    if sys.stdout.isatty():
        print(f"dumps in {args.out}")


if __name__ == "__main__":
    main()
