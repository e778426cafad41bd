"""``noderun serve`` as a real process: node modules and entry points, the drain on
SIGTERM, the probes, start-up errors, TLS, plain uvicorn."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import ipaddress
import os
import re
import signal
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect as ws_connect

from noderun.server.heap import YOUNG_THRESHOLD
from tests.server.helpers import CONFORMANT
from tests.server.process import NODERUN, Process, get
from tests.support.client import Client, connect
from tests.support.frames import Frame
from tests.support.graphs import graph, nd
from tests.support.ports import free_port
from tests.support.timing import TIMEOUT
from tests.support.waiting import eventually_blocking

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_node_module() -> str:
    """The first Python block of the README's "Writing nodes" section, as written."""
    section = README.read_text().split("### Writing nodes", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no Python example under 'Writing nodes'"
    return match.group(1)


async def run(port: int, nodes: Frame, *, scheme: str = "ws", **kwargs: object) -> list[Frame]:
    """Run ``nodes`` on a fresh connection; every frame up to the terminal one."""
    context = None
    if scheme == "wss":
        context = kwargs.pop("ssl_context")
        assert isinstance(context, ssl.SSLContext)
    async with ws_connect(
        f"{scheme}://127.0.0.1:{port}/ws", compression=None, proxy=None, ssl=context
    ) as ws:
        client = Client(ws, CONFORMANT)
        job_id = await client.run_job(nodes, explicit_types=False)
        return await client.until_terminal(job_id)


def outputs(frames: list[Frame]) -> dict[str, object]:
    terminal = frames[-1]
    assert terminal["status"] == "completed", terminal
    result = terminal["result"]
    assert isinstance(result, dict)
    found = result["outputs"]
    assert isinstance(found, dict)
    return found


# -- nodes ---------------------------------------------------------------------------


def test_the_readme_node_module_serves_through_the_cli(
    processes: list[Process], tmp_path: Path
) -> None:
    """`noderun serve --nodes mymodule`, started where mymodule.py is, runs its nodes."""
    (tmp_path / "mymodule.py").write_text(readme_node_module())
    server = Process.serve(["--nodes", "mymodule"], tmp_path)
    processes.append(server)
    server.wait_ready()

    async def scenario() -> list[list[Frame]]:
        return [
            await run(server.port, graph(nd("r", "mylib.text.Repeat", text="ab", times=3))),
            await run(server.port, graph(nd("s", "mylib.text.Shout", text="hey"))),
            await run(server.port, graph(nd("w", "mylib.llm.Stream", prompt="one two"))),
            await run(server.port, graph(nd("c", "nodetool.text.Concat", a="x", b="y"))),
        ]

    repeat, shout, stream, concat = asyncio.run(scenario())
    assert outputs(repeat) == {"r": {"output": "ababab"}}
    assert outputs(shout) == {"s": {"output": "HEY!"}}
    outputs(stream)
    chunks = [frame["content"] for frame in stream if frame.get("type") == "chunk"]
    assert chunks == ["one ", "two "]
    assert outputs(concat) == {"c": {"output": "xy"}}
    server.signal()
    assert server.wait() == 0, server.output()


def write_package(root: Path, value: str) -> None:
    """An installed-looking distribution: ``extranodes.py`` and its dist-info, whose
    entry points name the module and a list."""
    (root / "extranodes.py").write_text(
        textwrap.dedent(
            """
            from noderun import node

            @node("extra.text.Reverse", inline=True)
            def reverse(text: str = "") -> str:
                return text[::-1]

            @node("extra.text.Twice", inline=True)
            def twice(text: str = "") -> str:
                return text * 2

            LISTED = [twice]
            """
        )
    )
    info = root / "extranodes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extranodes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[noderun.nodes]\n{value}\n")


