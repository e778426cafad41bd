"""One client process of the connection test: it holds a share of the connections.

``python -m loadtest.fleet URI COUNT CONCURRENCY`` raises its open-file limit,
then answers one line of JSON on stdout to each command line on stdin:

``(start)``  ``{"ready": true}``, or ``{"error": "…"}`` and exit status 2 when its
             open-file limit cannot hold ``COUNT`` connections
``open``     open ``COUNT`` connections, at most ``CONCURRENCY`` handshakes at once:
             ``{"opened", "failed", "first_error", "handshake_ms": [...]}``
``run``      one verified run on every open connection (``loadtest.client``):
             ``{"completed", "failed", "first_failure"}``
``check``    ``{"open": n}``: connections neither side has begun to close
``close``    close them all: ``{"closed": n}``, then exit

Several of these let ``loadtest.connections`` open more connections than one
process's descriptors or one CPU allow. A handshake lasts from the TCP connect to
the end of the HTTP upgrade, queueing at the server's accept backlog included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from loadtest.client import RUN_TIMEOUT_S, BenchConnection, RunError, RunSpec
from loadtest.footprint import raise_fd_limit

__all__ = ["FD_MARGIN", "Fleet", "main"]

#: Descriptors a client or server process needs beyond one per connection.
FD_MARGIN = 128
_SPEC = RunSpec("terminal")


class Fleet:
    """The connections of this process and the commands on them."""

    def __init__(self, uri: str, count: int, concurrency: int) -> None:
        self.uri = uri
        self.count = count
        self._gate = asyncio.Semaphore(concurrency)
        self.conns: list[BenchConnection] = []

    async def _each(
        self, items: Sequence[BenchConnection] | range, act: Callable[..., Awaitable[None]]
    ) -> None:
        async def gated(item: object) -> None:
            async with self._gate:
                await act(item)

        await asyncio.gather(*(gated(item) for item in items))

    async def open(self) -> dict[str, object]:
        handshakes: list[float] = []
        errors: list[str] = []

        async def open_one(_: int) -> None:
            started = time.perf_counter()
            try:
                conn = await BenchConnection.open(self.uri)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            handshakes.append((time.perf_counter() - started) * 1000)
            self.conns.append(conn)

        await self._each(range(self.count), open_one)
        return {
            "opened": len(self.conns),
            "failed": len(errors),
            "first_error": errors[0] if errors else None,
            "handshake_ms": handshakes,
        }

    async def run(self) -> dict[str, object]:
        failures: list[str] = []
        completed = 0

        async def run_one(conn: BenchConnection) -> None:
            nonlocal completed
            try:
                async with asyncio.timeout(RUN_TIMEOUT_S):
                    outcome = await conn.run_once(_SPEC)
            except TimeoutError:
                failures.append(f"no terminal within {RUN_TIMEOUT_S} s")
                return
            except (RunError, ConnectionClosed) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            if outcome.failure is None:
                completed += 1
            else:
                failures.append(outcome.failure)

        await self._each(self.conns, run_one)
        return {
            "completed": completed,
            "failed": len(failures),
            "first_failure": failures[0] if failures else None,
        }

    def check(self) -> dict[str, object]:
        return {"open": sum(1 for conn in self.conns if conn.is_open)}

    async def close(self) -> dict[str, object]:
        async def close_one(conn: BenchConnection) -> None:
            # A connection the server already dropped was counted by ``check``.
            with contextlib.suppress(OSError, ConnectionClosed):
                await conn.close()

        await self._each(self.conns, close_one)
        return {"closed": len(self.conns)}


def _reply(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(fleet: Fleet) -> None:
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        command = line.strip()
        if command == "open":
            _reply(await fleet.open())
        elif command == "run":
            _reply(await fleet.run())
        elif command == "check":
            _reply(fleet.check())
        elif command == "close" or not line:
            # End of input means the parent has gone: close politely anyway.
            _reply(await fleet.close())
            return
        else:
            _reply({"error": f"unknown command {command!r}"})


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m loadtest.fleet URI COUNT CONCURRENCY", file=sys.stderr)
        return 2
    uri, count, concurrency = args[0], int(args[1]), int(args[2])
    limit = raise_fd_limit(count + FD_MARGIN)
    if not limit.enough:
        _reply({"error": f"client process: {limit.describe()}"})
        return 2
    _reply({"ready": True})
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(_serve(Fleet(uri, count, concurrency)))
    else:
        uvloop.run(_serve(Fleet(uri, count, concurrency)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
