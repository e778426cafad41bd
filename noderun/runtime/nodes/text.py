"""Text nodes under NodeTool's names (``nodetool.text.*``).

Pure string functions run inline. Nodes that take a user-supplied regular
expression are blocking nodes (the runner pool): a pathological pattern can
backtrack for a long time, and must not stall the server loop while it does.

An invalid pattern, separator or index fails the node with a message naming
the bad value. Where NodeTool's default makes a property useless (``0`` as the
"unset" end index of ``IndexOf``, maximum and exact length of ``HasLength``),
``0`` means "not set" here; ``FilterString``/``FilterRegexString`` fail on an
invalid length or pattern where NodeTool silently drops the item.
"""

from __future__ import annotations

import json
import re
import string as string_module
import unicodedata
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec

from noderun.runtime.node import node

_PUNCTUATION = string_module.punctuation


def _compile(pattern: str, flags: int = 0) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def _flags(*, dotall: bool, ignorecase: bool, multiline: bool) -> int:
    flags = 0
    if dotall:
        flags |= re.DOTALL
    if ignorecase:
        flags |= re.IGNORECASE
    if multiline:
        flags |= re.MULTILINE
    return flags


def _normalize(value: str, *, case_sensitive: bool, trim_whitespace: bool) -> str:
    value = value.strip() if trim_whitespace else value
    return value if case_sensitive else value.lower()


# -- conversion and combination --------------------------------------------------


@node("nodetool.text.ToString", title="To String", inline=True)
def to_string(
    value: Any = (),
    mode: Annotated[
        Literal["str", "repr"],
        msgspec.Meta(description="Conversion mode: use `str(value)` or `repr(value)`."),
    ] = "str",
) -> str:
    """Converts any input value to its string representation."""
    return repr(value) if mode == "repr" else str(value)


@node("nodetool.text.Concat", title="Concatenate Text", inline=True)
def concat(a: str = "", b: str = "") -> str:
    """Concatenates two text inputs into a single output."""
    return a + b


@node("nodetool.text.Join", title="Join", inline=True)
def join(strings: list[Any] = [], separator: str = "") -> str:  # noqa: B006 - never mutated
    """Joins a list of values into one string with a separator (each value through ``str``)."""
    return separator.join(str(item) for item in strings)


@node("nodetool.text.Template", title="Template", inline=True)
def template(
    string: str = "",
    values: Annotated[
        Any, msgspec.Meta(description="A dict of the values to put into the string.")
    ] = {},  # noqa: B006 - never mutated
) -> str:
    """Replaces ``{{ key }}`` and ``{key}`` in ``string`` with ``str(values[key])``.

    Only a dict of ``values`` is used (NodeTool ignores anything else too);
    placeholders without a value stay as written.
    """
    if not isinstance(values, dict):
        return string
    result = string
    for key, value in values.items():
        # Backslashes escaped: the value is inserted literally, never as a group reference.
        text = str(value).replace("\\", "\\\\")
        name = re.escape(str(key))
        result = re.sub(r"{{\s*" + name + r"\s*}}", text, result)
        result = re.sub(r"(?<!\{)\{" + name + r"\}(?!\})", text, result)
    return result


@node("nodetool.text.Replace", title="Replace Text", inline=True)
def replace(text: str = "", old: str = "", new: str = "") -> str:
    """Replaces every occurrence of a substring with another."""
    return text.replace(old, new)


@node("nodetool.text.Split", title="Split Text", inline=True)
def split(text: str = "", delimiter: str = ",") -> list[str]:
    """Separates text into a list of strings at each delimiter."""
    if not delimiter:
        raise ValueError("delimiter must not be empty")
    return text.split(delimiter)


@node("nodetool.text.Extract", title="Extract Text", inline=True)
def extract(text: str = "", start: int = 0, end: int = 0) -> str:
    """``text[start:end]`` (Python slice semantics: negative counts from the end)."""
    return text[start:end]


@node("nodetool.text.Slice", title="Slice Text", inline=True)
def slice_text(text: str = "", start: int = 0, stop: int = 0, step: int = 1) -> str:
    """``text[start:stop:step]``; a zero step fails."""
    if step == 0:
        raise ValueError("step must not be zero")
    return text[start:stop:step]


