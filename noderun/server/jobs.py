"""Jobs as the SDK reads them over HTTP (``GET /api/jobs/{id}``, ``POST …/cancel``).

A run this process holds (ephemeral or durable) is answered from memory, fresher than
the store; any other durable run from the store, so a job is readable from every server
sharing it. A user sees only their own runs: another user's is "not found".
Media values in the result have their bytes as ``data:`` URIs (JSON), as on ``/ws`` in
text mode.
"""

from __future__ import annotations

import datetime

import msgspec

from noderun.contract import RunRecord, RunStatus, store_key, wire_job_id
from noderun.protocol.media import with_data_uris
from noderun.runtime.hub import Hub
from noderun.runtime.run import Run
from noderun.server.answers import CancelAnswer, JobAnswer
from noderun.server.errors import ApiError

__all__ = ["cancel_job", "job_snapshot"]


async def job_snapshot(hub: Hub, job_id: str, user_id: str) -> JobAnswer:
    """The job as NodeTool's ``JobResponse``; :class:`ApiError` 404 when not the user's."""
    run = hub.get(job_id, user_id)
    if run is not None:
        return _run_snapshot(run)
    record = await _record(hub, job_id, user_id)
    if record is None:
        raise ApiError(404, "NOT_FOUND", f"job {job_id!r} not found")
    return _record_snapshot(record)


async def cancel_job(hub: Hub, job_id: str, user_id: str) -> CancelAnswer:
    """Ask for the run's cancellation; a finished run answers ``cancel_requested: false``."""
    run = hub.get(job_id, user_id)
    if run is not None:
        requested = not run.finished and run.cancel()
        status: RunStatus = run.status
    else:
        record = await _record(hub, job_id, user_id)
        if record is None:
            raise ApiError(404, "NOT_FOUND", f"job {job_id!r} not found")
        assert hub.store is not None
        requested = not record.finished and await hub.store.request_cancel(
            store_key(user_id, job_id)
        )
        status = RunStatus(record.status)
    return CancelAnswer(
        job_id=job_id,
        status=status,
        cancel_requested=requested,
        message="Job cancellation requested" if requested else "Job already finished",
    )


async def _record(hub: Hub, job_id: str, user_id: str) -> RunRecord | None:
    """The durable run ``job_id`` of ``user_id``, if the store has it."""
    if hub.store is None:
        return None
    try:
        record = await hub.store.get_run(store_key(user_id, job_id))
    except Exception as exc:  # the store is down: say so, the client may retry
        raise ApiError(
            503, "SERVICE_UNAVAILABLE", f"store unavailable: {exc}", retryable=True
        ) from None
    return record if record is not None and record.user_id == user_id else None


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def _snapshot(
    *,
    job_id: str,
    user_id: str,
    workflow_id: str,
    status: RunStatus,
    created_at: float,
    finished_at: float | None,
    terminal: object,
    durable: bool,
) -> JobAnswer:
    """A job as NodeTool's ``JobResponse`` (the C# SDK's ``GetJobAsync``)."""
    # JSON: media values as a text client gets them on /ws, their bytes as data: URIs.
    result = with_data_uris(terminal.get("result")) if isinstance(terminal, dict) else None
    error = terminal.get("error") if isinstance(terminal, dict) else None
    outputs = result.get("outputs", result) if isinstance(result, dict) else None
    finished = finished_at is not None
    return JobAnswer(
        id=job_id,
        job_id=job_id,
        user_id=user_id,
        status=status,
        workflow_id=workflow_id,
        progress=1.0 if finished else 0.0,
        result=result if isinstance(result, dict) else None,
        outputs=outputs,
        error=error if isinstance(error, str) else None,
        created_at=_iso(created_at),
        started_at=_iso(created_at),
        completed_at=_iso(finished_at),
        finished_at=_iso(finished_at),
        durable=durable,
    )


def _run_snapshot(run: Run) -> JobAnswer:
    terminal: object = None
    finished_at: float | None = None
    if run.terminal is not None:
        terminal = msgspec.msgpack.decode(run.terminal.msgpack())
        duration = terminal.get("duration") if isinstance(terminal, dict) else None
        finished_at = run.created_at + (duration if isinstance(duration, float) else 0.0)
    return _snapshot(
        job_id=run.job_id,
        user_id=run.user_id,
        workflow_id=run.workflow_id,
        status=run.status,
        created_at=run.created_at,
        finished_at=finished_at,
        terminal=terminal,
        durable=run.durable,
    )


def _record_snapshot(record: RunRecord) -> JobAnswer:
    terminal = msgspec.msgpack.decode(record.terminal_frame) if record.terminal_frame else None
    return _snapshot(
        job_id=wire_job_id(record.job_id, record.user_id),
        user_id=record.user_id,
        workflow_id=record.workflow_id,
        status=RunStatus(record.status),
        created_at=record.created_at,
        finished_at=(record.finished_at or record.created_at) if record.finished else None,
        terminal=terminal,
        durable=True,
    )
