"""Records that durable stores keep: plain data shared by runtime and persistence."""

from __future__ import annotations

import msgspec

__all__ = ["TERMINAL_STATUSES", "RunRecord", "StoredFrame"]

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


class RunRecord(msgspec.Struct, kw_only=True):
    """One durable run, as a store keeps it."""

    job_id: str
    workflow_id: str
    user_id: str
    status: str
    server_id: str = ""
    created_at: float = 0.0
    finished_at: float | None = None
    last_seq: int = 0
    error: str | None = None
    #: MessagePack bytes of the terminal frame once the run is finished.
    terminal_frame: bytes | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class StoredFrame(msgspec.Struct, array_like=True):
    """One committed message of a run: its ``job_seq`` and exact MessagePack bytes."""

    seq: int
    frame: bytes
