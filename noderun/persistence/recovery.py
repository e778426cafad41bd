"""What a store writes for a run whose server died: the ``interrupted`` terminal frame."""

from __future__ import annotations

import msgspec

__all__ = ["INTERRUPTED_ERROR", "interrupted_frame"]

#: The error of runs failed by crash recovery (PROTOCOL.md §5).
INTERRUPTED_ERROR = "interrupted: server stopped"

_encoder = msgspec.msgpack.Encoder()


def interrupted_frame(job_id: str, workflow_id: str, seq: int) -> bytes:
    """MessagePack bytes of the terminal ``job_update`` of an interrupted run.

    ``seq`` is the run's last committed ``job_seq`` plus one, so the frame sorts after
    every message the client may already have seen.
    """
    return _encoder.encode(
        {
            "type": "job_update",
            "status": "failed",
            "job_id": job_id,
            "workflow_id": workflow_id,
            "error": INTERRUPTED_ERROR,
            "job_seq": seq,
            "message": None,
            "result": None,
            "duration": None,
            "run_state": None,
        }
    )