@node("nodetool.text.Chunk", title="Split Text into Chunks", inline=True)
def chunk(
    text: str = "",
    length: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100,
    overlap: int = 0,
    separator: str = " ",
) -> list[str]:
    """Splits text into chunks of ``length`` words, consecutive chunks sharing ``overlap``
    words; words are split at ``separator`` and each chunk joined with a space."""
    if not separator:
        raise ValueError("separator must not be empty")
    if overlap >= length:
        raise ValueError(f"overlap ({overlap}) must be smaller than length ({length})")
    words = text.split(separator)
    return [" ".join(words[i : i + length]) for i in range(0, len(words), length - overlap)]


# -- comparison and search -------------------------------------------------------


@node("nodetool.text.Compare", title="Compare Text", inline=True)
def compare(
    text_a: str = "",
    text_b: str = "",
    case_sensitive: Annotated[bool, msgspec.Meta(description="Compare without lowercasing")] = True,
    trim_whitespace: Annotated[
        bool, msgspec.Meta(description="Strip leading/trailing whitespace before comparing")
    ] = False,
) -> str:
    """Compares two texts: ``"less"``, ``"equal"`` or ``"greater"``."""
    left = _normalize(text_a, case_sensitive=case_sensitive, trim_whitespace=trim_whitespace)
    right = _normalize(text_b, case_sensitive=case_sensitive, trim_whitespace=trim_whitespace)
    if left < right:
        return "less"
    if left > right:
        return "greater"
    return "equal"


@node("nodetool.text.Equals", title="Equals", inline=True)
def equals(
    text_a: str = "",
    text_b: str = "",
    case_sensitive: Annotated[
        bool, msgspec.Meta(description="Disable lowercasing before compare")
    ] = True,
    trim_whitespace: Annotated[
        bool, msgspec.Meta(description="Strip leading/trailing whitespace prior to comparison")
    ] = False,
) -> bool:
    """Checks if two text inputs are equal."""
    left = _normalize(text_a, case_sensitive=case_sensitive, trim_whitespace=trim_whitespace)
    right = _normalize(text_b, case_sensitive=case_sensitive, trim_whitespace=trim_whitespace)
    return left == right


@node("nodetool.text.StartsWith", title="Starts With", inline=True)
def starts_with(text: str = "", prefix: str = "") -> bool:
    """Checks if text starts with a prefix."""
    return text.startswith(prefix)


@node("nodetool.text.EndsWith", title="Ends With", inline=True)
def ends_with(text: str = "", suffix: str = "") -> bool:
    """Checks if text ends with a suffix."""
    return text.endswith(suffix)


@node("nodetool.text.Contains", title="Contains Text", inline=True)
def contains(
    text: str = "",
    substring: str = "",
    search_values: Annotated[
        list[str], msgspec.Meta(description="Optional list of additional substrings to check")
    ] = [],  # noqa: B006 - never mutated
    case_sensitive: bool = True,
    match_mode: Annotated[
        Literal["any", "all", "none"],
        msgspec.Meta(
            description="ANY requires one match, ALL needs every value, NONE ensures none"
        ),
    ] = "any",
) -> bool:
    """Checks text for substrings: ``search_values`` when given, else ``substring``."""
    needles = search_values or [substring]
    haystack = text if case_sensitive else text.lower()
    if not case_sensitive:
        needles = [needle.lower() for needle in needles]
    match match_mode:
        case "all":
            return all(needle in haystack for needle in needles)
        case "none":
            return not any(needle in haystack for needle in needles)
        case "any":
            return any(needle in haystack for needle in needles)


@node("nodetool.text.IndexOf", title="Index Of", inline=True)
def index_of(
    text: str = "",
    substring: str = "",
    case_sensitive: bool = True,
    start_index: Annotated[
        int, msgspec.Meta(ge=0, description="Index to begin the search from")
    ] = 0,
    end_index: Annotated[
        int, msgspec.Meta(description="Optional exclusive end index for the search (0: the end)")
    ] = 0,
    search_from_end: Annotated[
        bool, msgspec.Meta(description="Use the last occurrence instead of the first")
    ] = False,
) -> int:
    """The index of ``substring`` in ``text[start_index:end_index]``, or -1."""
    if not case_sensitive:
        text, substring = text.lower(), substring.lower()
    end = end_index if end_index else len(text)
    end = max(start_index, end)
    if search_from_end:
        return text.rfind(substring, start_index, end)
    return text.find(substring, start_index, end)


@node("nodetool.text.IsEmpty", title="Is Empty", inline=True)
def is_empty(text: str = "", trim_whitespace: bool = True) -> bool:
    """Checks if text is empty (or only whitespace, when trimming)."""
    return not (text.strip() if trim_whitespace else text)


