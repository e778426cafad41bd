"""A real server process for the tests of the CLI and its lifecycle: ``noderun serve`` (the
installed console script) or any other command, its output in a file, HTTP probes; a
``tests.support.client.connect(process)`` client.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.server.helpers import CONFORMANT
from tests.support.client import ClientOptions
from tests.support.ports import free_port
from tests.support.timing import TIMEOUT
from tests.support.waiting import eventually_blocking

__all__ = ["NODERUN", "Process", "get"]

#: The console script ``pip install`` made, beside this interpreter.
NODERUN = str(Path(sys.executable).parent / "noderun")


def get(port: int, path: str, *, scheme: str = "http") -> tuple[int, dict[str, object]] | None:
    """``(status, JSON body)`` of ``GET path`` on a new connection, or None if refused."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = json.loads(response.read())
    except (ConnectionError, OSError):
        return None
    finally:
        connection.close()
    assert isinstance(body, dict)
    return response.status, body


class Process:
    """A server subprocess with a clean environment: no ``NODERUN_*`` of the test run's
    own (the test switches aside) but ``env``."""

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.log_path = cwd / f"server-{self.port}.log"
        full_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("NODERUN_") or key.startswith("NODERUN_TEST_")
        }
        full_env.update(env or {})
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd
            )

    @classmethod
    def serve(cls, args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> Process:
        """``noderun serve --port P --store none … args`` (a later ``--store`` wins)."""
        port = free_port()
        argv = [NODERUN, "serve", "--port", str(port), "--store", "none", *args]
        return cls(argv, cwd, env, port)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def client_options(self) -> ClientOptions:
        """Its clients check every frame, as those of the in-thread servers do."""
        return CONFORMANT

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Until ``/readyz`` answers 200; fails if the process exits first."""

        def ready() -> bool:
            assert self.process.poll() is None, f"server exited early:\n{self.output()}"
            answer = get(self.port, "/readyz")
            return answer is not None and answer[0] == 200

        eventually_blocking(ready, TIMEOUT * 2, explain=self.output)

    def wait_healthy(self) -> dict[str, object]:
        """Until ``/health`` answers 200; its body. Fails if the process exits first."""

        def healthy() -> dict[str, object] | None:
            assert self.process.poll() is None, f"server exited early:\n{self.output()}"
            answer = get(self.port, "/health")
            return answer[1] if answer is not None and answer[0] == 200 else None

        body = eventually_blocking(healthy, explain=self.output)
        assert body is not None
        return body

    def terminate(self) -> int:
        """SIGTERM; the exit code (fails if the server does not stop in time)."""
        self.signal(signal.SIGTERM)
        return self.wait(TIMEOUT)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait(self, within: float = TIMEOUT * 2) -> int:
        try:
            return self.process.wait(within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server did not exit in time:\n{self.output()}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
