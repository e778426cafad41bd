"""The JSON documents of one PostgreSQL group commit (``noderun_commit``'s arguments).

A few strings instead of a score of arrays: asyncpg checks and encodes every array
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


class _Run(msgspec.Struct, omit_defaults=True):
    """A run written by the batch that existed before; the terminal fields only if it
    ended in it."""

    j: str
    a: int = 0  # highest append seq in this batch
    s: str | None = None  # terminal status
    e: str | None = None
    x: float | None = None  # finished_at
    f: bytes | None = None  # terminal frame (base64 in JSON)
    q: int | None = None  # terminal seq


class _NewRun(msgspec.Struct, omit_defaults=True):
    """A run created by the batch. Fields without a default are always written (an
    empty workflow id is a value, not an absent one)."""

    j: str
    w: str
    u: str
    t: float  # created_at
    a: int = 0  # its last_seq: the terminal's seq, or the highest append seq
    s: str | None = None
    e: str | None = None
    x: float | None = None
    f: bytes | None = None


class _Frame(msgspec.Struct):
    j: str
    s: int
    f: bytes  # base64 in JSON; decoded by the function


_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class EncodedBatch:
    #: ``noderun_commit``'s JSON arguments after the server id; None for an empty list.
    arguments: tuple[str | None, str | None, str | None, str | None]
    #: The create kept for each job id (the first one queued).
    creates: dict[str, Create] = field(default_factory=dict)
    #: Later creates of a job id already created in this batch: refused.
    duplicates: list[Create] = field(default_factory=list)
    finishes: dict[str, Finish] = field(default_factory=dict)


def encode_batch(batch: Sequence[Item]) -> EncodedBatch:
    """The document for ``batch``; runs in job_id order, the order in which every
    writer locks rows (no deadlock between servers).

    A create comes before its run's other items in a batch (the group committer
    sees to it), so the appends and finish of a run created here describe its
    final row in this batch.
    """
    creates: dict[str, Create] = {}
    duplicates: list[Create] = []
    created: dict[str, _NewRun] = {}
    existing: dict[str, _Run] = {}
    new_frames: list[_Frame] = []
    frames: list[_Frame] = []
    finishes: dict[str, Finish] = {}
    for item in batch:
        job_id = item.job_id
        if isinstance(item, Create):
            if job_id in creates:
                duplicates.append(item)
                continue
            creates[job_id] = item
            record = item.record
            created[job_id] = _NewRun(job_id, record.workflow_id, record.user_id, record.created_at)
            continue
        run: _Run | _NewRun | None = created.get(job_id)
        if run is None:
            run = existing.get(job_id)
            if run is None:
                run = existing[job_id] = _Run(job_id)
            _add(run, item, frames)
        else:
            _add(run, item, new_frames)
        if isinstance(item, Finish):
            finishes[job_id] = item
    arguments = (
        _json([created[j] for j in sorted(created)]),
        _json(new_frames),
        _json([existing[j] for j in sorted(existing)]),
        _json(frames),
    )
    return EncodedBatch(arguments, creates, duplicates, finishes)


def _add(run: _Run | _NewRun, item: Append | Finish, frames: list[_Frame]) -> None:
    if isinstance(item, Append):
        run.a = max(run.a, item.seq)
        frames.append(_Frame(item.job_id, item.seq, item.frame))
        return
    run.s, run.e, run.x, run.f = item.status, item.error, item.finished_at, item.frame
    if isinstance(run, _NewRun):
        run.a = item.seq  # the new row's last_seq
    else:
        run.q = item.seq


def _json(values: Sequence[msgspec.Struct]) -> str | None:
    return _encoder.encode(values).decode() if values else None