@node("nodetool.text.HasLength", title="Check Length", inline=True)
def has_length(
    text: str = "",
    min_length: int = 0,
    max_length: Annotated[int, msgspec.Meta(description="0: no maximum")] = 0,
    exact_length: Annotated[
        int, msgspec.Meta(description="0: not checked; else the only length accepted")
    ] = 0,
) -> bool:
    """Checks if the text's length meets the conditions that are set."""
    length = len(text)
    if exact_length:
        return length == exact_length
    if length < min_length:
        return False
    return not (max_length and length > max_length)


@node("nodetool.text.Length", title="Measure Length", inline=True)
def length(
    text: str = "",
    measure: Annotated[
        Literal["characters", "words", "lines"],
        msgspec.Meta(description="Choose whether to count characters, words, or lines"),
    ] = "characters",
    trim_whitespace: Annotated[
        bool, msgspec.Meta(description="Strip whitespace before counting")
    ] = False,
) -> int:
    """Measures text length as characters, words (whitespace-separated) or lines;
    when trimming, blank lines are not counted."""
    value = text.strip() if trim_whitespace else text
    match measure:
        case "words":
            return len(value.split())
        case "lines":
            lines = value.splitlines()
            return len([line for line in lines if line]) if trim_whitespace else len(lines)
        case "characters":
            return len(value)


# -- case, whitespace and cleanup ------------------------------------------------


@node("nodetool.text.ToUppercase", title="To Uppercase", inline=True)
def to_uppercase(text: str = "") -> str:
    """Converts text to uppercase."""
    return text.upper()


@node("nodetool.text.ToLowercase", title="To Lowercase", inline=True)
def to_lowercase(text: str = "") -> str:
    """Converts text to lowercase."""
    return text.lower()


@node("nodetool.text.ToTitlecase", title="To Title Case", inline=True)
def to_titlecase(text: str = "") -> str:
    """Converts text to title case."""
    return text.title()


@node("nodetool.text.CapitalizeText", title="Capitalize Text", inline=True)
def capitalize_text(text: str = "") -> str:
    """Capitalizes the first character (and lowercases the rest, as ``str.capitalize``)."""
    return text.capitalize()


@node("nodetool.text.TrimWhitespace", title="Trim Whitespace", inline=True)
def trim_whitespace(text: str = "", trim_start: bool = True, trim_end: bool = True) -> str:
    """Trims whitespace from the start and/or end of text."""
    if trim_start and trim_end:
        return text.strip()
    if trim_start:
        return text.lstrip()
    if trim_end:
        return text.rstrip()
    return text


@node("nodetool.text.CollapseWhitespace", title="Collapse Whitespace", inline=True)
def collapse_whitespace(
    text: str = "",
    preserve_newlines: Annotated[
        bool, msgspec.Meta(description="Keep newline characters instead of replacing them")
    ] = False,
    replacement: Annotated[
        str, msgspec.Meta(description="String used to replace whitespace runs")
    ] = " ",
    trim_edges: Annotated[
        bool, msgspec.Meta(description="Strip whitespace before collapsing")
    ] = True,
) -> str:
    """Collapses each run of whitespace into ``replacement``."""
    value = text.strip() if trim_edges else text
    pattern = r"[^\S\r\n]+" if preserve_newlines else r"\s+"
    return re.sub(pattern, lambda _m: replacement, value)


@node("nodetool.text.RemovePunctuation", title="Remove Punctuation", inline=True)
def remove_punctuation(
    text: str = "",
    replacement: Annotated[
        str, msgspec.Meta(description="String to insert where punctuation was removed")
    ] = "",
    punctuation: Annotated[
        str, msgspec.Meta(description="Characters that should be removed or replaced")
    ] = _PUNCTUATION,
) -> str:
    """Removes (or replaces) each punctuation character."""
    return text.translate({ord(char): replacement for char in punctuation})


@node("nodetool.text.StripAccents", title="Strip Accents", inline=True)
def strip_accents(
    text: str = "",
    preserve_non_ascii: Annotated[
        bool, msgspec.Meta(description="Keep non-ASCII characters that are not accents")
    ] = True,
) -> str:
    """Removes accent marks while keeping base characters (after NFKD normalization)."""
    normalized = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in normalized if not unicodedata.combining(char))
    if preserve_non_ascii:
        return stripped
    return stripped.encode("ascii", "ignore").decode("ascii")


