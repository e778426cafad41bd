"""lib.date: each node against NodeTool's semantics (and its deliberate fixes), and a server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from noderun.runtime.nodes import date
from noderun.runtime.nodes.values import Date, Datetime
from tests.durable.helpers import serving
from tests.runtime.nodes.support import failure, outputs, run_graph
from tests.server.helpers import ServerHandle
from tests.support.client import connect
from tests.support.graphs import edge, graph, nd


def at(*fields: int, offset: float = 0, tzinfo: str = "UTC") -> Datetime:
    names = ("year", "month", "day", "hour", "minute", "second", "microsecond")
    return Datetime(**dict(zip(names, fields, strict=False)), utc_offset=offset, tzinfo=tzinfo)


def test_today_is_the_local_date() -> None:
    before = dt.date.today()
    today = date.today().to_date()
    assert before <= today <= dt.date.today()


def test_now_is_utc() -> None:
    before = dt.datetime.now(dt.UTC)
    now = date.now()
    assert now.tzinfo == "UTC" and now.utc_offset == 0
    assert before <= now.to_datetime() <= dt.datetime.now(dt.UTC)


def test_parse_date() -> None:
    assert date.parse_date(date_string="2024-03-05") == Date(year=2024, month=3, day=5)
    assert date.parse_date(date_string="March 05, 2024", input_format="%B %d, %Y").month == 3
    with pytest.raises(ValueError, match="cannot parse '05/03/2024' as '%Y-%m-%d'"):
        date.parse_date(date_string="05/03/2024")
    with pytest.raises(ValueError, match="cannot parse"):
        date.parse_date()


def test_parse_datetime_with_and_without_zone() -> None:
    assert date.parse_datetime(
        datetime_string="2024-03-05T06:07:08", input_format="%Y-%m-%dT%H:%M:%S"
    ) == at(2024, 3, 5, 6, 7, 8)
    zoned = date.parse_datetime(
        datetime_string="2024-03-05T06:07:08+0200", input_format="%Y-%m-%dT%H:%M:%S%z"
    )
    assert (zoned.hour, zoned.utc_offset, zoned.tzinfo) == (6, 7200, "UTC+02:00")


def test_add_time_delta() -> None:
    start = at(2024, 2, 28, 23, 30)
    assert date.add_time_delta(input_datetime=start, days=1, minutes=30) == at(2024, 3, 1, 0, 0)
    assert date.add_time_delta(input_datetime=start, hours=-24) == at(2024, 2, 27, 23, 30)
    with pytest.raises(ValueError, match="invalid datetime 0-0-0"):
        date.add_time_delta()
    with pytest.raises(ValueError, match="out of range"):
        date.add_time_delta(input_datetime=at(9999, 12, 31), days=1)


def test_date_difference() -> None:
    diff = date.date_difference(start_date=at(2024, 1, 1), end_date=at(2024, 1, 3, 4, 5, 6))
    assert diff == {
        "total_seconds": 2 * 86400 + 14706,
        "days": 2,
        "hours": 4,
        "minutes": 5,
        "seconds": 6,
    }
    back = date.date_difference(start_date=at(2024, 1, 1, 0, 0, 1), end_date=at(2024, 1, 1))
    assert back == {"total_seconds": -1, "days": -1, "hours": 23, "minutes": 59, "seconds": 59}
    zoned = date.date_difference(start_date=at(2024, 1, 1, 2, offset=7200), end_date=at(2024, 1, 1))
    assert zoned["total_seconds"] == 0


def test_format_datetime() -> None:
    value = at(2024, 3, 5, 6, 7, 8)
    assert date.format_datetime(input_datetime=value) == "March 05, 2024"
    assert (
        date.format_datetime(input_datetime=value, output_format="%Y%m%d_%H%M%S")
        == "20240305_060708"
    )
    assert date.format_datetime(input_datetime=value, output_format="%Y-%m-%dT%H:%M:%S%z").endswith(
        "+0000"
    )
    assert date.format_datetime(
        input_datetime=at(2024, 3, 5, offset=-3600), output_format="%Y-%m-%dT%H:%M:%S%z"
    ).endswith("-0100")


def test_get_weekday() -> None:
    assert date.get_weekday(input_datetime=at(2024, 3, 4)) == "Monday"
    assert date.get_weekday(input_datetime=at(2024, 3, 10), as_name=False) == 6


def test_date_range() -> None:
    days = date.date_range(start_date=at(2024, 2, 27), end_date=at(2024, 3, 2), step_days=2)
    assert days == [at(2024, 2, 27), at(2024, 2, 29), at(2024, 3, 2)]
    assert date.date_range(start_date=at(2024, 1, 2), end_date=at(2024, 1, 1)) == []
    assert date.date_range(start_date=at(9999, 12, 30), end_date=at(9999, 12, 31), step_days=5) == [
        at(9999, 12, 30)
    ]
    with pytest.raises(ValueError, match="step_days must be at least 1"):
        date.date_range(start_date=at(2024, 1, 1), end_date=at(2024, 1, 2), step_days=0)
    with pytest.raises(ValueError, match="more than"):
        date.date_range(start_date=at(1, 1, 1), end_date=at(9999, 1, 1))


def test_is_date_in_range() -> None:
    start, end = at(2024, 1, 1), at(2024, 1, 31)
    assert date.is_date_in_range(check_date=at(2024, 1, 15), start_date=start, end_date=end)
    assert date.is_date_in_range(check_date=start, start_date=start, end_date=end)
    assert not date.is_date_in_range(
        check_date=start, start_date=start, end_date=end, inclusive=False
    )
    assert not date.is_date_in_range(check_date=at(2024, 2, 1), start_date=start, end_date=end)


@pytest.mark.parametrize(
    ("month", "quarter", "first", "last"),
    [(1, 1, (2024, 1, 1), (2024, 3, 31)), (5, 2, (2024, 4, 1), (2024, 6, 30)),
     (9, 3, (2024, 7, 1), (2024, 9, 30)), (12, 4, (2024, 10, 1), (2024, 12, 31))],
)  # fmt: skip
def test_get_quarter(
    month: int, quarter: int, first: tuple[int, int, int], last: tuple[int, int, int]
) -> None:
    got = date.get_quarter(input_datetime=at(2024, month, 15, 12))
    assert got == {"quarter": quarter, "quarter_start": at(*first), "quarter_end": at(*last)}


def test_date_to_datetime_and_back() -> None:
    assert date.date_to_datetime(input_date=Date(year=2024, month=2, day=29)) == at(2024, 2, 29)
    assert date.datetime_to_date(input_datetime=at(2024, 2, 29, 23, 59)) == Date(
        year=2024, month=2, day=29
    )
    with pytest.raises(ValueError, match="invalid date 0-0-0"):
        date.date_to_datetime()


def test_relative_time() -> None:
    now = dt.datetime.now(dt.UTC)
    future = date.relative_time(amount=2, unit="hours").to_datetime()
    assert dt.timedelta(hours=2) <= future - now < dt.timedelta(hours=2, minutes=1)
    past = date.relative_time(amount=3, direction="past").to_datetime()
    assert dt.timedelta(days=3) - dt.timedelta(minutes=1) < now - past <= dt.timedelta(days=3)
    months = date.relative_time(amount=14, unit="months").to_datetime()
    assert (months.year * 12 + months.month) - (now.year * 12 + now.month) == 14
    assert months.day <= now.day
    with pytest.raises(ValueError, match="out of range"):
        date.relative_time(amount=10**6, unit="months", direction="past")


def test_boundary_time() -> None:
    wednesday = at(2024, 2, 14, 10, 30, offset=3600, tzinfo="CET")

    def bound(**options: object) -> tuple[int, ...]:
        got = date.boundary_time(input_datetime=wednesday, **options)  # type: ignore[arg-type]
        assert got.utc_offset == 3600
        return (got.year, got.month, got.day, got.hour, got.minute, got.second, got.microsecond)

    assert bound() == (2024, 2, 14, 0, 0, 0, 0)
    assert bound(boundary="end") == (2024, 2, 14, 23, 59, 59, 999_999)
    assert bound(period="week") == (2024, 2, 12, 0, 0, 0, 0)
    assert bound(period="week", start_monday=False) == (2024, 2, 11, 0, 0, 0, 0)
    assert bound(period="week", boundary="end") == (2024, 2, 18, 23, 59, 59, 999_999)
    assert bound(period="month") == (2024, 2, 1, 0, 0, 0, 0)
    assert bound(period="month", boundary="end") == (2024, 2, 29, 23, 59, 59, 999_999)
    assert bound(period="year", boundary="end") == (2024, 12, 31, 23, 59, 59, 999_999)


async def test_date_graph_over_websocket(server: ServerHandle) -> None:
    """ParseDateTime → AddTimeDelta → FormatDateTime; GetQuarter's outputs by handle."""
    terminal = await run_graph(
        server,
        nd("parse", "lib.date.ParseDateTime", datetime_string="2024-12-31"),
        nd("add", "lib.date.AddTimeDelta", days=1, hours=2),
        nd("fmt", "lib.date.FormatDateTime", output_format="%Y-%m-%dT%H:%M:%S"),
        nd("quarter", "lib.date.GetQuarter"),
        nd("weekday", "lib.date.GetWeekday"),
        edges=[
            edge("parse", "add", "input_datetime"),
            edge("add", "fmt", "input_datetime"),
            edge("add", "quarter", "input_datetime"),
            edge("add", "weekday", "input_datetime"),
        ],
    )
    found = outputs(terminal)
    assert found["fmt"] == {"output": "2025-01-01T02:00:00"}
    assert found["weekday"] == {"output": "Wednesday"}
    assert found["quarter"]["quarter"] == 1
    assert found["quarter"]["quarter_end"]["type"] == "datetime"
    assert (found["quarter"]["quarter_end"]["month"], found["quarter"]["quarter_end"]["day"]) == (
        3,
        31,
    )


