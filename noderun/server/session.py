"""One client's protocol session, without a socket: frames in, frames and actions out.

In the spirit of websockets' ``protocol.py``: the transport
(:mod:`noderun.server.connection`) feeds each WebSocket message to
:meth:`Session.receive` and moves what comes out to the socket; the session
decodes, applies PROTOCOL.md §1-4 and drives the runtime's :class:`Hub`. It
never awaits, so a test drives it synchronously, bytes in and frames out.

What comes out:

- Frames, put on an :class:`Outlet` (the connection's outbox), in the order
  they are produced: answers to the client's frames, and every message of the
  runs this session is attached to (it is their ``Subscriber``). Encoding
  follows the mode (§1): the kind of the last frame received, or ``set_mode``.
- Actions, handed to ``on_action``: things that must await, which the
  transport carries out and reports back through the session's ``*_answered``
  and ``follower_*`` methods — a durable run's reconnect or cancel through the
  store (:mod:`noderun.server.durable`), and closing the socket when the
  client reads nothing for the slow-client timeout (1013).

Backpressure (PROTOCOL.md §1): the runs this session follows wait while its outlet
is congested (:meth:`Session.congestion`). A frame the outlet refuses (past its hard
bound: a burst no one could pause) puts the run *behind*: the session detaches from
it and, once the client has read its queue down, catches it up from the run's
replay buffer — or, for a durable run whose buffer lost frames, from the store; an
ephemeral run that lost frames is announced with ``job_resumed`` and
``replay_incomplete`` (§4). A reading client is never dropped.

Lifecycle: ``OPEN`` → ``CLOSING`` (told the transport to close: the client read
nothing for the slow-client timeout) → ``CLOSED`` (the client is gone); :meth:`_become` is the one
place it changes and refuses any other move. Outside ``OPEN`` nothing reaches
the client any more, so frames and run messages are dropped and no run starts.

The hot path (a binary ``run_job`` of an inline node) is ``receive`` →
``Hub.create`` → ack → ``Run.start``, all synchronous: the run's messages are on
the outlet before ``receive`` returns, and the reader sends them itself.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, assert_never

from noderun.contract import RunRecord
from noderun.protocol.client import (
    CancelJob,
    ClearModels,
    EndInputStream,
    GetStatus,
    Ping,
    Pong,
    ReconnectJob,
    RunJob,
    SdkRequest,
    SetMode,
    Stop,
    StreamInput,
    UpdateNodeProperties,
)
from noderun.protocol.codec import Outbound, decode_frame
from noderun.protocol.errors import ProtocolError
from noderun.protocol.server import (
    Ack,
    ActiveJobs,
    ErrorAnswer,
    GenerationStopped,
    JobNotice,
    JobResumed,
    JobStarted,
    JobState,
    ServerPing,
    ServerPong,
    StatusAnswer,
    job_not_found,
    rejection,
)
from noderun.runtime.hub import Hub, StartRefused
from noderun.runtime.run import Run
from noderun.server.sdk import SdkService

__all__ = [
    "Action",
    "CancelDurable",
    "Close",
    "FollowDurable",
    "Follower",
    "Outlet",
    "ResumeFollowed",
    "Session",
    "State",
]


class State(enum.Enum):
    OPEN = "open"
    #: The transport was told to close the socket; the client will see nothing more.
    CLOSING = "closing"
    #: The client is gone.
    CLOSED = "closed"


_OPEN = State.OPEN

_MOVES: dict[State, frozenset[State]] = {
    State.OPEN: frozenset({State.CLOSING, State.CLOSED}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


class Outlet(Protocol):
    """Where frames go: the connection's :class:`~noderun.server.outbox.Outbox`."""

    def put(self, item: Outbound, text: bool, *, replay: bool = False) -> bool:
        """Queue ``item`` (as JSON when ``text``); ``False`` past the hard bound (never for
        ``replay``)."""
        ...

    def congestion(self) -> asyncio.Future[None] | None:
        """``None`` below the high-water mark, else a future resolved below the low one."""
        ...

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` once, when the queue is read down to the low-water mark."""
        ...

    def clear(self) -> None: ...


class Follower(Protocol):
    """A durable run followed through the store (:class:`~.follow.DurableFollower`)."""

    @property
    def job_id(self) -> str: ...

    def stop(self) -> None: ...


# -- actions: what the transport must await for the session -----------------------------


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with ``code``."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class FollowDurable:
    """Replay then follow a durable run this process does not hold; report back with
    :meth:`Session.follower_started` (before the first await) and :meth:`Session.follower_done`
    or :meth:`Session.follow_failed`."""

    frame: ReconnectJob


@dataclass(frozen=True, slots=True)
class ResumeFollowed:
    """``reconnect_job`` repeated for a run already followed: read its record, answer with
    :meth:`Session.resume_answered` (no second stream)."""

    frame: ReconnectJob


@dataclass(frozen=True, slots=True)
class CancelDurable:
    """Request the cancel of a durable run through the store; answer with
    :meth:`Session.cancel_answered`."""

    frame: CancelJob


Action = Close | FollowDurable | ResumeFollowed | CancelDurable


def _ignore(action: Action) -> None:
    """A closed session's actions: it asks for none (nothing runs outside ``OPEN``)."""


class Session:
    """The protocol state of one client connection. Implements the runtime's ``Subscriber``."""

    def __init__(
        self,
        hub: Hub,
        outlet: Outlet,
        on_action: Callable[[Action], None],
        *,
        user_id: str,
        sdk: SdkService,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._hub = hub
        self._outlet = outlet
        self._on_action = on_action
        self.user_id = user_id
        self._clock = clock
        self._sdk = sdk
        self.state = State.OPEN
        #: Encode as JSON (text frames): the kind of the last frame, or ``set_mode``.
        self.text = False
        self._runs: dict[str, Run] = {}
        #: Durable runs followed through the store; ``None`` while the transport starts one.
        self._followers: dict[str, Follower | None] = {}
        #: Runs whose frames the outlet refused: the run (``None``: followed through the
        #: store) and the last ``job_seq`` the client was given, until caught up.
        self._behind: dict[str, tuple[Run | None, int]] = {}

    def _become(self, state: State) -> None:
        if state not in _MOVES[self.state]:
            raise RuntimeError(f"session cannot go from {self.state.name} to {state.name}")
        self.state = state

    # -- input ----------------------------------------------------------------------

    def receive(self, payload: bytes, text: bool) -> None:
        """Handle one WebSocket message (``text``: it was a text frame, UTF-8 JSON)."""
        if self.state is not _OPEN:
            return
        self.text = text
        try:
            frame = decode_frame(payload, text=text)
            match frame:
                case RunJob():
                    self._run_job(frame)
                case ReconnectJob():
                    self._reconnect(frame)
                case CancelJob():
                    self._cancel(frame)
                case GetStatus():
                    self._status(frame)
                case SetMode():
                    self.text = frame.mode == "text"
                    self.reply(Ack(message=f"Mode set to {frame.mode}"))
                case StreamInput():
                    self._stream_input(frame)
                case EndInputStream():
                    self._end_input(frame)
                case UpdateNodeProperties():
                    self._update_properties(frame)
                case ClearModels():
                    self.reply(Ack(message="Unused models cleared"))
                case Stop():
                    self._stop(frame)
                case SdkRequest():
                    # Read-only RPCs, answered as over HTTP (one service for both).
                    self.reply(self._sdk.answer(frame))
                case Ping():
                    self.reply(ServerPong(ts=self._clock()))
                case Pong():
                    pass
                case _:
                    assert_never(frame)
        except ProtocolError as exc:
            self.reply(rejection(exc))

    def ping(self) -> None:
        """The server's periodic ping (§1)."""
        self.reply(ServerPing(ts=self._clock()))

    def closed(self) -> None:
        """The client is gone: detach from every run (they go on) and stop following."""
        if self.state is not State.CLOSED:
            self._become(State.CLOSED)
        self._detach_all()
        # The transport's callback refers back to it: without this, every closed
        # connection would be cyclic garbage, freed by the collector, not refcounting.
        self._on_action = _ignore

    # -- output ---------------------------------------------------------------------

    def reply(self, message: object) -> None:
        """Queue an answer frame (not a message of any run): never refused, the reader
        sends it before it reads the client's next frame."""
        if self.state is _OPEN:
            self._outlet.put(Outbound(message), self.text, replay=True)

    def deliver(self, item: Outbound) -> None:
        if self.state is not _OPEN:
            return
        if not self._outlet.put(item, self.text):
            self._fell_behind(item)

    def congestion(self) -> asyncio.Future[None] | None:
        """What the runs this session follows must await before producing more."""
        return self._outlet.congestion() if self.state is _OPEN else None

    def replay(self, item: Outbound) -> None:
        """Queue a replayed message: never refused for the outlet's limit."""
        if self.state is _OPEN:
            self._outlet.put(item, self.text, replay=True)

    def run_finished(self, job_id: str) -> None:
        self._runs.pop(job_id, None)

    def stalled(self) -> None:
        """The client read nothing for the slow-client timeout while frames waited for
        it: detach it from its runs (they go on) and have the transport close it."""
        if self.state is not _OPEN:
            return
        self._become(State.CLOSING)
        self._outlet.clear()
        self._detach_all()
        self._on_action(Close(1013, "client reads nothing: too slow"))

    def _fell_behind(self, item: Outbound) -> None:
        """The outlet refused a run's message: stop the live stream of that run until the
        client has read its queue down, then catch it up (:meth:`_catch_up`)."""
        message = item.ensure_message()
        # A stored frame (a followed durable run) decodes to a map, not a struct.
        job_id = (
            message.get("job_id") if isinstance(message, dict) else getattr(message, "job_id", None)
        )
        if not isinstance(job_id, str) or job_id in self._behind:
            return
        run = self._runs.pop(job_id, None)
        if run is not None:
            run.detach(self)
        else:
            follower = self._followers.pop(job_id, None)
            if follower is None:
                return
            follower.stop()
        self._behind[job_id] = (run, item.seq - 1)
        self._outlet.on_writable(self._catch_up)

    def _catch_up(self) -> None:
        behind, self._behind = self._behind, {}
        for job_id, (run, after) in behind.items():
            if self.state is not _OPEN:
                return
            if run is None:
                self._follow_stored(job_id, None, after)
                continue
            items, incomplete = run.replay(after)
            if incomplete and run.durable and self._hub.store is not None:
                self._follow_stored(job_id, run.workflow_id, after)
                continue
            if incomplete:
                self._resumed(run, items, incomplete)
            else:
                for item in items:
                    self.replay(item)
            if not run.finished:
                run.attach(self)
                self._runs[job_id] = run

    def _follow_stored(self, job_id: str, workflow_id: str | None, after: int) -> None:
        """Catch a durable run up from the store (``job_resumed`` and the frames after
        ``after``), then follow it there."""
        self._followers[job_id] = None
        self._on_action(
            FollowDurable(ReconnectJob(job_id=job_id, workflow_id=workflow_id, after_seq=after))
        )

    def _detach_all(self) -> None:
        self._behind.clear()
        for run in self._runs.values():
            run.detach(self)
        self._runs.clear()
        followers = [follower for follower in self._followers.values() if follower is not None]
        self._followers.clear()
        for follower in followers:
            follower.stop()

    @property
    def runs(self) -> int:
        """How many runs this session is attached to."""
        return len(self._runs)

    # -- commands ---------------------------------------------------------------------

    def _find(self, job_id: str) -> Run | None:
        """This user's run with ``job_id`` held by this process, if any.

        Runs belong to the user who started them: another user's run is "not
        found" to this connection (with auth off everyone is the same user).
        """
        return self._hub.get(job_id, self.user_id)

    def _run_job(self, frame: RunJob) -> None:
        options = frame.execution_options
        try:
            if options is not None and options.persistence == "job":
                # The run goes on without its client (PROTOCOL.md §4): nothing of it
                # belongs to this session until the row is committed.
                self._hub.create_durable(
                    frame, self.user_id, functools.partial(self._durable_created, frame), self
                )
                return
            run = self._hub.create(frame, self.user_id, self, self)
        except StartRefused as exc:
            self._refused(exc, frame.workflow_id, frame.request_id)
            return
        self._started(run, frame.request_id)
        if run.admitted:
            run.start()
        else:
            self._hub.enqueue(run)

    def _durable_created(self, frame: RunJob, run: Run, refusal: StartRefused | None) -> None:
        if refusal is not None:
            self._refused(refusal, frame.workflow_id, frame.request_id)
            return
        self._started(run, frame.request_id)
        # The run has been executing while its row committed: catch up on what it
        # emitted, then follow it live (no await in between, so nothing is missed).
        items, incomplete = run.replay(0)
        if incomplete and self._hub.store is not None:
            # Its buffer dropped frames before the ack: the store has them all.
            self._runs.pop(run.job_id, None)
            self._follow_stored(run.job_id, run.workflow_id, 0)
            return
        for item in items:
            self.replay(item)
        if run.finished:
            self._runs.pop(run.job_id, None)
            return
        run.attach(self)
        if self.state is not _OPEN:
            run.detach(self)  # the client left meanwhile: the grace period starts
            self._runs.pop(run.job_id, None)

    def _started(self, run: Run, request_id: str | None) -> None:
        # Before the run's first message reaches this client: the ack comes first.
        self._runs[run.job_id] = run
        self.reply(
            JobStarted(
                message="Job started",
                job_id=run.job_id,
                workflow_id=run.workflow_id,
                request_id=request_id,
            )
        )

    def _refused(self, exc: StartRefused, workflow_id: str, request_id: str | None) -> None:
        self._hub.stats.refused[exc.code] += 1
        if exc.code == "job_already_running":
            # An error ack: the run with that id goes on, and the SDK keeps following it.
            self.reply(
                ErrorAnswer(
                    error=exc.code, message=exc.message, job_id=exc.job_id, request_id=request_id
                )
            )
            return
        # Busy server or store down: the SDK waits for a terminal job_update of its
        # job_id, so the refusal is one (not a message of any run: no job_seq).
        self.reply(
            JobNotice(
                job_id=exc.job_id, workflow_id=workflow_id, status="failed", error=exc.message
            )
        )

    def _reconnect(self, frame: ReconnectJob) -> None:
        run = self._find(frame.job_id)
        if run is None:
            if self._hub.store is None:
                self._job_not_found(frame.job_id, frame.workflow_id)
            elif frame.job_id in self._followers:
                self._on_action(ResumeFollowed(frame))
            else:
                # Known before the transport's first await, so a reconnect_job repeated
                # meanwhile starts no second stream.
                self._followers[frame.job_id] = None
                self._on_action(FollowDurable(frame))
            return
        if self._runs.get(frame.job_id) is run and self in run.subscribers:
            # The SDK repeats reconnect_job every 2 s: never duplicate the live stream.
            items: list[Outbound] = []
            incomplete = False
        else:
            items, incomplete = run.replay(frame.after_seq)
        self._resumed(run, items, incomplete)
        if not run.finished:
            run.attach(self)
            self._runs[run.job_id] = run

    def _resumed(self, run: Run, items: list[Outbound], incomplete: bool) -> None:
        self.reply(
            JobResumed(
                job_id=run.job_id,
                workflow_id=run.workflow_id,
                status=run.status,
                last_seq=run.seq,
                replay_count=len(items),
                replay_incomplete=incomplete,
            )
        )
        for item in items:
            self.replay(item)

    def _job_not_found(
        self, job_id: str, workflow_id: str | None, error: str = "job not found"
    ) -> None:
        self.reply(
            JobNotice(job_id=job_id, workflow_id=workflow_id or "", status="failed", error=error)
        )

    def _cancel(self, frame: CancelJob) -> None:
        run = self._find(frame.job_id)
        if run is None and self._hub.store is not None:
            self._on_action(CancelDurable(frame))
            return
        if run is None or not (run.waiting or run.cancel()):
            self.reply(job_not_found(frame.job_id, frame.request_id))
            return
        self.reply(
            Ack(
                message="Job cancellation requested", job_id=run.job_id, workflow_id=run.workflow_id
            )
        )
        if run.waiting:
            # A queued run ends within cancel(): its terminal comes after the ack.
            run.cancel()

    def _status(self, frame: GetStatus) -> None:
        if frame.job_id is None:
            self.reply(
                ActiveJobs(
                    active_jobs=[
                        JobState(job_id=run.job_id, workflow_id=run.workflow_id, status=run.status)
                        for run in self._runs.values()
                        if not run.finished
                    ]
                )
            )
            return
        run = self._find(frame.job_id)
        if run is None:
            self.reply(StatusAnswer(status="not_found", job_id=frame.job_id))
        else:
            self.reply(
                StatusAnswer(status=run.status, job_id=run.job_id, workflow_id=run.workflow_id)
            )

    def _live_run(self, job_id: str, request_id: str | None) -> Run | None:
        run = self._find(job_id)
        if run is None or run.finished or run.execution is None:
            self.reply(job_not_found(job_id, request_id))
            return None
        return run

    def _stream_input(self, frame: StreamInput) -> None:
        run = self._live_run(frame.job_id, frame.request_id)
        if run is None:
            return
        assert run.execution is not None
        error = run.execution.push_input(frame.input, frame.value, frame.handle)
        self._input_answer(run, frame.input, error, "Input item streamed", frame.request_id)

    def _end_input(self, frame: EndInputStream) -> None:
        run = self._live_run(frame.job_id, frame.request_id)
        if run is None:
            return
        assert run.execution is not None
        error = run.execution.end_input(frame.input, frame.handle)
        self._input_answer(run, frame.input, error, "Input stream ended", frame.request_id)

    def _input_answer(
        self, run: Run, name: str, error: str | None, ok: str, request_id: str | None
    ) -> None:
        if error is not None:
            # Not an ``invalid_*`` code: the SDK would take that as its run being rejected.
            self.reply(
                ErrorAnswer(
                    error="input_rejected",
                    message=error,
                    job_id=run.job_id,
                    request_id=request_id,
                    input=name,
                )
            )
        else:
            self.reply(Ack(message=ok, job_id=run.job_id, workflow_id=run.workflow_id))

    def _update_properties(self, frame: UpdateNodeProperties) -> None:
        run = self._live_run(frame.job_id, frame.request_id)
        if run is None:
            return
        assert run.execution is not None
        error = run.execution.update_properties(frame.node_id, frame.properties)
        if error is not None:
            self.reply(
                ErrorAnswer(
                    error="properties_rejected",
                    message=error,
                    job_id=run.job_id,
                    request_id=frame.request_id,
                    node_id=frame.node_id,
                )
            )
            return
        self.reply(Ack(message="Node properties updated", job_id=run.job_id, node_id=frame.node_id))

    def _stop(self, frame: Stop) -> None:
        run = self._runs.pop(frame.job_id, None)
        if run is not None:
            run.detach(self)
        follower = self._followers.pop(frame.job_id, None)
        if follower is not None:
            follower.stop()
        self.reply(GenerationStopped(message="Generation stopped", job_id=frame.job_id))
        self.reply(Ack(message="Streaming stopped", job_id=frame.job_id))

    # -- reports from the transport ------------------------------------------------------

    def follower_started(self, follower: Follower) -> bool:
        """A :class:`FollowDurable`'s follower exists; ``False``: it is not wanted any more
        (``stop`` or the client left meanwhile), and has been stopped."""
        job_id = follower.job_id
        if self.state is _OPEN and job_id in self._followers and self._followers[job_id] is None:
            self._followers[job_id] = follower
            return True
        follower.stop()
        return False

    def follower_done(self, follower: Follower) -> None:
        """The follower ended (its run finished, or it was stopped): asking again replays
        the terminal message again."""
        if self._followers.get(follower.job_id) is follower:
            del self._followers[follower.job_id]

    def follow_failed(self, frame: ReconnectJob, follower: Follower, error: str) -> None:
        """The store has no such run (``job not found``) or could not be read."""
        self.follower_done(follower)
        self._job_not_found(frame.job_id, frame.workflow_id, error)

    def resume_answered(self, frame: ReconnectJob, record: RunRecord | None) -> None:
        """The answer to a repeated ``reconnect_job`` of a followed run: no replay."""
        self.reply(
            JobResumed(
                job_id=frame.job_id,
                workflow_id=(record.workflow_id if record is not None else frame.workflow_id) or "",
                status=record.status if record is not None else "running",
                last_seq=record.last_seq if record is not None else 0,
                replay_count=0,
                replay_incomplete=False,
            )
        )

    def cancel_answered(self, frame: CancelJob, record: RunRecord | None) -> None:
        """A durable cancel: ``record`` is the run's, or ``None`` when it was not requested
        (unknown, another user's, finished, or the store failed)."""
        if record is None:
            self.reply(job_not_found(frame.job_id, frame.request_id))
            return
        # The ack names the run's workflow, as for a run of this process.
        self.reply(
            Ack(
                message="Job cancellation requested",
                job_id=frame.job_id,
                workflow_id=frame.workflow_id or record.workflow_id or "",
            )
        )
