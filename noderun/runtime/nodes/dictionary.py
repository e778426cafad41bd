"""Dictionary nodes under NodeTool's names (``nodetool.dictionary.*``).

Every node returns a new dictionary (NodeTool's ``Update``/``Remove`` change
their input in place; the result is the same). The ``FilterDict*`` nodes are
streaming nodes, as in NodeTool: each dictionary arriving on ``value`` is
passed on to ``output`` only if it matches, so a stream of dictionaries comes
out filtered.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from noderun.runtime.node import node

Dictionary = dict[str, Any]
if TYPE_CHECKING:
    AnyDict = dict[str, Any]
else:
    # NodeTool types the filters' dictionaries bare (``dict``): so does the metadata here.
    AnyDict = dict


@node("nodetool.dictionary.GetValue", title="Get Value", inline=True)
def get_value(
    dictionary: Dictionary = {},  # noqa: B006 - never mutated
    key: str = "",
    default: Any = (),
) -> Any:
    """The value under key, or default when the key is absent."""
    return dictionary.get(key, default)


@node("nodetool.dictionary.Update", title="Update", inline=True)
def update(
    dictionary: Dictionary = {},  # noqa: B006 - never mutated
    new_pairs: Dictionary = {},  # noqa: B006 - never mutated
) -> Dictionary:
    """The dictionary with the new pairs added (replacing existing keys)."""
    return {**dictionary, **new_pairs}


@node("nodetool.dictionary.Remove", title="Remove", inline=True)
def remove(dictionary: Dictionary = {}, key: str = "") -> Dictionary:  # noqa: B006
    """The dictionary without key (unchanged when the key is absent)."""
    return {name: value for name, value in dictionary.items() if name != key}


@node("nodetool.dictionary.ParseJSON", title="Parse JSON", inline=True)
def parse_json(json_string: str = "") -> Dictionary:
    """The dictionary a JSON object string encodes; invalid JSON or a non-object fails."""
    parsed = json.loads(json_string)
    if not isinstance(parsed, dict):
        raise ValueError("Input JSON is not a dictionary")
    return parsed


@node("nodetool.dictionary.Zip", title="Zip", inline=True)
def zip_lists(
    keys: list[Any] = [],  # noqa: B006 - never mutated
    values: list[Any] = [],  # noqa: B006 - never mutated
) -> dict[Any, Any]:
    """A dictionary pairing keys with values (the longer list's extra items are dropped)."""
    return dict(zip(keys, values, strict=False))


@node("nodetool.dictionary.Combine", title="Combine", inline=True)
def combine(
    dict_a: Dictionary = {},  # noqa: B006 - never mutated
    dict_b: Dictionary = {},  # noqa: B006 - never mutated
) -> Dictionary:
    """Both dictionaries merged; dict_b's value wins on a shared key."""
    return {**dict_a, **dict_b}


@node("nodetool.dictionary.Filter", title="Filter", inline=True)
def filter_keys(
    dictionary: Dictionary = {},  # noqa: B006 - never mutated
    keys: list[str] = [],  # noqa: B006 - never mutated
) -> Dictionary:
    """Only the pairs whose key is listed (absent keys are skipped)."""
    return {key: dictionary[key] for key in keys if key in dictionary}


@node("nodetool.dictionary.ReduceDictionaries", title="Reduce Dictionaries", inline=True)
def reduce_dictionaries(
    dictionaries: list[Dictionary] = [],  # noqa: B006 - never mutated
    key_field: str = "",
    value_field: str = "",
    conflict_resolution: Literal["first", "last", "error"] = "first",
) -> dict[Any, Any]:
    """One dictionary keyed by each record's key_field; the value is value_field's value,
    or the rest of the record when value_field is empty. A record without the key (or
    value) field fails; a repeated key keeps the first, the last, or fails."""
    reduced: dict[Any, Any] = {}
    for record in dictionaries:
        if key_field not in record:
            raise ValueError(f"Key field {key_field!r} not found in dictionary")
        key = record[key_field]
        if value_field:
            if value_field not in record:
                raise ValueError(f"Value field {value_field!r} not found in dictionary")
            value = record[value_field]
        else:
            value = {name: item for name, item in record.items() if name != key_field}
        if key in reduced:
            if conflict_resolution == "error":
                raise ValueError(f"Duplicate key found: {key}")
            if conflict_resolution == "first":
                continue
        reduced[key] = value
    return reduced


@node("nodetool.dictionary.ArgMax", title="Arg Max", inline=True)
def arg_max(scores: dict[str, float] = {}) -> str:  # noqa: B006 - never mutated
    """The label with the highest score (the first on a tie); an empty dictionary fails."""
    if not scores:
        raise ValueError("Input dictionary cannot be empty")
    return max(scores.items(), key=lambda pair: pair[1])[0]


def _json_fallback(value: object) -> object:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="ignore")
    return str(value)


