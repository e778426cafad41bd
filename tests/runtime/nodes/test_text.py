"""nodetool.text: each node against NodeTool's semantics, edge cases, and a real server."""

from __future__ import annotations

import re
import string

import pytest

from noderun.runtime.nodes import text
from tests.runtime.nodes.support import failure, outputs, run_graph
from tests.server.helpers import ServerHandle
from tests.support.graphs import edge, nd


def test_to_string_str_and_repr() -> None:
    assert text.to_string(value=[1, "a"]) == "[1, 'a']"
    assert text.to_string(value="a", mode="repr") == "'a'"
    assert text.to_string(value=None) == "None"
    assert text.to_string() == "()"


def test_concat() -> None:
    assert text.concat(a="ab", b="cd") == "abcd"
    assert text.concat() == ""


def test_join_converts_items_with_str() -> None:
    assert text.join(strings=["a", 1, 2.5, None, True], separator="-") == "a-1-2.5-None-True"
    assert text.join(strings=[], separator=",") == ""


def test_template_replaces_both_placeholder_styles_literally() -> None:
    result = text.template(string="{{ name }}/{name}/{{name}}/{{other}}", values={"name": r"\1"})
    assert result == r"\1/\1/\1/{{other}}"
    assert text.template(string="{n}", values={"n": 3}) == "3"
    assert text.template(string="{{ x }}", values=["not", "a", "dict"]) == "{{ x }}"
    assert text.template(string="{{{x}}}", values={"x": 1}) == "{1}"


def test_replace() -> None:
    assert text.replace(text="a.b.c", old=".", new="/") == "a/b/c"
    assert text.replace(text="abc", old="z", new="y") == "abc"


def test_split() -> None:
    assert text.split(text="a,b,,c") == ["a", "b", "", "c"]
    assert text.split(text="") == [""]
    with pytest.raises(ValueError, match="delimiter must not be empty"):
        text.split(text="abc", delimiter="")


def test_extract_is_a_python_slice() -> None:
    assert text.extract(text="hello", start=1, end=3) == "el"
    assert text.extract(text="hello", start=-3, end=-1) == "ll"
    assert text.extract(text="hello", start=2, end=100) == "llo"
    assert text.extract(text="hello") == ""


def test_slice() -> None:
    assert text.slice_text(text="abcdef", start=0, stop=6, step=2) == "ace"
    assert text.slice_text(text="abcdef", start=5, stop=0, step=-1) == "fedcb"
    assert text.slice_text(text="abc", start=10, stop=20) == ""
    with pytest.raises(ValueError, match="step must not be zero"):
        text.slice_text(text="abc", start=0, stop=2, step=0)


def test_chunk_words_with_overlap() -> None:
    words = "a b c d e"
    assert text.chunk(text=words, length=2) == ["a b", "c d", "e"]
    assert text.chunk(text=words, length=3, overlap=1) == ["a b c", "c d e", "e"]
    assert text.chunk(text="a,b,c", length=2, separator=",") == ["a b", "c"]
    assert text.chunk(text="") == [""]
    with pytest.raises(ValueError, match="overlap"):
        text.chunk(text=words, length=2, overlap=2)
    with pytest.raises(ValueError, match="separator"):
        text.chunk(text=words, separator="")


def test_compare_orders_after_normalizing() -> None:
    assert text.compare(text_a="a", text_b="b") == "less"
    assert text.compare(text_a="b", text_b="a") == "greater"
    assert text.compare(text_a="B", text_b="a") == "less"
    assert text.compare(text_a="B", text_b="a", case_sensitive=False) == "greater"
    assert text.compare(text_a=" a ", text_b="a", trim_whitespace=True) == "equal"
    assert text.compare() == "equal"


def test_equals() -> None:
    assert text.equals(text_a="A", text_b="a") is False
    assert text.equals(text_a="A", text_b="a", case_sensitive=False) is True
    assert text.equals(text_a=" a", text_b="a") is False
    assert text.equals(text_a=" a", text_b="a", trim_whitespace=True) is True


def test_starts_with_and_ends_with() -> None:
    assert text.starts_with(text="hello", prefix="he") is True
    assert text.starts_with(text="hello", prefix="lo") is False
    assert text.starts_with(text="", prefix="") is True
    assert text.ends_with(text="hello", suffix="lo") is True
    assert text.ends_with(text="hello", suffix="he") is False


