"""Server frames as a test client receives them, and the predicates tests select them by."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = [
    "TERMINAL",
    "Frame",
    "Received",
    "as_stored",
    "is_ack",
    "is_terminal",
    "run_messages",
    "seqs",
]

#: A decoded frame (a MessagePack or JSON map).
Frame = dict[str, Any]

#: The statuses that end a run.
TERMINAL = frozenset({"completed", "failed", "cancelled"})


class Received(NamedTuple):
    """One frame as the client got it: its exact bytes, its decoded map, and whether it came
    as a text (JSON) frame."""

    raw: bytes
    frame: Frame
    text: bool = False


def is_terminal(frame: Mapping[str, object], job_id: str) -> bool:
    """Whether ``frame`` is the ``job_update`` that ends run ``job_id``."""
    return (
        frame.get("type") == "job_update"
        and frame.get("job_id") == job_id
        and frame.get("status") in TERMINAL
    )


def is_ack(frame: Mapping[str, object]) -> bool:
    """Whether ``frame`` is the acknowledgement of a ``run_job``."""
    return frame.get("message") == "Job started"


def run_messages(received: Sequence[Received], job_id: str) -> list[Received]:
    """The messages of run ``job_id`` (they carry ``job_seq``), in arrival order."""
    return [
        item
        for item in received
        if item.frame.get("job_id") == job_id and item.frame.get("job_seq") is not None
    ]


def seqs(received: Sequence[Received]) -> list[int]:
    return [item.frame["job_seq"] for item in received]


def as_stored(received: Sequence[Received]) -> list[tuple[int, bytes]]:
    """Run messages as the store keeps them: ``(job_seq, exact MessagePack bytes)``."""
    assert not any(item.text for item in received), "the store keeps MessagePack frames"
    return [(item.frame["job_seq"], item.raw) for item in received]
