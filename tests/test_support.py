"""The tests keep one scaled time unit (:mod:`tests.support.timing` alone defines it) and
one way to wait for what must happen (:mod:`tests.support.waiting`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.timing import SECOND
from tests.support.waiting import eventually

TESTS = Path(__file__).resolve().parent
TIMING = TESTS / "support" / "timing.py"
WAITING = TESTS / "support" / "waiting.py"
#: A module-level timing constant of its own, or a read of the scale variable outside timing.py.
_OWN_CONSTANT = re.compile(
    r"^(?:WAIT|TIMEOUT|TIME_SCALE|SECOND|\w*_TIMEOUT|\w*_WAIT)\s*(?::[^=]*)?=", re.MULTILINE
)
_OWN_POLLER = re.compile(r"^(?:async )?def (?:eventually|wait_until|until)\(", re.MULTILINE)
_SCALE_READ = re.compile(r"environ(?:\.get)?\s*[\[(]\s*[\"']NODERUN_TEST_TIME_SCALE")


def _offenders(pattern: re.Pattern[str]) -> list[str]:
    return sorted(
        f"{path.relative_to(TESTS)}:{text.count(chr(10), 0, match.start()) + 1}"
        for path in TESTS.rglob("*.py")
        if path not in (TIMING, WAITING)
        for text in [path.read_text(encoding="utf-8")]
        for match in pattern.finditer(text)
    )


def test_no_test_module_defines_its_own_timing_constant() -> None:
    assert _offenders(_OWN_CONSTANT) == [], "import it from tests.support.timing instead"


def test_only_timing_reads_the_time_scale() -> None:
    assert _offenders(_SCALE_READ) == [], "derive durations from tests.support.timing.SECOND"


def test_no_test_module_has_its_own_polling_helper() -> None:
    assert _offenders(_OWN_POLLER) == [], "use tests.support.waiting.eventually"


def test_the_guards_see_what_they_forbid() -> None:
    """Both patterns match the definitions they exist to forbid (a guard that cannot fail)."""
    timing = TIMING.read_text(encoding="utf-8")
    assert _OWN_CONSTANT.search(timing) is not None
    assert _SCALE_READ.search(timing) is not None
    assert _OWN_CONSTANT.search("WAIT = 5.0\n") is not None
    assert _OWN_CONSTANT.search("START_TIMEOUT = 60.0 * scale\n") is not None
    assert _OWN_POLLER.search(WAITING.read_text(encoding="utf-8")) is not None
    assert _OWN_CONSTANT.search('env = {"X_TIMEOUT": "1"}\n') is None


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