def test_contains_match_modes() -> None:
    assert text.contains(text="Hello world", substring="world") is True
    assert text.contains(text="Hello world", substring="WORLD") is False
    assert text.contains(text="Hello world", substring="WORLD", case_sensitive=False) is True
    values = ["hello", "moon"]
    assert text.contains(text="hello world", search_values=values) is True
    assert text.contains(text="hello world", search_values=values, match_mode="all") is False
    assert text.contains(text="hello world", search_values=["x"], match_mode="none") is True
    assert text.contains(text="hello world", search_values=values, match_mode="none") is False
    # search_values, when given, replace substring.
    assert text.contains(text="abc", substring="a", search_values=["z"]) is False


def test_index_of() -> None:
    assert text.index_of(text="abcabc", substring="c") == 2
    assert text.index_of(text="abcabc", substring="c", search_from_end=True) == 5
    assert text.index_of(text="abcabc", substring="c", start_index=3) == 5
    assert text.index_of(text="abcabc", substring="c", end_index=2) == -1
    assert text.index_of(text="ABC", substring="b") == -1
    assert text.index_of(text="ABC", substring="b", case_sensitive=False) == 1
    assert text.index_of(text="abc", substring="a", start_index=10) == -1


def test_is_empty() -> None:
    assert text.is_empty(text="") is True
    assert text.is_empty(text="  \n") is True
    assert text.is_empty(text="  ", trim_whitespace=False) is False
    assert text.is_empty(text="x") is False


def test_has_length() -> None:
    assert text.has_length(text="abc") is True
    assert text.has_length(text="abc", exact_length=3) is True
    assert text.has_length(text="abc", exact_length=2) is False
    assert text.has_length(text="abc", min_length=4) is False
    assert text.has_length(text="abc", max_length=2) is False
    assert text.has_length(text="abc", min_length=1, max_length=3) is True


def test_length_measures() -> None:
    sample = "  one two\n\nthree  \n"
    assert text.length(text=sample) == len(sample)
    assert text.length(text=sample, trim_whitespace=True) == len(sample.strip())
    assert text.length(text=sample, measure="words") == 3
    assert text.length(text=sample, measure="lines") == 3
    assert text.length(text=sample, measure="lines", trim_whitespace=True) == 2
    assert text.length(text="", measure="lines") == 0
    assert text.length(text="", measure="words") == 0


def test_case_conversions() -> None:
    assert text.to_uppercase(text="abc ß") == "ABC SS"
    assert text.to_lowercase(text="ABC") == "abc"
    assert text.to_titlecase(text="hello wORLD") == "Hello World"
    assert text.capitalize_text(text="hELLO world") == "Hello world"
    assert text.capitalize_text(text="") == ""


def test_trim_whitespace() -> None:
    assert text.trim_whitespace(text="  a  ") == "a"
    assert text.trim_whitespace(text="  a  ", trim_end=False) == "a  "
    assert text.trim_whitespace(text="  a  ", trim_start=False) == "  a"
    assert text.trim_whitespace(text="  a  ", trim_start=False, trim_end=False) == "  a  "


def test_collapse_whitespace() -> None:
    assert text.collapse_whitespace(text="  a \t b\n\nc  ") == "a b c"
    assert text.collapse_whitespace(text="a \t b\n\nc", preserve_newlines=True) == "a b\n\nc"
    assert text.collapse_whitespace(text=" a  b ", trim_edges=False, replacement="_") == "_a_b_"
    assert text.collapse_whitespace(text="a  b", replacement=r"\1") == r"a\1b"


def test_remove_punctuation() -> None:
    assert text.remove_punctuation(text="Hi, there! (ok)") == "Hi there ok"
    assert text.remove_punctuation(text="a.b", replacement=" ") == "a b"
    assert text.remove_punctuation(text="a.b,c", punctuation=",") == "a.bc"
    defaults = text.remove_punctuation.__defaults__
    assert defaults is not None and string.punctuation in defaults


def test_strip_accents() -> None:
    assert text.strip_accents(text="Café naïve") == "Cafe naive"
    assert text.strip_accents(text="Æ→ü") == "Æ→u"
    assert text.strip_accents(text="Æ→ü", preserve_non_ascii=False) == "u"


