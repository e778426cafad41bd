"""The Dockerfile and docker-compose.yml run commands these tests run for real.

No Docker engine runs here, so the files are parsed and their exact command and
environment are started as a real server process (with the compose file's
PostgreSQL host swapped for the local test server); ``docker-compose config``
validates the compose file when that tool is installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import yaml

from noderun.server.cli import build_parser as cli_parser
from noderun.server.cli import settings_from

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WAIT = 10.0 * float(os.environ.get("NODERUN_TEST_TIME_SCALE", "1"))
PG_DSN = os.environ.get("NODERUN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def dockerfile() -> tuple[list[str], dict[str, str]]:
    """The final stage's CMD (exec form) and ENV."""
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    final = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    cmd: list[str] = []
    env: dict[str, str] = {}
    for line in lines[final:]:
        if line.startswith("CMD "):
            cmd = json.loads(line[4:])
        elif line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return cmd, env


def compose_service() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = data["services"]["noderun"]
    assert isinstance(service, dict)
    return service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(command: list[str], env: Mapping[str, str], cwd: Path) -> Iterator[str]:
    """Start ``command`` (a ``noderun`` console-script call) and yield its base URL."""
    port = free_port()
    full_env = {**os.environ, **env, "NODERUN_HOST": "127.0.0.1", "NODERUN_PORT": str(port)}
    executable = str(BIN / command[0])
    log = cwd / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([executable, *command[1:]], env=full_env, cwd=cwd, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not become healthy: {log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(WAIT) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def test_dockerfile_cmd_is_a_valid_noderun_command() -> None:
    cmd, env = dockerfile()
    assert cmd[:2] == ["noderun", "serve"]
    args = cli_parser().parse_args(cmd[1:])
    settings = settings_from(args)
    assert settings.log_level == "info"
    assert env["NODERUN_STORE"].startswith("sqlite:////data/")


def test_dockerfile_cmd_and_env_serve(tmp_path: Path) -> None:
    cmd, env = dockerfile()
    env = {**env, "NODERUN_STORE": f"sqlite:///{tmp_path / 'noderun.db'}"}
    for url in serve(cmd, env, tmp_path):
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            assert json.loads(response.read())["status"] == "ok"
    assert (tmp_path / "noderun.db").exists()


def test_compose_environment_names_only_known_settings() -> None:
    service = compose_service()
    environment = service["environment"]
    assert isinstance(environment, dict)
    from noderun.persistence import StoreOptions
    from noderun.server.settings import Settings

    known = {f"NODERUN_{name.upper()}" for name in Settings.__dataclass_fields__}
    store_options = StoreOptions.from_env({key: str(value) for key, value in environment.items()})
    assert store_options.pg_pool_min == 2 and store_options.pg_pool_max == 10
    for key in environment:
        assert key in known or key.startswith("NODERUN_PG_"), key


def test_compose_config_is_valid_for_docker_compose() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    subprocess.run([tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], check=True)


async def _create_database(name: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=3)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=3)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def test_compose_command_and_environment_serve_on_postgresql(tmp_path: Path) -> None:
    name = f"noderun_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_create_database(name))
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable at {PG_DSN} ({exc}); set NODERUN_TEST_PG_DSN"
        if os.environ.get("NODERUN_REQUIRE_PG") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        service = compose_service()
        command = service["command"]
        environment = service["environment"]
        assert isinstance(command, list) and isinstance(environment, dict)
        env = {key: str(value) for key, value in environment.items()}
        # The compose file's database host is the "postgres" service: point it here.
        env["NODERUN_STORE"] = urlunsplit(urlsplit(PG_DSN)._replace(path="/" + name))
        for url in serve([str(part) for part in command], env, tmp_path):
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                assert response.status == 200
    finally:
        asyncio.run(_drop_database(name))
