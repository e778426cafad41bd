"""Every built-in node's metadata is well-formed; the NodeTool-named ones match NodeTool's
names, titles, property names (in order) and output handles."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from noderun.runtime.errors import PropertyError
from noderun.runtime.node import NodeSpec
from noderun.runtime.nodes import BUILTIN_NODES
from noderun.runtime.registry import Registry
from tests.server.sdk_shapes import NODE_METADATA, check

#: node type → (title, property names, output names), as in NodeTool's nodetool-base.
NODETOOL: dict[str, tuple[str, str, str]] = {
    "nodetool.text.ToString": ("To String", "value mode", "output"),
    "nodetool.text.Concat": ("Concatenate Text", "a b", "output"),
    "nodetool.text.Join": ("Join", "strings separator", "output"),
    "nodetool.text.Template": ("Template", "string values", "output"),
    "nodetool.text.Replace": ("Replace Text", "text old new", "output"),
    "nodetool.text.Split": ("Split Text", "text delimiter", "output"),
    "nodetool.text.Extract": ("Extract Text", "text start end", "output"),
    "nodetool.text.Slice": ("Slice Text", "text start stop step", "output"),
    "nodetool.text.Chunk": ("Split Text into Chunks", "text length overlap separator", "output"),
    "nodetool.text.Compare": (
        "Compare Text",
        "text_a text_b case_sensitive trim_whitespace",
        "output",
    ),
    "nodetool.text.Equals": ("Equals", "text_a text_b case_sensitive trim_whitespace", "output"),
    "nodetool.text.StartsWith": ("Starts With", "text prefix", "output"),
    "nodetool.text.EndsWith": ("Ends With", "text suffix", "output"),
    "nodetool.text.Contains": (
        "Contains Text",
        "text substring search_values case_sensitive match_mode",
        "output",
    ),
    "nodetool.text.IndexOf": (
        "Index Of",
        "text substring case_sensitive start_index end_index search_from_end",
        "output",
    ),
    "nodetool.text.IsEmpty": ("Is Empty", "text trim_whitespace", "output"),
    "nodetool.text.HasLength": (
        "Check Length",
        "text min_length max_length exact_length",
        "output",
    ),
    "nodetool.text.Length": ("Measure Length", "text measure trim_whitespace", "output"),
    "nodetool.text.ToUppercase": ("To Uppercase", "text", "output"),
    "nodetool.text.ToLowercase": ("To Lowercase", "text", "output"),
    "nodetool.text.ToTitlecase": ("To Title Case", "text", "output"),
    "nodetool.text.CapitalizeText": ("Capitalize Text", "text", "output"),
    "nodetool.text.TrimWhitespace": ("Trim Whitespace", "text trim_start trim_end", "output"),
    "nodetool.text.CollapseWhitespace": (
        "Collapse Whitespace",
        "text preserve_newlines replacement trim_edges",
        "output",
    ),
    "nodetool.text.RemovePunctuation": (
        "Remove Punctuation",
        "text replacement punctuation",
        "output",
    ),
    "nodetool.text.StripAccents": ("Strip Accents", "text preserve_non_ascii", "output"),
    "nodetool.text.Slugify": ("Slugify", "text separator lowercase allow_unicode", "output"),
    "nodetool.text.SurroundWith": ("Surround With", "text prefix suffix skip_if_wrapped", "output"),
    "nodetool.text.TruncateText": ("Truncate Text", "text max_length ellipsis", "output"),
    "nodetool.text.PadText": ("Pad Text", "text length pad_character direction", "output"),
    "nodetool.text.ParseJSON": ("Parse JSON String", "text", "output"),
    "nodetool.text.ExtractRegex": (
        "Extract Regex Groups",
        "text regex dotall ignorecase multiline",
        "output",
    ),
    "nodetool.text.FindAllRegex": (
        "Find All Regex Matches",
        "text regex dotall ignorecase multiline",
        "output",
    ),
    "nodetool.text.RegexMatch": ("Find Regex Matches", "text pattern group", "output"),
    "nodetool.text.RegexReplace": (
        "Replace with Regex",
        "text pattern replacement count",
        "output",
    ),
    "nodetool.text.RegexSplit": ("Split with Regex", "text pattern maxsplit", "output"),
    "nodetool.text.RegexValidate": ("Validate with Regex", "text pattern", "output"),
    "nodetool.text.FilterString": ("Filter String", "value filter_type criteria", "output"),
    "nodetool.text.FilterRegexString": (
        "Filter Regex String",
        "value pattern full_match",
        "output",
    ),
    "lib.math.Add": ("Add", "a b", "output"),
    "lib.math.Subtract": ("Subtract", "a b", "output"),
    "lib.math.Multiply": ("Multiply", "a b", "output"),
    "lib.math.Divide": ("Divide", "a b", "output"),
    "lib.math.Modulus": ("Modulus", "a b", "output"),
    "lib.math.Power": ("Power", "base exponent", "output"),
    "lib.math.Sqrt": ("Sqrt", "x", "output"),
    "lib.math.Sine": ("Sine", "angle_rad", "output"),
    "lib.math.Cosine": ("Cosine", "angle_rad", "output"),
    "lib.math.MathFunction": ("Math Function", "input operation", "output"),
    "nodetool.boolean.LogicalOperator": ("Logical Operator", "a b operation", "output"),
    "nodetool.boolean.Not": ("Not", "value", "output"),
    "nodetool.boolean.Compare": ("Compare", "a b comparison", "output"),
    "nodetool.boolean.ConditionalSwitch": (
        "Conditional Switch",
        "condition if_true if_false",
        "output",
    ),
    "nodetool.boolean.IsNone": ("Is None", "value", "output"),
    "nodetool.boolean.IsIn": ("Is In", "value options", "output"),
    "nodetool.boolean.All": ("All", "values", "output"),
    "nodetool.boolean.Some": ("Some", "values", "output"),
    "nodetool.constant.String": ("String", "value", "output"),
    "nodetool.constant.Integer": ("Integer", "value", "output"),
    "nodetool.constant.Float": ("Float", "value", "output"),
    "nodetool.constant.Bool": ("Bool", "value", "output"),
    "nodetool.constant.List": ("List", "value", "output"),
    "nodetool.constant.Dict": ("Dict", "value", "output"),
    "nodetool.constant.TextList": ("Text List", "value", "output"),
    "nodetool.constant.Select": ("Select", "value options enum_type_name", "output"),
    "nodetool.constant.Date": ("Date", "year month day", "output"),
    "nodetool.constant.DateTime": (
        "Date Time",
        "year month day hour minute second millisecond tzinfo utc_offset",
        "output",
    ),
    "nodetool.constant.ImageSize": ("Image Size", "value", "image_size width height"),
    "nodetool.constant.DataFrame": ("Data Frame", "value", "output"),
    "nodetool.constant.Document": ("Document", "value", "output"),
    "nodetool.constant.JSON": ("JSON", "value", "output"),
    "nodetool.constant.LanguageModelConstant": ("Language Model Constant", "value", "output"),
    "nodetool.constant.ImageModelConstant": ("Image Model Constant", "value", "output"),
    "nodetool.constant.VideoModelConstant": ("Video Model Constant", "value", "output"),
    "nodetool.constant.TTSModelConstant": ("TTSModel Constant", "value", "output"),
    "nodetool.constant.ASRModelConstant": ("ASRModel Constant", "value", "output"),
    "nodetool.constant.EmbeddingModelConstant": ("Embedding Model Constant", "value", "output"),
    "lib.date.Today": ("Today", "", "output"),
    "lib.date.Now": ("Now", "", "output"),
    "lib.date.ParseDate": ("Parse Date", "date_string input_format", "output"),
    "lib.date.ParseDateTime": ("Parse Date Time", "datetime_string input_format", "output"),
    "lib.date.AddTimeDelta": ("Add Time Delta", "input_datetime days hours minutes", "output"),
    "lib.date.DateDifference": (
        "Date Difference",
        "start_date end_date",
        "total_seconds days hours minutes seconds",
    ),
    "lib.date.FormatDateTime": ("Format Date Time", "input_datetime output_format", "output"),
    "lib.date.GetWeekday": ("Get Weekday", "input_datetime as_name", "output"),
    "lib.date.DateRange": ("Date Range", "start_date end_date step_days", "output"),
    "lib.date.IsDateInRange": (
        "Is Date In Range",
        "check_date start_date end_date inclusive",
        "output",
    ),
    "lib.date.GetQuarter": ("Get Quarter", "input_datetime", "quarter quarter_start quarter_end"),
    "lib.date.DateToDatetime": ("Date To Datetime", "input_date", "output"),
    "lib.date.DatetimeToDate": ("Datetime To Date", "input_datetime", "output"),
    "lib.date.RelativeTime": ("Relative Time", "amount unit direction", "output"),
    "lib.date.BoundaryTime": (
        "Boundary Time",
        "input_datetime period boundary start_monday",
        "output",
    ),
    "lib.uuid.GenerateUUID4": ("Generate UUID4", "", "output"),
    "lib.uuid.GenerateUUID1": ("Generate UUID1", "", "output"),
    "lib.uuid.GenerateUUID3": ("Generate UUID3", "namespace name", "output"),
    "lib.uuid.GenerateUUID5": ("Generate UUID5", "namespace name", "output"),
    "lib.uuid.ParseUUID": ("Parse UUID", "uuid_string", "output"),
    "lib.uuid.FormatUUID": ("Format UUID", "uuid_string format", "output"),
    "lib.uuid.IsValidUUID": ("Is Valid UUID", "uuid_string", "output"),
    "lib.markdown.ExtractLinks": ("Extract Links", "markdown include_titles", "output"),
    "lib.markdown.ExtractHeaders": ("Extract Headers", "markdown max_level", "output"),
    "lib.markdown.ExtractBulletLists": ("Extract Bullet Lists", "markdown", "output"),
    "lib.markdown.ExtractNumberedLists": ("Extract Numbered Lists", "markdown", "output"),
    "lib.markdown.ExtractCodeBlocks": ("Extract Code Blocks", "markdown", "output"),
    "lib.markdown.ExtractTables": ("Extract Tables", "markdown", "output"),
}

#: NodeTool's scalar and container type names, plus the structured types noderun carries.
TYPE_NAMES = {
    "str", "int", "float", "bool", "bytes", "list", "dict", "any", "union", "enum", "none",
    "date", "datetime", "image_size", "dataframe", "document", "json", "language_model",
    "image_model", "video_model", "tts_model", "asr_model", "embedding_model",
}  # fmt: skip


def _check_type(meta: Any, where: str) -> None:
    assert isinstance(meta, dict), where
    assert set(meta) >= {"type", "optional", "type_args"}, where
    assert meta["type"] in TYPE_NAMES, f"{where}: unknown type {meta['type']!r}"
    assert isinstance(meta["optional"], bool), where
    if meta["type"] == "enum":
        assert meta["values"] and len(set(meta["values"])) == len(meta["values"]), where
    for arg in meta["type_args"]:
        _check_type(arg, where)


@pytest.mark.parametrize("spec", BUILTIN_NODES, ids=lambda spec: spec.node_type)
def test_metadata_is_well_formed(spec: NodeSpec) -> None:
    meta = spec.metadata()
    # It crosses the wire in both encodings as it is.
    assert msgspec.json.decode(msgspec.json.encode(meta)) == msgspec.msgpack.decode(
        msgspec.msgpack.encode(meta)
    )
    assert set(meta) >= {
        "node_type", "title", "description", "namespace", "properties", "outputs",
        "is_streaming_output",
    }  # fmt: skip
    # Every key of the type the C# SDK deserializes it into.
    check(meta, NODE_METADATA)
    node_type = meta["node_type"]
    assert isinstance(node_type, str) and meta["namespace"] == node_type.rpartition(".")[0]
    assert isinstance(meta["title"], str) and meta["title"]
    assert isinstance(meta["description"], str) and meta["description"]
    assert meta["is_streaming_output"] is (spec.kind == "stream")
    properties = meta["properties"]
    assert isinstance(properties, list)
    names = [prop["name"] for prop in properties]
    assert len(set(names)) == len(names)
    for prop in properties:
        where = f"{node_type}.{prop['name']}"
        _check_type(prop["type"], where)
        assert isinstance(prop["description"], str), where
        low, high = prop.get("min"), prop.get("max")
        if low is not None and high is not None:
            assert low <= high, where
        if not spec.properties[prop["name"]].required:
            # The default is a valid value of the property, constraints included.
            default = spec.properties[prop["name"]].default
            try:
                spec.properties[prop["name"]].check(node_type, default)
            except PropertyError as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{where}: default {default!r} is invalid: {exc}")
    outputs = meta["outputs"]
    assert isinstance(outputs, list) and outputs
    handles = [out["name"] for out in outputs]
    assert len(set(handles)) == len(handles) and all(handles)
    for out in outputs:
        _check_type(out["type"], f"{node_type} -> {out['name']}")


def test_builtin_node_types_are_unique() -> None:
    types = [spec.node_type for spec in BUILTIN_NODES]
    assert len(set(types)) == len(types)
    Registry(BUILTIN_NODES)


@pytest.mark.parametrize("node_type", sorted(NODETOOL))
def test_nodetool_names_titles_properties_and_outputs(node_type: str) -> None:
    specs = {spec.node_type: spec for spec in BUILTIN_NODES}
    assert node_type in specs, f"{node_type} is not registered"
    title, properties, outputs = NODETOOL[node_type]
    meta = specs[node_type].metadata()
    assert meta["title"] == title
    assert [prop["name"] for prop in meta["properties"]] == properties.split()  # type: ignore[attr-defined]
    assert [out["name"] for out in meta["outputs"]] == outputs.split()  # type: ignore[attr-defined]


def test_every_node_of_these_namespaces_is_checked_against_nodetool() -> None:
    namespaces = {node_type.rpartition(".")[0] for node_type in NODETOOL}
    ours = {spec.node_type for spec in BUILTIN_NODES if spec.namespace in namespaces}
    assert ours == set(NODETOOL)
