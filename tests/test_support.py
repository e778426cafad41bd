"""The tests share one support package: one scaled time unit (:mod:`tests.support.timing`
alone defines it), one way to wait for what must happen (:mod:`tests.support.waiting`), one
WebSocket client (:mod:`tests.support.client`) and one set of wire graph builders
(:mod:`tests.support.graphs`)."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.support.client import ClientOptions, connect
from tests.support.frames import Frame, as_stored
from tests.support.graphs import edge, graph, nd
from tests.support.timing import SECOND
from tests.support.waiting import eventually, eventually_blocking

TESTS = Path(__file__).resolve().parent
TIMING = TESTS / "support" / "timing.py"
WAITING = TESTS / "support" / "waiting.py"
SUPPORT = TESTS / "support"
#: A module-level timing constant of its own, or a read of the scale variable outside timing.py.
_OWN_CONSTANT = re.compile(
    r"^(?:WAIT|TIMEOUT|TIME_SCALE|SECOND|\w*_TIMEOUT|\w*_WAIT)\s*(?::[^=]*)?=", re.MULTILINE
)
_OWN_POLLER = re.compile(r"^(?:async )?def (?:eventually|wait_until|until)\(", re.MULTILINE)
#: A second WebSocket client or a second set of graph builders beside tests/support.
_OWN_HELPER = re.compile(
    r"^(?:class Client\b|def (?:nd|edge|graph|new_job_id|free_port|is_terminal)\()", re.MULTILINE
)
_SCALE_READ = re.compile(r"environ(?:\.get)?\s*[\[(]\s*[\"']NODERUN_TEST_TIME_SCALE")


def _offenders(pattern: re.Pattern[str]) -> list[str]:
    return sorted(
        f"{path.relative_to(TESTS)}:{text.count(chr(10), 0, match.start()) + 1}"
        for path in TESTS.rglob("*.py")
        if path not in (TIMING, WAITING) and not (pattern is _OWN_HELPER and path.parent == SUPPORT)
        for text in [path.read_text(encoding="utf-8")]
        for match in pattern.finditer(text)
    )


def test_no_test_module_defines_its_own_timing_constant() -> None:
    assert _offenders(_OWN_CONSTANT) == [], "import it from tests.support.timing instead"


def test_only_timing_reads_the_time_scale() -> None:
    assert _offenders(_SCALE_READ) == [], "derive durations from tests.support.timing.SECOND"


def test_no_test_module_has_its_own_polling_helper() -> None:
    assert _offenders(_OWN_POLLER) == [], "use tests.support.waiting.eventually"


def test_no_test_module_has_its_own_client_or_graph_builders() -> None:
    assert _offenders(_OWN_HELPER) == [], "use tests.support.client and tests.support.graphs"


def test_the_guards_see_what_they_forbid() -> None:
    """Both patterns match the definitions they exist to forbid (a guard that cannot fail)."""
    timing = TIMING.read_text(encoding="utf-8")
    assert _OWN_CONSTANT.search(timing) is not None
    assert _SCALE_READ.search(timing) is not None
    assert _OWN_CONSTANT.search("WAIT = 5.0\n") is not None
    assert _OWN_CONSTANT.search("START_TIMEOUT = 60.0 * scale\n") is not None
    assert _OWN_POLLER.search(WAITING.read_text(encoding="utf-8")) is not None
    assert _OWN_CONSTANT.search('env = {"X_TIMEOUT": "1"}\n') is None
    assert _OWN_HELPER.search("class Client:\n") is not None
    assert _OWN_HELPER.search("def edge(source: str) -> Frame:\n") is not None
    assert _OWN_HELPER.search("def edge_count() -> int:\n") is None


async def test_eventually_returns_as_soon_as_the_condition_holds() -> None:
    answers = iter([False, False, True, False])
    await eventually(lambda: next(answers))
    assert next(answers) is False  # it looked exactly three times


async def test_eventually_awaits_an_async_condition() -> None:
    looks: list[int] = []

    async def third_look() -> bool:
        looks.append(len(looks))
        return len(looks) == 3

    await eventually(third_look)
    assert looks == [0, 1, 2]


async def test_eventually_fails_when_the_condition_never_holds() -> None:
    with pytest.raises(AssertionError, match="condition not met within"):
        await eventually(lambda: False, within=SECOND / 20)


def test_eventually_blocking_returns_the_first_truthy_answer() -> None:
    answers = iter([None, 0, "found", "later"])
    assert eventually_blocking(lambda: next(answers)) == "found"
    assert next(answers) == "later"


def test_eventually_blocking_fails_with_the_explanation() -> None:
    with pytest.raises(AssertionError, match=r"not met within .*\n.*the server's log"):
        eventually_blocking(lambda: False, SECOND / 20, explain=lambda: "the server's log")


async def test_the_client_keeps_each_frames_bytes_and_asks_for_durability_per_run() -> None:
    """A server that answers each frame with its decoded ``execution_options``: once as
    MessagePack, once as JSON; the client keeps the exact bytes and which kind each was."""
    seen: list[Frame] = []

    async def answer(ws: ServerConnection) -> None:
        async for message in ws:
            assert isinstance(message, bytes)
            frame = msgspec.msgpack.decode(message)
            seen.append(frame)
            reply = {"job_seq": len(seen), **frame["data"]["execution_options"]}
            await ws.send(msgspec.msgpack.encode(reply))
            await ws.send(msgspec.json.encode(reply).decode())

    checked: list[Frame] = []
    async with serve(answer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        options = ClientOptions(check=checked.append)
        async with connect(f"ws://127.0.0.1:{port}/ws", options=options) as client:
            nodes = graph(nd("a", "x.A"), nd("b", "x.B"), edges=[edge("a", "b", "value")])
            job_id = await client.run_job(nodes, durable=True, event_detail="terminal")
            binary, text = await client.receive(), await client.receive()
            await client.run_job(nodes)
            ephemeral = await client.recv_until(lambda frame: frame["job_seq"] == 2)
    assert seen[0]["data"]["job_id"] == job_id and seen[0]["data"]["graph"] == nodes
    durable = {"job_seq": 1, "persistence": "job", "event_detail": "terminal"}
    assert binary.frame == text.frame == durable
    assert binary.raw == msgspec.msgpack.encode(binary.frame) and not binary.text
    assert text.raw == msgspec.json.encode(text.frame) and text.text and client.last_text is False
    assert ephemeral == [{"job_seq": 2, "persistence": "session", "event_detail": "full"}]
    assert len(checked) == 3  # every frame received passed the server's check
    assert as_stored([binary]) == [(1, binary.raw)]
    with pytest.raises(AssertionError, match="MessagePack"):
        as_stored([text])