@node("nodetool.text.Slugify", title="Slugify", inline=True)
def slugify(
    text: str = "",
    separator: str = "-",
    lowercase: bool = True,
    allow_unicode: Annotated[
        bool, msgspec.Meta(description="Keep unicode letters instead of converting to ASCII")
    ] = False,
) -> str:
    """Converts text into a slug suitable for URLs or IDs."""
    value = unicodedata.normalize("NFKD", text)
    if not allow_unicode:
        value = value.encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value)
    value = re.sub(r"[\s_-]+", lambda _m: separator, value).strip(separator)
    return value.lower() if lowercase else value


@node("nodetool.text.SurroundWith", title="Surround With", inline=True)
def surround_with(
    text: str = "",
    prefix: str = "",
    suffix: str = "",
    skip_if_wrapped: Annotated[
        bool, msgspec.Meta(description="Do not add duplicates if the text is already wrapped")
    ] = True,
) -> str:
    """Wraps text with the prefix and suffix."""
    if skip_if_wrapped and text.startswith(prefix) and text.endswith(suffix):
        return text
    return f"{prefix}{text}{suffix}"


@node("nodetool.text.TruncateText", title="Truncate Text", inline=True)
def truncate_text(
    text: str = "",
    max_length: Annotated[int, msgspec.Meta(ge=0)] = 100,
    ellipsis: Annotated[
        str, msgspec.Meta(description="Optional suffix appended when truncation occurs")
    ] = "",
) -> str:
    """Truncates text to ``max_length`` characters, the ellipsis included when it fits."""
    if max_length <= 0:
        return ellipsis
    if len(text) <= max_length:
        return text
    if ellipsis and len(ellipsis) < max_length:
        return text[: max_length - len(ellipsis)] + ellipsis
    return text[:max_length]


@node("nodetool.text.PadText", title="Pad Text", inline=True)
def pad_text(
    text: str = "",
    length: Annotated[int, msgspec.Meta(ge=0)] = 0,
    pad_character: Annotated[
        str, msgspec.Meta(description="Single character to use for padding")
    ] = " ",
    direction: Annotated[
        Literal["left", "right", "both"],
        msgspec.Meta(description="Where padding should be applied"),
    ] = "right",
) -> str:
    """Pads text to ``length`` characters (both: the extra character goes right)."""
    if len(pad_character) != 1:
        raise ValueError(f"pad_character must be a single character, not {pad_character!r}")
    needed = length - len(text)
    if needed <= 0:
        return text
    match direction:
        case "left":
            return pad_character * needed + text
        case "both":
            left = needed // 2
            return pad_character * left + text + pad_character * (needed - left)
        case "right":
            return text + pad_character * needed