def test_slugify() -> None:
    assert text.slugify(text="  Hello, World! Ça va?  ") == "hello-world-ca-va"
    assert text.slugify(text="Hello World", separator="_", lowercase=False) == "Hello_World"
    assert text.slugify(text="Straße Ω", allow_unicode=True) == "straße-ω"
    assert text.slugify(text="Straße Ω") == "strae"
    assert text.slugify(text="!!!") == ""


def test_surround_with() -> None:
    assert text.surround_with(text="x", prefix="[", suffix="]") == "[x]"
    assert text.surround_with(text="[x]", prefix="[", suffix="]") == "[x]"
    assert text.surround_with(text="[x]", prefix="[", suffix="]", skip_if_wrapped=False) == "[[x]]"


def test_truncate_text() -> None:
    assert text.truncate_text(text="hello world", max_length=5) == "hello"
    assert text.truncate_text(text="hello world", max_length=8, ellipsis="...") == "hello..."
    assert text.truncate_text(text="hello", max_length=5, ellipsis="...") == "hello"
    assert text.truncate_text(text="hello", max_length=2, ellipsis="...") == "he"
    assert text.truncate_text(text="hello", max_length=0, ellipsis="…") == "…"
    assert text.truncate_text(text="hello", max_length=0) == ""


def test_pad_text() -> None:
    assert text.pad_text(text="ab", length=5) == "ab   "
    assert text.pad_text(text="ab", length=5, pad_character="*", direction="left") == "***ab"
    assert text.pad_text(text="ab", length=5, pad_character="*", direction="both") == "*ab**"
    assert text.pad_text(text="abcdef", length=3) == "abcdef"
    with pytest.raises(ValueError, match="single character"):
        text.pad_text(text="ab", length=5, pad_character="**")
    with pytest.raises(ValueError, match="single character"):
        text.pad_text(text="ab", length=5, pad_character="")


