"""The JSON document of one PostgreSQL group commit (``noderun_commit``'s ``p_batch``).

One string instead of a score of arrays: asyncpg checks and encodes every array
element in Python, about a microsecond each on our machine, which made the commit
call the largest single cost of a durable run; msgspec writes the whole batch in
a few microseconds. Keys are one letter; ``postgres_schema`` documents them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from noderun.persistence.groupcommit import Append, Create, Finish, Item

__all__ = ["EncodedBatch", "encode_batch"]


class _NewRun(msgspec.Struct):
    j: str
    w: str
    u: str
    t: float


class _Frame(msgspec.Struct):
    j: str
    s: int
    f: bytes  # base64 in JSON; decoded by the function


class _Written(msgspec.Struct):
    j: str
    a: int  # last append seq, 0 if none
    q: int | None = None  # terminal seq
    s: str | None = None  # terminal status
    e: str | None = None
    t: float | None = None  # finished_at


class _Batch(msgspec.Struct):
    c: list[_NewRun]
    f: list[_Frame]
    r: list[_Written]


_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class EncodedBatch:
    document: str
    #: The create kept for each job id (the first one queued).
    creates: dict[str, Create] = field(default_factory=dict)
    #: Later creates of a job id already created in this batch: refused.
    duplicates: list[Create] = field(default_factory=list)
    finishes: dict[str, Finish] = field(default_factory=dict)


def encode_batch(batch: Sequence[Item]) -> EncodedBatch:
    """The document for ``batch``; creates and written runs in job_id order, the order
    in which every writer locks rows (no deadlock between servers)."""
    creates: dict[str, Create] = {}
    duplicates: list[Create] = []
    frames: list[_Frame] = []
    written: dict[str, _Written] = {}
    finishes: dict[str, Finish] = {}
    for item in batch:
        job_id = item.job_id
        if isinstance(item, Create):
            if job_id in creates:
                duplicates.append(item)
            else:
                creates[job_id] = item
            continue
        frames.append(_Frame(job_id, item.seq, item.frame))
        run = written.get(job_id)
        if run is None:
            run = written[job_id] = _Written(job_id, 0)
        if isinstance(item, Append):
            run.a = max(run.a, item.seq)
        else:
            finishes[job_id] = item
            run.q, run.s, run.e, run.t = item.seq, item.status, item.error, item.finished_at
    new_runs = [
        _NewRun(job_id, c.record.workflow_id, c.record.user_id, c.record.created_at)
        for job_id, c in sorted(creates.items())
    ]
    document = _encoder.encode(_Batch(new_runs, frames, [written[j] for j in sorted(written)]))
    return EncodedBatch(document.decode(), creates, duplicates, finishes)