def test_entry_points_register_a_module_or_a_list(processes: list[Process], tmp_path: Path) -> None:
    write_package(tmp_path, "reverse = extranodes\nlisted = extranodes:LISTED")
    # The module entry point registers Twice too: a second registration must fail...
    server = Process.serve([], tmp_path, {"PYTHONPATH": str(tmp_path)})
    processes.append(server)
    assert server.wait() == 2
    assert "extra.text.Twice" in server.output()
    assert "Traceback" not in server.output()


def test_an_entry_point_naming_a_module_registers_its_nodes(
    processes: list[Process], tmp_path: Path
) -> None:
    write_package(tmp_path, "reverse = extranodes")
    server = Process.serve([], tmp_path, {"PYTHONPATH": str(tmp_path)})
    processes.append(server)
    server.wait_ready()

    async def scenario() -> list[list[Frame]]:
        return [
            await run(server.port, graph(nd("r", "extra.text.Reverse", text="abc"))),
            await run(server.port, graph(nd("t", "extra.text.Twice", text="ab"))),
        ]

    reverse, twice = asyncio.run(scenario())
    assert outputs(reverse) == {"r": {"output": "cba"}}
    assert outputs(twice) == {"t": {"output": "abab"}}
    server.signal()
    assert server.wait() == 0


def test_an_entry_point_naming_a_list_registers_those_nodes(
    processes: list[Process], tmp_path: Path
) -> None:
    write_package(tmp_path, "listed = extranodes:LISTED")
    server = Process.serve([], tmp_path, {"PYTHONPATH": str(tmp_path)})
    processes.append(server)
    server.wait_ready()
    twice, reverse = asyncio.run(
        _two(
            server.port,
            graph(nd("t", "extra.text.Twice", text="ab")),
            graph(nd("r", "extra.text.Reverse", text="abc")),
        )
    )
    assert outputs(twice) == {"t": {"output": "abab"}}
    assert reverse[-1]["status"] == "failed"  # not in the list: not registered
    server.signal()
    assert server.wait() == 0


async def _two(port: int, first: Frame, second: Frame) -> tuple[list[Frame], list[Frame]]:
    return await run(port, first), await run(port, second)


def test_two_nodes_with_one_type_name_stop_the_start_naming_both_modules(
    processes: list[Process], tmp_path: Path
) -> None:
    (tmp_path / "first_nodes.py").write_text(
        "from noderun import node\n\n"
        "@node('dup.Same', inline=True)\ndef one() -> int:\n    return 1\n"
    )
    (tmp_path / "second_nodes.py").write_text(
        "from noderun import node\n\n"
        "@node('dup.Same', inline=True)\ndef two() -> int:\n    return 2\n"
    )
    server = Process.serve(["--nodes", "first_nodes", "--nodes", "second_nodes"], tmp_path)
    processes.append(server)
    assert server.wait() == 2
    lines = server.output().strip().splitlines()
    assert len(lines) == 1, server.output()
    assert "dup.Same" in lines[0] and "first_nodes" in lines[0] and "second_nodes" in lines[0]


def test_debug_nodes_are_registered_only_when_asked_for(
    processes: list[Process], tmp_path: Path
) -> None:
    plain = Process.serve([], tmp_path)
    debug = Process.serve([], tmp_path, {"NODERUN_DEBUG_NODES": "1"})
    processes.extend([plain, debug])
    plain.wait_ready()
    debug.wait_ready()
    sleep = graph(nd("s", "noderun.debug.Sleep", seconds=0))
    refused = asyncio.run(run(plain.port, sleep))
    ran = asyncio.run(run(debug.port, sleep))
    assert refused[-1]["status"] == "failed"
    assert "noderun.debug.Sleep" in str(refused[-1]["error"])
    assert ran[-1]["status"] == "completed"


def test_serve_tunes_the_collector_once_started(processes: list[Process], tmp_path: Path) -> None:
    """The young-generation threshold of ``noderun.server.heap``, seen from a node."""
    (tmp_path / "gcnodes.py").write_text(
        "import gc\nfrom noderun import node\n\n"
        "@node('gc.Threshold', inline=True)\ndef threshold() -> int:\n"
        "    return gc.get_threshold()[0]\n"
    )
    server = Process.serve(["--nodes", "gcnodes"], tmp_path)
    processes.append(server)
    server.wait_ready()
    frames = asyncio.run(run(server.port, graph(nd("g", "gc.Threshold"))))
    assert outputs(frames) == {"g": {"output": YOUNG_THRESHOLD}}


