"""Validate real HTTP answers against the published OpenAPI document
(``noderun.server.openapi``) and record which route and status each one was."""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema
import msgspec

from noderun.server.openapi import openapi
from noderun.server.version import VERSION

__all__ = ["check_answer", "document", "operation_of"]


@functools.cache
def document() -> dict[str, Any]:
    return openapi(VERSION)


@functools.cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    """Path templates, literal ones first (as Starlette matches concrete routes first)."""
    found = []
    for path in document()["paths"]:
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"[^/]+", re.escape(path)) + "$"
        if path == "/api/{rest}":
            pattern = "^/api/.+$"
        found.append((re.compile(pattern), path))
    found.sort(key=lambda item: ("{" in item[1], item[1] == "/api/{rest}"))
    return found


def operation_of(method: str, path: str) -> tuple[str, str]:
    """``(template, method)`` of the documented operation a request went to."""
    for pattern, template in _templates():
        if pattern.match(path) and method.lower() in document()["paths"][template]:
            return template, method.lower()
    raise AssertionError(f"{method} {path} is in no documented route")


def check_answer(
    method: str, path: str, status: int, content_type: str, body: bytes
) -> tuple[str, str, int]:
    """Raise unless the answer is documented and its body fits its schema; return
    ``(template, method, status)``."""
    template, verb = operation_of(method, path)
    responses = document()["paths"][template][verb]["responses"]
    assert str(status) in responses, f"{method} {path}: status {status} is not documented"
    content = responses[str(status)]["content"]
    media = content_type.split(";")[0].strip()
    if "application/json" in content:
        assert media == "application/json", f"{method} {path}: {content_type}, not JSON"
        schema = {**content["application/json"]["schema"], "components": document()["components"]}
        jsonschema.Draft202012Validator(schema).validate(msgspec.json.decode(body))
    else:
        (documented,) = content
        if documented != "*/*":
            assert media == documented.split(";")[0], f"{method} {path}: {content_type}"
    return template, verb, status
