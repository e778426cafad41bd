"""nodetool.constant: each constant outputs its value; structured values on the wire."""

from __future__ import annotations

import pytest

from noderun.runtime.node import spec_of
from noderun.runtime.nodes import constant
from noderun.runtime.nodes.values import (
    ASRModel,
    ColumnDef,
    DataframeRef,
    Date,
    Datetime,
    DocumentRef,
    EmbeddingModel,
    ImageModel,
    ImageSize,
    JSONRef,
    LanguageModel,
    TTSModel,
    VideoModel,
)
from tests.runtime.nodes.support import failure, outputs, run_graph
from tests.server.helpers import ServerHandle
from tests.support.graphs import edge, nd


def test_plain_constants() -> None:
    assert constant.constant_string(value="s") == "s"
    assert constant.constant_integer(value=3) == 3
    assert constant.constant_float(value=2.5) == 2.5
    assert constant.constant_bool(value=True) is True
    assert constant.constant_list(value=[1, "a"]) == [1, "a"]
    assert constant.constant_dict(value={"a": 1}) == {"a": 1}
    assert constant.constant_text_list(value=["a", "b"]) == ["a", "b"]
    assert constant.constant_text_list() == []


def test_select_outputs_the_selected_value() -> None:
    assert constant.constant_select(value="b", options=["a", "b"], enum_type_name="E") == "b"
    assert constant.constant_select() == ""


def test_date_builds_a_valid_date() -> None:
    assert constant.constant_date(year=2024, month=2, day=29) == Date(year=2024, month=2, day=29)
    assert constant.constant_date() == Date(year=1900, month=1, day=1)
    with pytest.raises(ValueError, match="invalid date 2023-2-29"):
        constant.constant_date(year=2023, month=2, day=29)


def test_datetime_offset_minutes_become_seconds() -> None:
    value = constant.constant_datetime(
        year=2024, month=5, day=6, hour=7, minute=8, second=9, millisecond=10,
        tzinfo="CEST", utc_offset=120,
    )  # fmt: skip
    assert value == Datetime(
        year=2024, month=5, day=6, hour=7, minute=8, second=9, microsecond=10_000,
        tzinfo="CEST", utc_offset=7200,
    )  # fmt: skip
    assert value.to_datetime().utcoffset() is not None
    assert constant.constant_datetime().tzinfo == "UTC"
    with pytest.raises(ValueError, match="invalid datetime"):
        constant.constant_datetime(year=2023, month=4, day=31)


def test_image_size_splits_width_and_height() -> None:
    size = ImageSize(width=640, height=480, preset="vga")
    assert constant.constant_image_size(value=size) == {
        "image_size": size,
        "width": 640,
        "height": 480,
    }
    assert constant.constant_image_size()["width"] == 1024
    assert list(spec_of(constant.constant_image_size).outputs) == ["image_size", "width", "height"]


def test_reference_and_model_constants_pass_their_value_through() -> None:
    frame = DataframeRef(columns=[ColumnDef(name="a", data_type="int")], data=[[1]])
    assert constant.constant_dataframe(value=frame) is frame
    assert constant.constant_document(value=DocumentRef(uri="file:///x")).uri == "file:///x"
    assert constant.constant_json(value=JSONRef(data="{}")).data == "{}"
    pairs = [
        (constant.language_model_constant, LanguageModel(provider="openai", id="gpt")),
        (constant.image_model_constant, ImageModel(id="i")),
        (constant.video_model_constant, VideoModel(id="v")),
        (constant.tts_model_constant, TTSModel(id="t", voices=["a"])),
        (constant.asr_model_constant, ASRModel(id="a")),
        (constant.embedding_model_constant, EmbeddingModel(id="e", dimensions=3)),
    ]
    for fn, value in pairs:
        assert fn(value=value) is value  # type: ignore[operator]
        assert fn().id == ""  # type: ignore[operator]


async def test_constants_over_websocket(server: ServerHandle) -> None:
    """Structured values arrive as NodeTool's maps, are checked, and travel back as maps."""
    model = {"type": "language_model", "provider": "openai", "id": "gpt-4o", "extra": "ignored"}
    terminal = await run_graph(
        server,
        nd("dt", "nodetool.constant.DateTime", year=2024, month=2, day=29, utc_offset=60),
        nd("size", "nodetool.constant.ImageSize", value={"type": "image_size", "width": 8}),
        nd("double", "lib.math.Multiply", b=2),
        nd("size2", "nodetool.constant.ImageSize", value={"type": "image_size", "width": 8}),
        nd("model", "nodetool.constant.LanguageModelConstant", value=model),
        edges=[edge("size", "double", "a", source_handle="width")],
    )
    found = outputs(terminal)
    assert found["dt"]["output"] == {
        "type": "datetime",
        "year": 2024,
        "month": 2,
        "day": 29,
        "hour": 0,
        "minute": 0,
        "second": 0,
        "microsecond": 0,
        "tzinfo": "UTC",
        "utc_offset": 3600,
    }
    assert found["size2"] == {
        "image_size": {"type": "image_size", "width": 8, "height": 1024, "preset": None},
        "width": 8,
        "height": 1024,
    }
    assert found["double"] == {"output": 16}
    assert found["model"]["output"] == {
        "type": "language_model",
        "provider": "openai",
        "id": "gpt-4o",
        "name": "",
        "path": None,
        "supported_tasks": [],
    }


async def test_invalid_constants_fail_the_run_naming_the_node(server: ServerHandle) -> None:
    terminal = await run_graph(
        server, nd("d", "nodetool.constant.Date", year=2023, month=2, day=30)
    )
    assert "invalid date" in failure(terminal, "d", "nodetool.constant.Date")
    terminal = await run_graph(server, nd("d", "nodetool.constant.Date", month=13))
    failure(terminal, "d", "nodetool.constant.Date")
    wrong = {"type": "image_size", "width": "wide"}
    terminal = await run_graph(server, nd("s", "nodetool.constant.ImageSize", value=wrong))
    failure(terminal, "s", "nodetool.constant.ImageSize")
