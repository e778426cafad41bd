"""NodeTool's structured values as they travel on the wire.

NodeTool sends a structured value as a map whose ``type`` key names its type
(``{"type": "datetime", "year": 2024, …}``); the field names and defaults here
are NodeTool's (``nodetool.metadata.types``). Each is a frozen, tagged
``msgspec.Struct``: a property of that type accepts the map (unknown keys
ignored, the ``type`` tag optional), a node returns the struct, and the codec
encodes it back to the same map. Node metadata names the type by its tag.

A ``Datetime`` with ``utc_offset`` 0 is UTC whatever its ``tzinfo`` name says,
as in NodeTool; a non-zero ``utc_offset`` is in seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec

__all__ = [
    "ASRModel",
    "ColumnDef",
    "DataframeRef",
    "Date",
    "Datetime",
    "DocumentRef",
    "EmbeddingModel",
    "ImageModel",
    "ImageSize",
    "JSONRef",
    "LanguageModel",
    "TTSModel",
    "VideoModel",
]


class Date(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="date"):
    """A calendar date; NodeTool's default is the invalid ``0-0-0``."""

    year: int = 0
    month: int = 0
    day: int = 0

    @classmethod
    def from_date(cls, value: dt.date) -> Date:
        return cls(year=value.year, month=value.month, day=value.day)

    def to_date(self) -> dt.date:
        """The ``datetime.date``; ``ValueError`` naming the fields when it is no date."""
        try:
            return dt.date(self.year, self.month, self.day)
        except ValueError as exc:
            raise ValueError(f"invalid date {self.year}-{self.month}-{self.day}: {exc}") from None


class Datetime(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="datetime"):
    """A point in time; NodeTool's default is the invalid ``0-0-0 00:00:00``."""

    year: int = 0
    month: int = 0
    day: int = 0
    hour: int = 0
    minute: int = 0
    second: int = 0
    microsecond: int = 0
    tzinfo: str = "UTC"
    utc_offset: float = 0

    @classmethod
    def from_datetime(cls, value: dt.datetime) -> Datetime:
        offset = value.utcoffset()
        name = (value.tzinfo.tzname(value) if value.tzinfo else None) or "UTC"
        return cls(
            year=value.year,
            month=value.month,
            day=value.day,
            hour=value.hour,
            minute=value.minute,
            second=value.second,
            microsecond=value.microsecond,
            tzinfo=name,
            utc_offset=offset.total_seconds() if offset else 0,
        )

    def to_datetime(self) -> dt.datetime:
        """An aware ``datetime.datetime``; ``ValueError`` naming the fields when it is none."""
        try:
            zone = (
                dt.timezone(dt.timedelta(seconds=self.utc_offset), self.tzinfo)
                if self.utc_offset
                else dt.UTC
            )
            return dt.datetime(
                self.year,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second,
                self.microsecond,
                tzinfo=zone,
            )
        except ValueError as exc:
            raise ValueError(
                f"invalid datetime {self.year}-{self.month}-{self.day} "
                f"{self.hour}:{self.minute}:{self.second}.{self.microsecond} "
                f"(utc_offset {self.utc_offset}s): {exc}"
            ) from None


class ImageSize(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="image_size"):
    width: int = 1024
    height: int = 1024
    preset: str | None = None


ColumnType = Literal["int", "float", "datetime", "string", "object"]


class ColumnDef(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    data_type: ColumnType
    description: str = ""


class DataframeRef(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="dataframe"):
    """A table held inline (``columns`` and row-major ``data``), or an asset reference."""

    uri: str = ""
    asset_id: str | None = None
    data: list[list[Any]] | None = None
    metadata: dict[str, Any] | None = None
    columns: list[ColumnDef] | None = None


class DocumentRef(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="document"):
    uri: str = ""
    asset_id: str | None = None
    data: Any = None
    metadata: dict[str, Any] | None = None


class JSONRef(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="json"):
    uri: str = ""
    asset_id: str | None = None
    data: str | None = None
    metadata: dict[str, Any] | None = None


class LanguageModel(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="language_model"
):
    provider: str = "empty"
    id: str = ""
    name: str = ""
    path: str | None = None
    supported_tasks: list[str] = []


class ImageModel(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="image_model"):
    provider: str = "empty"
    id: str = ""
    name: str = ""
    path: str | None = None
    supported_tasks: list[str] = []
    capabilities: list[str] = []


class VideoModel(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="video_model"):
    """A video model; its capability ``video`` envelope is carried as an opaque map."""

    provider: str = "empty"
    id: str = ""
    name: str = ""
    path: str | None = None
    supported_tasks: list[str] = []
    capabilities: list[str] = []
    video: dict[str, Any] | None = None


class TTSModel(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="tts_model"):
    provider: str = "empty"
    id: str = ""
    name: str = ""
    path: str | None = None
    voices: list[str] = []
    selected_voice: str = ""


class ASRModel(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="asr_model"):
    provider: str = "empty"
    id: str = ""
    name: str = ""
    path: str | None = None


class EmbeddingModel(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="embedding_model"
):
    provider: str = "empty"
    id: str = ""
    name: str = ""
    dimensions: int = 0
