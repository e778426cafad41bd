"""JSON nodes under NodeTool's names (``lib.json.*``).

The ``GetJSONPath*`` nodes walk a dot-separated path (``"a.b.0.c"``: a digit
indexes a list) and convert what they find to their type; a path that leads
nowhere gives ``default``, a value that does not convert fails the node.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from noderun.runtime.node import node

if TYPE_CHECKING:
    JsonObject = dict[str, Any]
    JsonArray = list[Any]
else:
    # NodeTool types these bare (``dict``, ``list``): so does the node metadata here.
    JsonObject = dict
    JsonArray = list


@node("lib.json.ParseDict", title="Parse Dict", inline=True)
def parse_dict(json_string: str = "") -> JsonObject:
    """The dictionary a JSON object string encodes; invalid JSON or a non-object fails."""
    parsed = json.loads(json_string)
    if not isinstance(parsed, dict):
        raise ValueError("JSON string must represent an object/dictionary")
    return parsed


@node("lib.json.ParseList", title="Parse List", inline=True)
def parse_list(json_string: str = "") -> JsonArray:
    """The list a JSON array string encodes; invalid JSON or a non-array fails."""
    parsed = json.loads(json_string)
    if not isinstance(parsed, list):
        raise ValueError("JSON string must represent an array/list")
    return parsed


@node("lib.json.StringifyJSON", title="Stringify JSON", inline=True)
def stringify_json(data: Any = {}, indent: int = 2) -> str:  # noqa: B006 - never mutated
    """The data as a JSON string, indented by indent spaces."""
    return json.dumps(data, indent=indent)


def _walk(data: Any, path: str) -> Any:
    """What ``path`` leads to in ``data``, or ``None`` where it leads nowhere."""
    found = data
    for key in path.split("."):
        if isinstance(found, dict):
            found = found.get(key)
        elif isinstance(found, list) and key.isdigit():
            index = int(key)
            found = found[index] if index < len(found) else None
        else:
            return None
    return found


@node("lib.json.GetJSONPathStr", title="Get JSONPath Str", inline=True)
def get_json_path_str(data: Any = {}, path: str = "", default: str = "") -> str:  # noqa: B006
    """The value at path as a string (its Python text form), or default."""
    found = _walk(data, path)
    return default if found is None else str(found)


@node("lib.json.GetJSONPathInt", title="Get JSONPath Int", inline=True)
def get_json_path_int(data: Any = {}, path: str = "", default: int = 0) -> int:  # noqa: B006
    """The value at path as an integer, or default; a value that is no integer fails."""
    found = _walk(data, path)
    if found is None:
        return default
    return int(found)


@node("lib.json.GetJSONPathFloat", title="Get JSONPath Float", inline=True)
def get_json_path_float(
    data: Any = {},  # noqa: B006 - never mutated
    path: str = "",
    default: float = 0.0,
) -> float:
    """The value at path as a float, or default; a value that is no number fails."""
    found = _walk(data, path)
    if found is None:
        return default
    return float(found)


@node("lib.json.GetJSONPathBool", title="Get JSONPath Bool", inline=True)
def get_json_path_bool(data: Any = {}, path: str = "", default: bool = False) -> bool:  # noqa: B006
    """The truth of the value at path (Python's: empty and zero are false), or default."""
    found = _walk(data, path)
    return default if found is None else bool(found)


@node("lib.json.GetJSONPathList", title="Get JSONPath List", inline=True)
def get_json_path_list(
    data: Any = {},  # noqa: B006 - never mutated
    path: str = "",
    default: JsonArray = [],  # noqa: B006 - never mutated
) -> JsonArray:
    """The value at path as a list (a dictionary gives its keys, a string its characters),
    or default; a number fails."""
    found = _walk(data, path)
    if found is None:
        return default
    return list(found)


@node("lib.json.GetJSONPathDict", title="Get JSONPath Dict", inline=True)
def get_json_path_dict(
    data: Any = {},  # noqa: B006 - never mutated
    path: str = "",
    default: JsonObject = {},  # noqa: B006 - never mutated
) -> JsonObject:
    """The dictionary at path, or default; a value that is no dictionary fails."""
    found = _walk(data, path)
    if found is None:
        return default
    return dict(found)


@node("lib.json.FilterJSON", title="Filter JSON", inline=True)
def filter_json(
    array: list[JsonObject] = [],  # noqa: B006 - never mutated
    key: str = "",
    value: Any = {},  # noqa: B006 - never mutated
) -> list[JsonObject]:
    """The objects of the array whose key equals value."""
    return [item for item in array if item.get(key) == value]


@node("lib.json.JSONTemplate", title="JSON Template", inline=True)
def json_template(
    template: str = "",
    values: dict[str, Any] = {},  # noqa: B006 - never mutated
) -> JsonObject:
    """The object a template encodes once each ``$name`` is replaced by values[name]:
    a quoted ``"$name"`` becomes the JSON value itself, a ``$name`` inside a string its
    text. A result that is not a JSON object fails."""
    text = template
    for key, value in values.items():
        encoded = json.dumps(value)
        text = text.replace(f'"${key}"', encoded)
        # Inside a string literal a string goes in escaped but without its quotes.
        text = text.replace(f"${key}", encoded[1:-1] if isinstance(value, str) else encoded)
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Resulting JSON is invalid: {exc}") from None
    if not isinstance(result, dict):
        raise ValueError(f"Resulting JSON must be an object, got {type(result).__name__}")
    return result


NODES = [
    parse_dict,
    parse_list,
    stringify_json,
    get_json_path_str,
    get_json_path_int,
    get_json_path_float,
    get_json_path_bool,
    get_json_path_list,
    get_json_path_dict,
    filter_json,
    json_template,
]