@node("nodetool.dictionary.ToJSON", title="To JSON", inline=True)
def to_json(dictionary: Dictionary = {}) -> str:  # noqa: B006 - never mutated
    """The dictionary as a compact JSON string (bytes as UTF-8 text)."""
    return json.dumps(dictionary, default=_json_fallback)


ValueFilter = Literal[
    "contains",
    "starts_with",
    "ends_with",
    "equals",
    "type_is",
    "length_greater",
    "length_less",
    "exact_length",
]
NumberFilter = Literal[
    "greater_than", "less_than", "equal_to", "even", "odd", "positive", "negative"
]
_LENGTH_FILTERS = {"length_greater", "length_less", "exact_length"}


def _value_matches(item: object, filter_type: ValueFilter, criteria: str) -> bool:
    text = str(item)
    if filter_type in _LENGTH_FILTERS:
        try:
            wanted = int(criteria)
        except ValueError:
            return False
        if not hasattr(item, "__len__"):
            return False
        size = len(item)
        match filter_type:
            case "length_greater":
                return size > wanted
            case "length_less":
                return size < wanted
            case _:
                return size == wanted
    match filter_type:
        case "contains":
            return criteria in text
        case "starts_with":
            return text.startswith(criteria)
        case "ends_with":
            return text.endswith(criteria)
        case "equals":
            return text == criteria
        case _:
            # ``type_is``: Python's type name, as NodeTool compares (str, int, list, dict, …).
            return type(item).__name__ == criteria


@node("nodetool.dictionary.FilterDictByValue", title="Filter Dict By Value")
async def filter_dict_by_value(
    value: AnyDict = {},  # noqa: B006 - never mutated
    key: str = "",
    filter_type: ValueFilter = "contains",
    criteria: str = "",
) -> AsyncIterator[AnyDict]:
    """Pass the dictionary on if its value under key matches the criteria (text
    containment, prefix, suffix, equality of the text form, Python type name, or length)."""
    if key in value and _value_matches(value[key], filter_type, criteria):
        yield value


def _is_number(item: object) -> bool:
    return isinstance(item, int | float) and not isinstance(item, bool)


@node("nodetool.dictionary.FilterDictByRange", title="Filter Dict By Range")
async def filter_dict_by_range(
    value: AnyDict = {},  # noqa: B006 - never mutated
    key: str = "",
    min_value: float = 0,
    max_value: float = 0,
    inclusive: bool = True,
) -> AsyncIterator[AnyDict]:
    """Pass the dictionary on if its number under key lies between min_value and max_value."""
    number = value.get(key)
    if not _is_number(number):
        return
    assert isinstance(number, int | float)
    inside = min_value <= number <= max_value if inclusive else min_value < number < max_value
    if inside:
        yield value


@node("nodetool.dictionary.FilterDictByNumber", title="Filter Dict By Number")
async def filter_dict_by_number(
    value: AnyDict = {},  # noqa: B006 - never mutated
    key: str = "",
    filter_type: NumberFilter = "greater_than",
    compare_value: float = 0,
) -> AsyncIterator[AnyDict]:
    """Pass the dictionary on if its number under key passes the comparison (even and odd
    apply to integers only)."""
    number = value.get(key)
    if not _is_number(number):
        return
    assert isinstance(number, int | float)
    match filter_type:
        case "greater_than":
            matched = number > compare_value
        case "less_than":
            matched = number < compare_value
        case "equal_to":
            matched = number == compare_value
        case "even":
            matched = isinstance(number, int) and number % 2 == 0
        case "odd":
            matched = isinstance(number, int) and number % 2 != 0
        case "positive":
            matched = number > 0
        case "negative":
            matched = number < 0
    if matched:
        yield value


@node("nodetool.dictionary.FilterDictRegex", title="Filter Dict Regex")
async def filter_dict_regex(
    value: AnyDict = {},  # noqa: B006 - never mutated
    key: str = "",
    pattern: str = "",
    full_match: bool = False,
) -> AsyncIterator[AnyDict]:
    """Pass the dictionary on if the text of its value under key matches the regular
    expression (anywhere, or entirely with full_match); an invalid pattern matches nothing."""
    if key not in value:
        return
    try:
        regex = re.compile(pattern)
    except re.error:
        return
    text = str(value[key])
    found = regex.fullmatch(text) if full_match else regex.search(text)
    if found:
        yield value


NODES = [
    get_value,
    update,
    remove,
    parse_json,
    zip_lists,
    combine,
    filter_keys,
    reduce_dictionaries,
    arg_max,
    to_json,
    filter_dict_by_value,
    filter_dict_by_range,
    filter_dict_by_number,
    filter_dict_regex,
]
