"""Constant nodes under NodeTool's names (``nodetool.constant.*``): each outputs
its ``value`` (``Date``/``DateTime`` build one from their fields, ``ImageSize``
also splits its value into ``width`` and ``height``).

Structured values (date, datetime, image size, dataframe, document, JSON and
model references) are NodeTool's wire maps, ``{"type": "datetime", …}``: see
:mod:`noderun.runtime.nodes.values`. ``Date``/``DateTime`` fail on a day that
does not exist (NodeTool builds the value unchecked and fails later, in the
node that uses it).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from noderun.runtime.node import node
from noderun.runtime.nodes.values import (
    ASRModel,
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


@node("nodetool.constant.String", title="String", inline=True)
def constant_string(value: str = "") -> str:
    """Represents a string constant in the workflow."""
    return value


@node("nodetool.constant.Integer", title="Integer", inline=True)
def constant_integer(value: int = 0) -> int:
    """Represents an integer constant in the workflow."""
    return value


@node("nodetool.constant.Float", title="Float", inline=True)
def constant_float(value: float = 0.0) -> float:
    """Represents a floating-point number constant in the workflow."""
    return value


@node("nodetool.constant.Bool", title="Bool", inline=True)
def constant_bool(value: bool = False) -> bool:
    """Represents a boolean constant in the workflow."""
    return value


@node("nodetool.constant.List", title="List", inline=True)
def constant_list(value: list[Any] = []) -> list[Any]:  # noqa: B006 - never mutated
    """Represents a list constant in the workflow."""
    return value


@node("nodetool.constant.Dict", title="Dict", inline=True)
def constant_dict(value: dict[str, Any] = {}) -> dict[str, Any]:  # noqa: B006 - never mutated
    """Represents a dictionary constant in the workflow."""
    return value


@node("nodetool.constant.TextList", title="Text List", inline=True)
def constant_text_list(
    value: Annotated[list[str], msgspec.Meta(description="List of text strings")] = [],  # noqa: B006 - never mutated
) -> list[str]:
    """Represents a list of text strings in the workflow."""
    return value


@node("nodetool.constant.Select", title="Select", inline=True)
def constant_select(
    value: Annotated[str, msgspec.Meta(description="The currently selected value.")] = "",
    options: Annotated[
        list[str], msgspec.Meta(description="The list of available options to choose from.")
    ] = [],  # noqa: B006 - never mutated
    enum_type_name: Annotated[
        str,
        msgspec.Meta(
            description="The enum type name this select corresponds to (for type matching)."
        ),
    ] = "",
) -> str:
    """Represents a selection from a predefined set of options; outputs the selected value."""
    return value


@node("nodetool.constant.Date", title="Date", inline=True)
def constant_date(
    year: Annotated[int, msgspec.Meta(ge=1, le=9999, description="Year of the date")] = 1900,
    month: Annotated[int, msgspec.Meta(ge=1, le=12, description="Month of the date")] = 1,
    day: Annotated[int, msgspec.Meta(ge=1, le=31, description="Day of the date")] = 1,
) -> Date:
    """Make a date object from year, month, day."""
    date = Date(year=year, month=month, day=day)
    date.to_date()
    return date


@node("nodetool.constant.DateTime", title="Date Time", inline=True)
def constant_datetime(
    year: Annotated[int, msgspec.Meta(ge=1, le=9999, description="Year of the datetime")] = 1900,
    month: Annotated[int, msgspec.Meta(ge=1, le=12, description="Month of the datetime")] = 1,
    day: Annotated[int, msgspec.Meta(ge=1, le=31, description="Day of the datetime")] = 1,
    hour: Annotated[int, msgspec.Meta(ge=0, le=23, description="Hour of the datetime")] = 0,
    minute: Annotated[int, msgspec.Meta(ge=0, le=59, description="Minute of the datetime")] = 0,
    second: Annotated[int, msgspec.Meta(ge=0, le=59, description="Second of the datetime")] = 0,
    millisecond: Annotated[
        int, msgspec.Meta(ge=0, le=999, description="Millisecond of the datetime")
    ] = 0,
    tzinfo: Annotated[str, msgspec.Meta(description="Timezone of the datetime")] = "UTC",
    utc_offset: Annotated[
        int,
        msgspec.Meta(ge=-720, le=840, description="UTC offset of the datetime in minutes"),
    ] = 0,
) -> Datetime:
    """Make a datetime object from its fields (the output's ``utc_offset`` is in seconds)."""
    value = Datetime(
        year=year,
        month=month,
        day=day,
        hour=hour,
        minute=minute,
        second=second,
        microsecond=millisecond * 1000,
        tzinfo=tzinfo,
        utc_offset=utc_offset * 60,
    )
    value.to_datetime()
    return value


@node(
    "nodetool.constant.ImageSize",
    title="Image Size",
    inline=True,
    outputs={"image_size": ImageSize, "width": int, "height": int},
)
def constant_image_size(value: ImageSize = ImageSize()) -> dict[str, object]:  # noqa: B008 - frozen
    """Represents an image size; also outputs its width and height."""
    return {"image_size": value, "width": value.width, "height": value.height}


@node("nodetool.constant.DataFrame", title="Data Frame", inline=True)
def constant_dataframe(value: DataframeRef = DataframeRef()) -> DataframeRef:  # noqa: B008 - frozen
    """Represents a fixed DataFrame constant in the workflow."""
    return value


@node("nodetool.constant.Document", title="Document", inline=True)
def constant_document(value: DocumentRef = DocumentRef()) -> DocumentRef:  # noqa: B008 - frozen
    """Represents a document constant in the workflow."""
    return value


@node("nodetool.constant.JSON", title="JSON", inline=True)
def constant_json(value: JSONRef = JSONRef()) -> JSONRef:  # noqa: B008 - frozen
    """Represents a JSON constant in the workflow."""
    return value


@node("nodetool.constant.LanguageModelConstant", title="Language Model Constant", inline=True)
def language_model_constant(value: LanguageModel = LanguageModel()) -> LanguageModel:  # noqa: B008 - frozen
    """Represents a language model constant in the workflow."""
    return value


@node("nodetool.constant.ImageModelConstant", title="Image Model Constant", inline=True)
def image_model_constant(value: ImageModel = ImageModel()) -> ImageModel:  # noqa: B008 - frozen
    """Represents an image generation model constant in the workflow."""
    return value


@node("nodetool.constant.VideoModelConstant", title="Video Model Constant", inline=True)
def video_model_constant(value: VideoModel = VideoModel()) -> VideoModel:  # noqa: B008 - frozen
    """Represents a video generation model constant in the workflow."""
    return value


@node("nodetool.constant.TTSModelConstant", title="TTSModel Constant", inline=True)
def tts_model_constant(value: TTSModel = TTSModel()) -> TTSModel:  # noqa: B008 - frozen
    """Represents a text-to-speech model constant in the workflow."""
    return value


@node("nodetool.constant.ASRModelConstant", title="ASRModel Constant", inline=True)
def asr_model_constant(value: ASRModel = ASRModel()) -> ASRModel:  # noqa: B008 - frozen
    """Represents an automatic speech recognition model constant in the workflow."""
    return value


@node("nodetool.constant.EmbeddingModelConstant", title="Embedding Model Constant", inline=True)
def embedding_model_constant(value: EmbeddingModel = EmbeddingModel()) -> EmbeddingModel:  # noqa: B008 - frozen
    """Represents an embedding model constant in the workflow."""
    return value


NODES = [
    constant_string,
    constant_integer,
    constant_float,
    constant_bool,
    constant_list,
    constant_dict,
    constant_text_list,
    constant_select,
    constant_date,
    constant_datetime,
    constant_image_size,
    constant_dataframe,
    constant_document,
    constant_json,
    language_model_constant,
    image_model_constant,
    video_model_constant,
    tts_model_constant,
    asr_model_constant,
    embedding_model_constant,
]
