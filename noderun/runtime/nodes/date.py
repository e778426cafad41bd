"""Date and time nodes under NodeTool's names (``lib.date.*``).

Dates and datetimes are NodeTool's wire maps, ``{"type": "date", "year",
"month", "day"}`` and ``{"type": "datetime", "year", "month", "day", "hour",
"minute", "second", "microsecond", "tzinfo", "utc_offset"}`` (``utc_offset`` in
seconds; 0 means UTC): see :mod:`noderun.runtime.nodes.values`. NodeTool's
default for a datetime property is the invalid ``0-0-0``, so a node left at
its defaults fails, naming the invalid value, as NodeTool's does.

Deliberate differences from NodeTool, each where NodeTool's result is
plainly unintended: ``GetQuarter``'s ``quarter_end`` is the quarter's last
day for every quarter (NodeTool gives the next quarter's first day for Q1 to Q3);
``BoundaryTime`` month end is the month's last day (NodeTool: the next
month's first day at 23:59:59); ``RelativeTime`` in months clamps the day to
the target month's length (NodeTool fails on, say, 31 January + 1 month);
``DateRange`` fails on a step below one day (NodeTool loops forever) and on
more than ``MAX_DATES`` dates.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Annotated, Literal

import msgspec

from noderun.runtime.node import node
from noderun.runtime.nodes.values import Date, Datetime

#: The most dates one ``DateRange`` produces.
MAX_DATES = 100_000

DateFormat = Literal[
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%B %d, %Y",
    "%Y%m%d",
    "%Y%m%d_%H%M%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%z",
]

_DATETIME = Datetime()
_DATE = Date()


def _parse(text: str, fmt: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, fmt)
    except ValueError as exc:
        raise ValueError(f"cannot parse {text!r} as {fmt!r}: {exc}") from None


def _shifted(value: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    try:
        return value + delta
    except OverflowError:
        raise ValueError(f"{value.isoformat()} + {delta} is out of range") from None


def _last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


@node("lib.date.Today", title="Today", inline=True)
def today() -> Date:
    """Get the current date (the server's local date) in Date format."""
    return Date.from_date(dt.date.today())


@node("lib.date.Now", title="Now", inline=True)
def now() -> Datetime:
    """Get the current date and time in UTC timezone."""
    return Datetime.from_datetime(dt.datetime.now(dt.UTC))


@node("lib.date.ParseDate", title="Parse Date", inline=True)
def parse_date(
    date_string: Annotated[str, msgspec.Meta(description="The date string to parse")] = "",
    input_format: Annotated[
        DateFormat, msgspec.Meta(description="Format of the input date string")
    ] = "%Y-%m-%d",
) -> Date:
    """Parse a date string into a structured Date object."""
    return Date.from_date(_parse(date_string, input_format))


@node("lib.date.ParseDateTime", title="Parse Date Time", inline=True)
def parse_datetime(
    datetime_string: Annotated[str, msgspec.Meta(description="The datetime string to parse")] = "",
    input_format: Annotated[
        DateFormat, msgspec.Meta(description="Format of the input datetime string")
    ] = "%Y-%m-%d",
) -> Datetime:
    """Parse a date/time string into a structured Datetime object (UTC without ``%z``)."""
    return Datetime.from_datetime(_parse(datetime_string, input_format))


@node("lib.date.AddTimeDelta", title="Add Time Delta", inline=True)
def add_time_delta(
    input_datetime: Annotated[Datetime, msgspec.Meta(description="Starting datetime")] = _DATETIME,
    days: Annotated[
        int,
        msgspec.Meta(ge=-3650, le=3650, description="Number of days to add (negative to subtract)"),
    ] = 0,
    hours: Annotated[
        int,
        msgspec.Meta(ge=-24, le=24, description="Number of hours to add (negative to subtract)"),
    ] = 0,
    minutes: Annotated[
        int,
        msgspec.Meta(ge=-60, le=60, description="Number of minutes to add (negative to subtract)"),
    ] = 0,
) -> Datetime:
    """Add or subtract time from a datetime."""
    delta = dt.timedelta(days=days, hours=hours, minutes=minutes)
    return Datetime.from_datetime(_shifted(input_datetime.to_datetime(), delta))


@node(
    "lib.date.DateDifference",
    title="Date Difference",
    inline=True,
    outputs={"total_seconds": int, "days": int, "hours": int, "minutes": int, "seconds": int},
)
def date_difference(
    start_date: Annotated[Datetime, msgspec.Meta(description="Start datetime")] = _DATETIME,
    end_date: Annotated[Datetime, msgspec.Meta(description="End datetime")] = _DATETIME,
) -> dict[str, int]:
    """``end_date - start_date``: total seconds (truncated), and the days plus the
    hours, minutes and seconds of the remainder (a negative difference has
    negative days and a positive remainder, as Python's ``timedelta``)."""
    diff = end_date.to_datetime() - start_date.to_datetime()
    return {
        "total_seconds": int(diff.total_seconds()),
        "days": diff.days,
        "hours": diff.seconds // 3600,
        "minutes": diff.seconds % 3600 // 60,
        "seconds": diff.seconds % 60,
    }


@node("lib.date.FormatDateTime", title="Format Date Time", inline=True)
def format_datetime(
    input_datetime: Annotated[
        Datetime, msgspec.Meta(description="Datetime object to format")
    ] = _DATETIME,
    output_format: Annotated[
        DateFormat, msgspec.Meta(description="Desired output format")
    ] = "%B %d, %Y",
) -> str:
    """Convert a datetime to a formatted string (English month names)."""
    return input_datetime.to_datetime().strftime(output_format)


@node("lib.date.GetWeekday", title="Get Weekday", inline=True)
def get_weekday(
    input_datetime: Annotated[Datetime, msgspec.Meta(description="Input datetime")] = _DATETIME,
    as_name: Annotated[
        bool, msgspec.Meta(description="Return weekday name instead of number (0-6)")
    ] = True,
) -> str | int:
    """The weekday's name (``"Monday"``) or number (Monday 0 … Sunday 6)."""
    value = input_datetime.to_datetime()
    return calendar.day_name[value.weekday()] if as_name else value.weekday()


@node("lib.date.DateRange", title="Date Range")
def date_range(
    start_date: Annotated[
        Datetime, msgspec.Meta(description="Start date of the range")
    ] = _DATETIME,
    end_date: Annotated[Datetime, msgspec.Meta(description="End date of the range")] = _DATETIME,
    step_days: Annotated[int, msgspec.Meta(description="Number of days between each date")] = 1,
) -> list[Datetime]:
    """Datetimes from start to end (inclusive), ``step_days`` apart."""
    if step_days < 1:
        raise ValueError(f"step_days must be at least 1, not {step_days}")
    current = start_date.to_datetime()
    end = end_date.to_datetime()
    step = dt.timedelta(days=step_days)
    dates: list[Datetime] = []
    while current <= end:
        if len(dates) == MAX_DATES:
            raise ValueError(f"the range has more than {MAX_DATES} dates")
        dates.append(Datetime.from_datetime(current))
        if end - current < step:
            break
        current += step
    return dates


@node("lib.date.IsDateInRange", title="Is Date In Range", inline=True)
def is_date_in_range(
    check_date: Annotated[Datetime, msgspec.Meta(description="Date to check")] = _DATETIME,
    start_date: Annotated[Datetime, msgspec.Meta(description="Start of date range")] = _DATETIME,
    end_date: Annotated[Datetime, msgspec.Meta(description="End of date range")] = _DATETIME,
    inclusive: Annotated[
        bool, msgspec.Meta(description="Include start and end dates in range")
    ] = True,
) -> bool:
    """Whether ``check_date`` lies between ``start_date`` and ``end_date``."""
    start, check, end = (d.to_datetime() for d in (start_date, check_date, end_date))
    return start <= check <= end if inclusive else start < check < end


@node(
    "lib.date.GetQuarter",
    title="Get Quarter",
    inline=True,
    outputs={"quarter": int, "quarter_start": Datetime, "quarter_end": Datetime},
)
def get_quarter(
    input_datetime: Annotated[Datetime, msgspec.Meta(description="Input datetime")] = _DATETIME,
) -> dict[str, object]:
    """The quarter (1 to 4) and its first and last days (at midnight UTC)."""
    value = input_datetime.to_datetime()
    quarter = (value.month - 1) // 3 + 1
    last_month = 3 * quarter
    start = dt.datetime(value.year, last_month - 2, 1, tzinfo=dt.UTC)
    end = dt.datetime(value.year, last_month, _last_day(value.year, last_month), tzinfo=dt.UTC)
    return {
        "quarter": quarter,
        "quarter_start": Datetime.from_datetime(start),
        "quarter_end": Datetime.from_datetime(end),
    }


@node("lib.date.DateToDatetime", title="Date To Datetime", inline=True)
def date_to_datetime(
    input_date: Annotated[Date, msgspec.Meta(description="Date to convert")] = _DATE,
) -> Datetime:
    """Convert a Date to a Datetime at midnight (UTC)."""
    return Datetime.from_datetime(dt.datetime.combine(input_date.to_date(), dt.time()))


@node("lib.date.DatetimeToDate", title="Datetime To Date", inline=True)
def datetime_to_date(
    input_datetime: Annotated[
        Datetime, msgspec.Meta(description="Datetime to convert")
    ] = _DATETIME,
) -> Date:
    """Convert a Datetime to a Date, dropping the time of day."""
    return Date.from_date(input_datetime.to_datetime().date())


@node("lib.date.RelativeTime", title="Relative Time", inline=True)
def relative_time(
    amount: Annotated[int, msgspec.Meta(ge=0, description="Amount of time units")] = 1,
    unit: Annotated[
        Literal["hours", "days", "months"], msgspec.Meta(description="Time unit type")
    ] = "days",
    direction: Annotated[
        Literal["past", "future"], msgspec.Meta(description="Past or future")
    ] = "future",
) -> Datetime:
    """The current UTC time moved ``amount`` hours, days or months into the past or future."""
    current = dt.datetime.now(dt.UTC)
    sign = -1 if direction == "past" else 1
    match unit:
        case "hours":
            return Datetime.from_datetime(_shifted(current, dt.timedelta(hours=sign * amount)))
        case "days":
            return Datetime.from_datetime(_shifted(current, dt.timedelta(days=sign * amount)))
        case "months":
            months = current.year * 12 + current.month - 1 + sign * amount
            year, month = divmod(months, 12)
            month += 1
            if not dt.MINYEAR <= year <= dt.MAXYEAR:
                raise ValueError(f"{amount} months from now is out of range")
            day = min(current.day, _last_day(year, month))
            return Datetime.from_datetime(current.replace(year=year, month=month, day=day))


@node("lib.date.BoundaryTime", title="Boundary Time", inline=True)
def boundary_time(
    input_datetime: Annotated[Datetime, msgspec.Meta(description="Input datetime")] = _DATETIME,
    period: Annotated[
        Literal["day", "week", "month", "year"], msgspec.Meta(description="Time period type")
    ] = "day",
    boundary: Annotated[
        Literal["start", "end"], msgspec.Meta(description="Start or end of period")
    ] = "start",
    start_monday: Annotated[
        bool,
        msgspec.Meta(
            description="For week period: Consider Monday as start of week (False for Sunday)"
        ),
    ] = True,
) -> Datetime:
    """The first (00:00:00) or last (23:59:59.999999) instant of the datetime's
    day, week, month or year, in its own time zone."""
    value = input_datetime.to_datetime()
    match period:
        case "day":
            day = value
        case "week":
            weekday = value.weekday() if start_monday else (value.weekday() + 1) % 7
            offset = -weekday if boundary == "start" else 6 - weekday
            day = _shifted(value, dt.timedelta(days=offset))
        case "month":
            last = _last_day(value.year, value.month)
            day = value.replace(day=1 if boundary == "start" else last)
        case "year":
            day = (
                value.replace(month=1, day=1)
                if boundary == "start"
                else value.replace(month=12, day=31)
            )
    if boundary == "start":
        return Datetime.from_datetime(day.replace(hour=0, minute=0, second=0, microsecond=0))
    return Datetime.from_datetime(day.replace(hour=23, minute=59, second=59, microsecond=999_999))


NODES = [
    today,
    now,
    parse_date,
    parse_datetime,
    add_time_delta,
    date_difference,
    format_datetime,
    get_weekday,
    date_range,
    is_date_in_range,
    get_quarter,
    date_to_datetime,
    datetime_to_date,
    relative_time,
    boundary_time,
]