def test_parse_json() -> None:
    assert text.parse_json(text='{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}
    assert text.parse_json(text='"s"') == "s"
    with pytest.raises(ValueError, match="invalid JSON"):
        text.parse_json(text="")
    with pytest.raises(ValueError, match="invalid JSON"):
        text.parse_json(text="{'a': 1}")


def test_extract_regex_groups_of_first_match() -> None:
    assert text.extract_regex(text="a1 b2", regex=r"(\w)(\d)") == ["a", "1"]
    assert text.extract_regex(text="a1", regex=r"(x)?(\d)") == [None, "1"]
    assert text.extract_regex(text="abc", regex=r"(\d)") == []
    assert text.extract_regex(text="A\nb", regex=r"a.(b)", dotall=True, ignorecase=True) == ["b"]
    assert text.extract_regex(text="x\nab", regex=r"^(a)", multiline=True) == ["a"]
    with pytest.raises(ValueError, match="invalid regular expression"):
        text.extract_regex(text="a", regex="(")


def test_find_all_regex_is_findall() -> None:
    assert text.find_all_regex(text="a1 b2 c3", regex=r"\d") == ["1", "2", "3"]
    assert text.find_all_regex(text="a1 b2", regex=r"(\w)\d") == ["a", "b"]
    assert text.find_all_regex(text="a1 b2", regex=r"(\w)(\d)") == [["a", "1"], ["b", "2"]]
    assert text.find_all_regex(text="AB", regex="a|b", ignorecase=True) == ["A", "B"]
    assert text.find_all_regex(text="", regex="x") == []
    with pytest.raises(ValueError, match="invalid regular expression"):
        text.find_all_regex(text="a", regex="[")


def test_regex_match_groups() -> None:
    assert text.regex_match(text="a1 b2", pattern=r"\w\d") == ["a1", "b2"]
    assert text.regex_match(text="a1 b2", pattern=r"(\w)(\d)", group=2) == ["1", "2"]
    assert text.regex_match(text="a", pattern=r"(x)?a", group=1) == [None]
    with pytest.raises(ValueError, match="group 2 out of range"):
        text.regex_match(text="a1", pattern=r"(\w)\d", group=2)


def test_regex_replace() -> None:
    assert text.regex_replace(text="a1b22", pattern=r"\d+", replacement="#") == "a#b#"
    assert text.regex_replace(text="a1b2", pattern=r"\d", replacement="#", count=1) == "a#b2"
    assert text.regex_replace(text="ab", pattern=r"(a)", replacement=r"[\1]") == "[a]b"
    with pytest.raises(ValueError, match="invalid replacement"):
        text.regex_replace(text="ab", pattern="a", replacement=r"\1")


def test_regex_split() -> None:
    assert text.regex_split(text="a1b22c", pattern=r"\d+") == ["a", "b", "c"]
    assert text.regex_split(text="a1b2c", pattern=r"\d", maxsplit=1) == ["a", "b2c"]
    assert text.regex_split(text="a1b", pattern=r"(\d)") == ["a", "1", "b"]
    with pytest.raises(ValueError, match="invalid regular expression"):
        text.regex_split(text="a", pattern="*")


def test_regex_validate_matches_at_the_start() -> None:
    assert text.regex_validate(text="abc123", pattern=r"[a-z]+") is True
    assert text.regex_validate(text="123abc", pattern=r"[a-z]+") is False
    assert text.regex_validate(text="", pattern="") is True


async def _collect(stream: object) -> list[str]:
    assert hasattr(stream, "__aiter__")
    return [item async for item in stream]


async def test_filter_string_passes_or_drops_each_value() -> None:
    assert await _collect(text.filter_string(value="hello", criteria="ell")) == ["hello"]
    assert await _collect(text.filter_string(value="hello", criteria="x")) == []
    kinds = {
        "starts_with": ("he", ["hello"]),
        "ends_with": ("he", []),
        "length_greater": ("4", ["hello"]),
        "length_less": ("5", []),
        "exact_length": ("5", ["hello"]),
    }
    for filter_type, (criteria, expected) in kinds.items():
        stream = text.filter_string(value="hello", filter_type=filter_type, criteria=criteria)  # type: ignore[arg-type]
        assert await _collect(stream) == expected, filter_type
    with pytest.raises(ValueError, match="not a length"):
        await _collect(text.filter_string(value="x", filter_type="length_less", criteria="five"))


async def test_filter_regex_string() -> None:
    assert await _collect(text.filter_regex_string(value="abc", pattern="b")) == ["abc"]
    assert await _collect(text.filter_regex_string(value="abc", pattern="b", full_match=True)) == []
    assert await _collect(
        text.filter_regex_string(value="abc", pattern="a.c", full_match=True)
    ) == ["abc"]
    with pytest.raises(ValueError, match=re.escape("invalid regular expression '('")):
        await _collect(text.filter_regex_string(value="abc", pattern="("))


# -- through a real server ---------------------------------------------------------


async def test_text_chain_over_websocket(server: ServerHandle) -> None:
    """Join (non-strings) → Length in words, and a regex node on the runner pool."""
    terminal = await run_graph(
        server,
        nd("join", "nodetool.text.Join", strings=["one", 2, 3.5], separator=" "),
        nd("len", "nodetool.text.Length", measure="words"),
        nd("find", "nodetool.text.FindAllRegex", text="a1 b22", regex=r"\d+"),
        edges=[edge("join", "len", "text")],
    )
    assert outputs(terminal) == {"len": {"output": 3}, "find": {"output": ["1", "22"]}}


async def test_filter_string_filters_a_stream_over_websocket(server: ServerHandle) -> None:
    """Count 1..12 → ToString → FilterString(contains "1") → Output: only the matches."""
    terminal = await run_graph(
        server,
        nd("count", "noderun.debug.Count", count=12),
        nd("str", "nodetool.text.ToString"),
        nd("filter", "nodetool.text.FilterString", criteria="1"),
        nd("out", "nodetool.output.Output", name="matches"),
        edges=[
            edge("count", "str", "value"),
            edge("str", "filter", "value"),
            edge("filter", "out", "value"),
        ],
    )
    assert outputs(terminal)["matches"] == ["1", "10", "11", "12"]


async def test_invalid_regex_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    terminal = await run_graph(server, nd("bad", "nodetool.text.RegexReplace", pattern="("))
    error = failure(terminal, "bad", "nodetool.text.RegexReplace")
    assert "invalid regular expression" in error


async def test_invalid_enum_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    terminal = await run_graph(server, nd("len", "nodetool.text.Length", measure="bytes"))
    error = failure(terminal, "len", "nodetool.text.Length")
    assert "measure" in error
