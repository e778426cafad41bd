"""The awaiting half of durable reconnect and cancel: the session's actions, carried out.

:class:`~noderun.server.session.Session` decides what a ``reconnect_job`` or
``cancel_job`` of a durable run this process does not hold means; these
coroutines do the store reads it needs and report back to the session, which
words the answer. The connection runs each in its own task.
"""

from __future__ import annotations

import structlog

from noderun.contract import RunRecord, RunStore, store_key
from noderun.server.follow import DurableFollower
from noderun.server.session import CancelDurable, FollowDurable, ResumeFollowed, Session

__all__ = ["cancel", "follow", "resume_followed"]

log = structlog.get_logger(__name__)


async def follow(store: RunStore, session: Session, action: FollowDurable) -> None:
    """Replay then follow a stored run for ``session``."""
    frame = action.frame
    follower = DurableFollower(store, frame.job_id, frame.after_seq, session, session.user_id)
    if not session.follower_started(follower):
        return
    # Forgotten when done, which for a finished run is within start(), so asking
    # again replays the terminal message again.
    follower.on_done(lambda: session.follower_done(follower))
    try:
        found = await follower.start(frame.workflow_id)
    except Exception as exc:
        log.warning("connection.durable_reconnect_failed", job_id=frame.job_id, error=str(exc))
        session.follow_failed(frame, follower, f"store unavailable: {exc}")
        return
    if not found:
        session.follow_failed(frame, follower, "job not found")


async def resume_followed(store: RunStore, session: Session, action: ResumeFollowed) -> None:
    """Answer a repeated ``reconnect_job`` of a run ``session`` already follows."""
    try:
        record = await store.get_run(store_key(session.user_id, action.frame.job_id))
    except Exception as exc:
        log.warning("connection.durable_resume_failed", job_id=action.frame.job_id, error=str(exc))
        record = None
    session.resume_answered(action.frame, record)


async def cancel(store: RunStore, session: Session, action: CancelDurable) -> None:
    """Request the cancel of a stored run of ``session``'s user."""
    frame = action.frame
    requested: RunRecord | None = None
    key = store_key(session.user_id, frame.job_id)
    try:
        record = await store.get_run(key)
        if (
            record is not None
            and record.user_id == session.user_id
            and await store.request_cancel(key)
        ):
            requested = record
    except Exception as exc:
        log.warning("connection.durable_cancel_failed", job_id=frame.job_id, error=str(exc))
    session.cancel_answered(frame, requested)