# -- drain ---------------------------------------------------------------------------


def test_sigterm_drains_short_runs_cancels_long_ones_and_exits_0(
    processes: list[Process], tmp_path: Path
) -> None:
    """A run in flight finishes during the drain; one longer than ``--drain-timeout`` ends
    ``cancelled`` ("server shutting down"); meanwhile /readyz answers 503 on a kept-alive
    connection and new connections are refused; exit status 0."""
    grace = TIMEOUT
    server = Process.serve(
        ["--debug-nodes", "--drain-timeout", str(grace), "--store", "sqlite:///runs.db"],
        tmp_path,
    )
    processes.append(server)
    server.wait_ready()
    probe = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    probe.request("GET", "/readyz")
    first = probe.getresponse()
    first.read()
    assert first.status == 200

    async def scenario() -> tuple[list[Frame], list[Frame], int]:
        async with connect(server) as short, connect(server) as long:
            short_id = await short.run_job(graph(nd("s", "noderun.debug.Sleep", seconds=1.0)))
            long_id = await long.run_job(graph(nd("l", "noderun.debug.Sleep", seconds=600)))
            await short.recv_until(lambda f: f.get("type") == "node_update")
            await long.recv_until(lambda f: f.get("type") == "node_update")
            server.signal(signal.SIGTERM)
            await asyncio.to_thread(_wait_refused, server.port)
            probe.request("GET", "/readyz")
            response = probe.getresponse()
            response.read()
            short_frames = await short.until_terminal(short_id, within=grace * 2)
            long_frames = await long.until_terminal(long_id, within=grace * 3)
            return short_frames, long_frames, response.status

    try:
        short_frames, long_frames, readyz_status = asyncio.run(scenario())
    finally:
        probe.close()
    assert readyz_status == 503
    assert short_frames[-1]["status"] == "completed"
    assert long_frames[-1]["status"] == "cancelled"
    assert long_frames[-1]["message"] == "server shutting down"
    assert server.wait(grace * 3) == 0, server.output()
    assert "Traceback" not in server.output()


def _wait_refused(port: int) -> None:
    """Until a new connection to ``port`` is refused (the listener closed)."""
    eventually_blocking(lambda: get(port, "/livez") is None)


def test_plain_uvicorn_serves_create_app_and_drains_the_same_way(
    processes: list[Process], tmp_path: Path
) -> None:
    """``uvicorn --factory noderun.server.app:create_app`` reads NODERUN_* and drains:
    during the drain /readyz is 503 and new WebSockets are closed with 1012."""
    port = free_port()
    server = Process(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "noderun.server.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        tmp_path,
        {"NODERUN_STORE": "none", "NODERUN_DEBUG_NODES": "1", "NODERUN_DRAIN_TIMEOUT": "60"},
        port=port,
    )
    processes.append(server)
    server.wait_ready()

    async def scenario() -> tuple[list[Frame], tuple[int, dict[str, object]] | None, int]:
        async with connect(server) as client:
            # Long enough to outlast the probes below, well within the drain timeout.
            seconds = TIMEOUT / 2
            job_id = await client.run_job(graph(nd("s", "noderun.debug.Sleep", seconds=seconds)))
            await client.recv_until(lambda f: f.get("type") == "node_update")
            server.signal(signal.SIGTERM)
            readyz = await asyncio.to_thread(_wait_status, server.port, "/readyz", 503)
            async with ws_connect(server.ws_url, compression=None, proxy=None) as late:
                with pytest.raises(Exception) as closed:
                    await asyncio.wait_for(late.recv(), TIMEOUT)
            code = getattr(getattr(closed.value, "rcvd", None), "code", 0)
            frames = await client.until_terminal(job_id, within=TIMEOUT * 2)
            return frames, readyz, code

    frames, readyz, close_code = asyncio.run(scenario())
    assert frames[-1]["status"] == "completed"
    assert readyz is not None and readyz[0] == 503
    assert close_code == 1012
    # uvicorn re-raises the signal that stopped it once it has shut down.
    assert server.wait() in (0, -signal.SIGTERM), server.output()