async def test_invalid_datetime_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    terminal = await run_graph(server, nd("fmt", "lib.date.FormatDateTime"))
    assert "invalid datetime 0-0-0" in failure(terminal, "fmt", "lib.date.FormatDateTime")
    terminal = await run_graph(server, nd("p", "lib.date.ParseDate", date_string="tomorrow"))
    assert "cannot parse" in failure(terminal, "p", "lib.date.ParseDate")
    terminal = await run_graph(server, nd("r", "lib.date.DateRange", start_date={"year": "x"}))
    failure(terminal, "r", "lib.date.DateRange")


async def test_datetimes_survive_a_durable_run_and_its_replay(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A durable run on a real ``noderun serve`` with sqlite: the datetime map in the
    terminal result, and byte-identical when the run is replayed from the store."""
    nodes = graph(
        nd("parse", "lib.date.ParseDateTime", datetime_string="2024-02-29"),
        nd("end", "lib.date.BoundaryTime", period="month", boundary="end"),
        edges=[edge("parse", "end", "input_datetime")],
    )
    async with serving(sqlite_url, tmp_path) as process:
        async with connect(process) as client:
            job_id = await client.run_job(nodes, durable=True)
            received = await client.receive_until_terminal(job_id)
        terminal = received[-1]
        assert terminal.frame["status"] == "completed", terminal.frame
        end = terminal.frame["result"]["outputs"]["end"]["output"]
        assert (end["type"], end["month"], end["day"], end["hour"]) == ("datetime", 2, 29, 23)
        async with connect(process) as client:
            await client.reconnect(job_id)
            replayed = await client.receive_until_terminal(job_id)
        assert replayed[-1].raw == terminal.raw
