"""NodeTool's golden SDK v1 frames (``../shared/fixtures/nodetool-sdk-v1``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURE = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "fixtures"
    / "nodetool-sdk-v1"
    / "execution-wire.json"
)


@dataclass(frozen=True)
class GoldenFrame:
    name: str
    direction: str
    message: dict[str, object]
    payload: bytes


def golden_frames() -> list[GoldenFrame]:
    """Every golden frame; skips (or fails in CI) when ``../shared`` is not beside the repo."""
    if not FIXTURE.exists():
        message = f"golden SDK fixture not found at {FIXTURE} (clone with ../shared beside it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return available_golden_frames()


def available_golden_frames() -> list[GoldenFrame]:
    """Every golden frame, or none when ``../shared`` is not beside the repository (for
    what is built at import time; the tests that need the frames use :func:`golden_frames`)."""
    if not FIXTURE.exists():
        return []
    data = json.loads(FIXTURE.read_text())
    return [
        GoldenFrame(f["name"], f["direction"], f["message"], bytes.fromhex(f["messagepack_hex"]))
        for f in data["frames"]
    ]