@node("nodetool.text.ParseJSON", title="Parse JSON String", inline=True)
def parse_json(text: str = "") -> Any:
    """Parses a JSON string into a value."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None


# -- regular expressions (blocking: a pattern may backtrack for long) -----------


@node("nodetool.text.ExtractRegex", title="Extract Regex Groups")
def extract_regex(
    text: str = "",
    regex: str = "",
    dotall: bool = False,
    ignorecase: bool = False,
    multiline: bool = False,
) -> list[str | None]:
    """The groups of the first match (``None`` for a group that did not take part),
    or ``[]`` without a match."""
    flags = _flags(dotall=dotall, ignorecase=ignorecase, multiline=multiline)
    found = _compile(regex, flags).search(text)
    return [] if found is None else list(found.groups())


@node("nodetool.text.FindAllRegex", title="Find All Regex Matches")
def find_all_regex(
    text: str = "",
    regex: str = "",
    dotall: bool = False,
    ignorecase: bool = False,
    multiline: bool = False,
) -> list[Any]:
    """Every match, as ``re.findall`` gives it: the matched text without groups, the one
    group's text with one group, a list of the groups' texts with several."""
    flags = _flags(dotall=dotall, ignorecase=ignorecase, multiline=multiline)
    return [
        list(found) if isinstance(found, tuple) else found
        for found in _compile(regex, flags).findall(text)
    ]


@node("nodetool.text.RegexMatch", title="Find Regex Matches")
def regex_match(
    text: Annotated[str, msgspec.Meta(description="Text to search in")] = "",
    pattern: Annotated[str, msgspec.Meta(description="Regular expression pattern")] = "",
    group: Annotated[
        int, msgspec.Meta(ge=0, description="Capture group to extract (0 for full match)")
    ] = 0,
) -> list[str | None]:
    """Group ``group`` of every match; a group the pattern does not have fails."""
    compiled = _compile(pattern)
    if group > compiled.groups:
        raise ValueError(f"group {group} out of range: the pattern has {compiled.groups} groups")
    return [found.group(group) for found in compiled.finditer(text)]


@node("nodetool.text.RegexReplace", title="Replace with Regex")
def regex_replace(
    text: Annotated[str, msgspec.Meta(description="Text to perform replacements on")] = "",
    pattern: Annotated[str, msgspec.Meta(description="Regular expression pattern")] = "",
    replacement: Annotated[str, msgspec.Meta(description="Replacement text")] = "",
    count: Annotated[
        int, msgspec.Meta(ge=0, description="Maximum replacements (0 for unlimited)")
    ] = 0,
) -> str:
    """Replaces matches (``\\1``/``\\g<name>`` in the replacement refer to groups)."""
    try:
        return _compile(pattern).sub(replacement, text, count=count)
    except (re.error, IndexError) as exc:
        raise ValueError(f"invalid replacement {replacement!r}: {exc}") from None


@node("nodetool.text.RegexSplit", title="Split with Regex")
def regex_split(
    text: Annotated[str, msgspec.Meta(description="Text to split")] = "",
    pattern: Annotated[
        str, msgspec.Meta(description="Regular expression pattern to split on")
    ] = "",
    maxsplit: Annotated[
        int, msgspec.Meta(ge=0, description="Maximum number of splits (0 for unlimited)")
    ] = 0,
) -> list[str | None]:
    """Splits text at each match (captured groups are kept in the list, as ``re.split``)."""
    return _compile(pattern).split(text, maxsplit=maxsplit)


@node("nodetool.text.RegexValidate", title="Validate with Regex")
def regex_validate(
    text: Annotated[str, msgspec.Meta(description="Text to validate")] = "",
    pattern: Annotated[str, msgspec.Meta(description="Regular expression pattern")] = "",
) -> bool:
    """Whether the pattern matches at the start of the text (``re.match``)."""
    return _compile(pattern).match(text) is not None


# -- stream filters: one firing per value, which passes on or is dropped ---------

FilterType = Literal[
    "contains", "starts_with", "ends_with", "length_greater", "length_less", "exact_length"
]


@node("nodetool.text.FilterString", title="Filter String")
async def filter_string(
    value: Annotated[str, msgspec.Meta(description="Input string stream")] = "",
    filter_type: Annotated[
        FilterType, msgspec.Meta(description="The type of filter to apply")
    ] = "contains",
    criteria: Annotated[
        str,
        msgspec.Meta(description="The filtering criteria (text to match or length as string)"),
    ] = "",
) -> AsyncIterator[str]:
    """Passes each incoming string on when it meets the criteria."""
    if filter_type in ("length_greater", "length_less", "exact_length"):
        try:
            limit = int(criteria)
        except ValueError:
            raise ValueError(f"criteria {criteria!r} is not a length for {filter_type}") from None
        matched = {
            "length_greater": len(value) > limit,
            "length_less": len(value) < limit,
            "exact_length": len(value) == limit,
        }[filter_type]
    elif filter_type == "starts_with":
        matched = value.startswith(criteria)
    elif filter_type == "ends_with":
        matched = value.endswith(criteria)
    else:
        matched = criteria in value
    if matched:
        yield value


@node("nodetool.text.FilterRegexString", title="Filter Regex String")
async def filter_regex_string(
    value: Annotated[str, msgspec.Meta(description="Input string stream")] = "",
    pattern: Annotated[
        str, msgspec.Meta(description="The regular expression pattern to match against.")
    ] = "",
    full_match: Annotated[
        bool,
        msgspec.Meta(
            description="Whether to match the entire string or find pattern anywhere in string"
        ),
    ] = False,
) -> AsyncIterator[str]:
    """Passes each incoming string on when the pattern matches it."""
    compiled = _compile(pattern)
    if (compiled.fullmatch(value) if full_match else compiled.search(value)) is not None:
        yield value


NODES = [
    to_string,
    concat,
    join,
    template,
    replace,
    split,
    extract,
    slice_text,
    chunk,
    compare,
    equals,
    starts_with,
    ends_with,
    contains,
    index_of,
    is_empty,
    has_length,
    length,
    to_uppercase,
    to_lowercase,
    to_titlecase,
    capitalize_text,
    trim_whitespace,
    collapse_whitespace,
    remove_punctuation,
    strip_accents,
    slugify,
    surround_with,
    truncate_text,
    pad_text,
    parse_json,
    extract_regex,
    find_all_regex,
    regex_match,
    regex_replace,
    regex_split,
    regex_validate,
    filter_string,
    filter_regex_string,
]