def _wait_status(port: int, path: str, status: int) -> tuple[int, dict[str, object]] | None:
    answers: list[tuple[int, dict[str, object]] | None] = []

    def answered() -> bool:
        answers.append(get(port, path))
        return answers[-1] is not None and answers[-1][0] == status

    eventually_blocking(answered, explain=lambda: f"{path} answered {answers[-1]}")
    return answers[-1]


# -- probes --------------------------------------------------------------------------


def test_probes_answer(processes: list[Process], tmp_path: Path) -> None:
    server = Process.serve([], tmp_path)
    processes.append(server)
    server.wait_ready()
    assert get(server.port, "/livez") == (200, {"status": "alive"})
    assert get(server.port, "/readyz") == (200, {"status": "ready"})
    version = get(server.port, "/version")
    assert version is not None and version[0] == 200
    assert version[1]["version"] == _cli_version(tmp_path)
    health = get(server.port, "/health")
    assert health == (200, {"status": "ok", "active_runs": 0})


def _cli_version(tmp_path: Path) -> str:
    result = subprocess.run(
        [NODERUN, "--version"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    name, version = result.stdout.split()
    assert name == "noderun"
    return version


# -- start-up errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "status", "named"),
    [
        (["--store", "bogus"], {}, 2, "--store"),
        (["--port", "99999"], {}, 2, "--port"),
        (["--runners", "0"], {}, 2, "--runners"),
        (["--retention", "-5"], {}, 2, "--retention"),
        (["--drain-timeout", "soon"], {}, 2, "--drain-timeout"),
        ([], {"NODERUN_RUNNERS": "four"}, 2, "NODERUN_RUNNERS"),
        ([], {"NODERUN_RETENTION": "1e"}, 2, "NODERUN_RETENTION"),
        ([], {"NODERUN_PG_POOL_MAX": "ten"}, 2, "NODERUN_PG_POOL_MAX"),
        ([], {"NODERUN_DEBUG_NODES": "maybe"}, 2, "NODERUN_DEBUG_NODES"),
        (["--store", "sqlite:///missing/dir/runs.db"], {}, 2, "missing/dir"),
        (["--nodes", "no_such_module_here"], {}, 2, "no_such_module_here"),
        (["--ssl-certfile", "cert.pem"], {}, 2, "--ssl-certfile"),
        (["--config", "absent.toml"], {}, 2, "absent.toml"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_status_2(
    processes: list[Process],
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
    status: int,
    named: str,
) -> None:
    server = Process.serve(args, tmp_path, env)
    processes.append(server)
    assert server.wait() == status, server.output()
    lines = server.output().strip().splitlines()
    assert len(lines) == 1, server.output()
    assert lines[0].startswith("noderun: ") and named in lines[0], lines[0]


def test_a_store_path_under_a_file_is_named(processes: list[Process], tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")
    server = Process.serve(["--store", f"sqlite:///{tmp_path}/plain-file/runs.db"], tmp_path)
    processes.append(server)
    assert server.wait() == 2
    output = server.output().strip()
    assert len(output.splitlines()) == 1 and f"{tmp_path}/plain-file" in output, output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_a_store_directory_without_write_permission_is_named(
    processes: list[Process], tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    server = Process.serve(["--store", f"sqlite:///{locked}/runs.db"], tmp_path)
    processes.append(server)
    try:
        assert server.wait() == 2
    finally:
        locked.chmod(0o700)
    output = server.output().strip()
    assert len(output.splitlines()) == 1 and str(locked) in output, output
    assert "not writable" in output


def test_a_port_in_use_is_a_start_up_error(processes: list[Process], tmp_path: Path) -> None:
    first = Process.serve([], tmp_path)
    processes.append(first)
    first.wait_ready()
    second = Process([NODERUN, "serve", "--port", str(first.port), "--store", "none"], tmp_path)
    processes.append(second)
    assert second.wait() == 2
    output = second.output().strip()
    assert len(output.splitlines()) == 1 and str(first.port) in output, output


def test_unreachable_postgresql_is_exit_status_3(processes: list[Process], tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    server = Process.serve(["--store", url], tmp_path)
    processes.append(server)
    assert server.wait(TIMEOUT * 3) == 3
    output = server.output().strip()
    assert len(output.splitlines()) == 1, output
    assert "--store" in output and "store unavailable" in output


def test_refusing_postgresql_is_exit_status_3(
    processes: list[Process], tmp_path: Path, pg_admin_dsn: str
) -> None:
    """A server that answers but refuses (no such database)."""
    url = pg_admin_dsn.rsplit("/", 1)[0] + "/noderun_no_such_database"
    server = Process.serve(["--store", url], tmp_path)
    processes.append(server)
    assert server.wait(TIMEOUT * 3) == 3
    output = server.output().strip()
    assert len(output.splitlines()) == 1 and "noderun_no_such_database" in output, output


def test_unknown_noderun_variable_is_a_warning_naming_it(
    processes: list[Process], tmp_path: Path
) -> None:
    server = Process.serve([], tmp_path, {"NODERUN_PROT": "7000"})
    processes.append(server)
    server.wait_ready()
    server.signal()
    assert server.wait() == 0
    warning = [line for line in server.output().splitlines() if "NODERUN_PROT" in line]
    assert warning and "unknown" in warning[0], server.output()


def test_config_file_sits_below_variables_and_flags(
    processes: list[Process], tmp_path: Path
) -> None:
    (tmp_path / "noderun.toml").write_text('store = "none"\nnodes = ["gone_module"]\n')
    (tmp_path / "gone_module.py").write_text("")
    # The file's nodes are read (the module defines none: refused, naming it) ...
    server = Process([NODERUN, "serve", "--port", "0", "--config", "noderun.toml"], tmp_path)
    processes.append(server)
    assert server.wait() == 2 and "gone_module" in server.output(), server.output()
    # ... and a variable overrides them.
    server = Process.serve(
        ["--config", "noderun.toml"], tmp_path, {"NODERUN_NODES": "nodetool_free_module"}
    )
    processes.append(server)
    assert server.wait() == 2 and "nodetool_free_module" in server.output()


# -- TLS -----------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, generated here."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_serves_wss(processes: list[Process], tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = Process.serve(["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)], tmp_path)
    processes.append(server)
    context = ssl.create_default_context(cafile=str(cert))

    def served() -> list[Frame] | None:
        assert server.process.poll() is None, server.output()
        try:
            return asyncio.run(
                run(
                    server.port,
                    graph(nd("c", "nodetool.text.Concat", a="tl", b="s")),
                    scheme="wss",
                    ssl_context=context,
                )
            )
        except OSError:  # not listening yet
            return None

    frames = eventually_blocking(served, TIMEOUT * 2, explain=server.output)
    assert frames is not None
    assert outputs(frames) == {"c": {"output": "tls"}}
    # Plain ws:// on the TLS port is not served.
    with pytest.raises(Exception):  # noqa: B017
        asyncio.run(run(server.port, graph(nd("c", "nodetool.text.Concat"))))
    server.signal()
    assert server.wait() == 0


def test_a_key_that_does_not_match_is_a_start_up_error(
    processes: list[Process], tmp_path: Path
) -> None:
    cert, _key = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _cert, wrong_key = self_signed(other)
    server = Process.serve(["--ssl-certfile", str(cert), "--ssl-keyfile", str(wrong_key)], tmp_path)
    processes.append(server)
    assert server.wait() == 2
    output = server.output().strip()
    assert len(output.splitlines()) == 1 and "--ssl" in output, output
