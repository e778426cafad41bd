"""Validate frames against the published protocol schema (``noderun.protocol.schema``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jsonschema

from noderun.protocol.schema import json_schema

__all__ = ["check_client_frame", "check_server_frame"]


@functools.cache
def _validator(entry: str) -> jsonschema.Draft202012Validator:
    schema = json_schema()
    root = {**schema, "oneOf": None, "$ref": f"#/$defs/{entry}"}
    del root["oneOf"]
    return jsonschema.Draft202012Validator(root)


def check_server_frame(frame: Mapping[str, object]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``frame`` is a ServerFrame of the schema."""
    _validator("ServerFrame").validate(dict(frame))


def check_client_frame(frame: Mapping[str, object]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``frame`` is a ClientFrame of the schema."""
    _validator("ClientFrame").validate(dict(frame))
