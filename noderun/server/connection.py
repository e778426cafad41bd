"""One WebSocket connection: a reader that decodes and dispatches, a writer that sends.

The reader awaits ASGI ``receive`` and handles each frame synchronously where
it can (the hot path has no await between a ``run_job`` frame and its ack).
Everything to send, acks and run messages alike, goes through one bounded
outbound queue that a single writer task awaits, so frames leave in the order
they were produced.

Backpressure: the outbound queue holds ``outbound_limit`` frames. A client
that lets it fill is too slow to follow its runs: it is detached from them
(they go on, buffering for replay) and closed with 1013, free to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, assert_never

import structlog

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
from noderun.protocol.errors import CommandError, FrameError, MessageError
from noderun.protocol.server import (
    GenerationStopped,
    JobNotice,
    JobResumed,
    JobStarted,
    ServerPing,
    ServerPong,
    error_frame,
)
from noderun.runtime.hub import Hub, StartRefused
from noderun.runtime.run import Run
from noderun.server.follow import DurableFollower
from noderun.server.outbox import Outbox
from noderun.server.sdk import SdkService

__all__ = ["Connection"]

log = structlog.get_logger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_NOT_FOUND = "Job not found or already completed"


class Connection:
    """Serves one client until it disconnects. Implements the runtime's ``Subscriber``."""

    def __init__(
        self,
        hub: Hub,
        receive: Receive,
        send: Send,
        *,
        user_id: str,
        outbound_limit: int,
        ping_interval: float,
        sdk: SdkService,
    ) -> None:
        self._hub = hub
        self._receive = receive
        self._send = send
        self.user_id = user_id
        self._outbox = Outbox(outbound_limit, send)
        self._text = False
        self._ping_interval = ping_interval
        self._ping_timer: asyncio.TimerHandle | None = None
        self._sdk = sdk
        self._runs: dict[str, Run] = {}
        self._followers: dict[str, DurableFollower] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- Subscriber ---------------------------------------------------------------

    def deliver(self, item: Outbound) -> None:
        if self._closing:
            return
        if not self._outbox.put(item, self._text):
            self._overflow()

    def replay(self, item: Outbound) -> None:
        """Queue a replayed message: never refused for the outbox limit (see ``Outbox.put``)."""
        if not self._closing:
            self._outbox.put(item, self._text, replay=True)

    def _find(self, job_id: str) -> Run | None:
        """This user's run with ``job_id`` held by this process, if any.

        Runs belong to the user who started them: another user's run is "not
        found" to this connection (with auth off everyone is the same user).
        """
        run = self._hub.get(job_id)
        return run if run is not None and run.user_id == self.user_id else None

    def run_finished(self, job_id: str) -> None:
        self._runs.pop(job_id, None)

    def _reply(self, message: object) -> None:
        self.deliver(Outbound(message))

    # -- lifecycle ----------------------------------------------------------------

    async def serve(self) -> None:
        """Run until the client disconnects; then detach from every run (they go on)."""
        writer = asyncio.get_running_loop().create_task(self._write())
        self._schedule_ping()
        try:
            await self._read()
        finally:
            self._closing = True
            self._detach_all()
            if self._ping_timer is not None:
                self._ping_timer.cancel()
            for task in (writer, *self._tasks):
                task.cancel()

    async def _read(self) -> None:
        receive = self._receive
        handle = self._handle
        outbox = self._outbox
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                # The reader sends what handling the frame queued (ack, a synchronous
                # run's messages) itself: no writer wake-up on the hot path.
                outbox.hold()
                try:
                    if data is not None:
                        self._text = False
                        handle(data, False)
                    else:
                        self._text = True
                        handle(message["text"].encode(), True)
                finally:
                    if outbox.release():
                        await outbox.drain()
            elif kind == "websocket.disconnect":
                return

    async def _write(self) -> None:
        """Send frames queued outside the reader (runs in their tasks, timers)."""
        # OSError: the client is gone (uvicorn's ClientDisconnected); the reader ends too.
        with contextlib.suppress(OSError):
            await self._outbox.run_writer()

    async def flushed(self) -> None:
        """Wait until every frame queued so far has been handed to the socket."""
        await self._outbox.flushed()

    def _overflow(self) -> None:
        self._closing = True
        self._outbox.clear()
        log.warning("connection.outbound_overflow", user_id=self.user_id, runs=len(self._runs))
        self._detach_all()
        self._spawn(self._close(1013, "outbound queue full: client too slow"))

    async def _close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def _detach_all(self) -> None:
        for run in self._runs.values():
            run.detach(self)
        self._runs.clear()
        for follower in self._followers.values():
            follower.stop()
        self._followers.clear()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule_ping(self) -> None:
        if self._ping_interval > 0:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self._ping_interval, self._ping)

    def _ping(self) -> None:
        self._reply(ServerPing(ts=time.time()))
        self._schedule_ping()

    # -- dispatch -----------------------------------------------------------------

    def _handle(self, payload: bytes, text: bool) -> None:
        try:
            frame = decode_frame(payload, text=text)
        except FrameError as exc:
            self._reply(
                error_frame(
                    "invalid_frame", message=exc.detail, typed=True, request_id=exc.request_id
                )
            )
            return
        except MessageError as exc:
            self._reply(
                error_frame("invalid_message", message=exc.detail, request_id=exc.request_id)
            )
            return
        except CommandError as exc:
            self._reply(
                error_frame(
                    "invalid_command",
                    details=exc.detail,
                    request_id=exc.request_id,
                    job_id=exc.job_id,
                )
            )
            return
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
                self._text = frame.mode == "text"
                self._reply({"message": f"Mode set to {frame.mode}"})
            case StreamInput():
                self._stream_input(frame)
            case EndInputStream():
                self._end_input(frame)
            case UpdateNodeProperties():
                self._update_properties(frame)
            case ClearModels():
                self._reply({"message": "Unused models cleared"})
            case Stop():
                self._stop(frame)
            case SdkRequest():
                self._reply(self._sdk.answer(frame))
            case Ping():
                self._reply(ServerPong(ts=time.time()))
            case Pong():
                pass
            case _:
                assert_never(frame)

    # -- commands -----------------------------------------------------------------

    def _run_job(self, frame: RunJob) -> None:
        options = frame.execution_options
        durable = options is not None and options.persistence == "job"
        try:
            if durable:
                # The run goes on without its client (PROTOCOL.md §4): nothing of it
                # belongs to this connection until the row is committed.
                self._hub.create_durable(
                    frame, self.user_id, functools.partial(self._durable_created, frame)
                )
                return
            run = self._hub.create(frame, self.user_id, self)
        except StartRefused as exc:
            self._refused(exc, frame.workflow_id, frame.request_id)
            return
        self._started(run, frame.request_id)
        run.start()

    def _durable_created(self, frame: RunJob, run: Run, refusal: StartRefused | None) -> None:
        if refusal is not None:
            self._refused(refusal, frame.workflow_id, frame.request_id)
            return
        self._started(run, frame.request_id)
        # The run has been executing while its row committed: catch up on what it
        # emitted, then follow it live (no await in between, so nothing is missed).
        items, _incomplete = run.replay(0)
        for item in items:
            self.replay(item)
        if run.finished:
            self._runs.pop(run.job_id, None)
            return
        run.attach(self)
        if self._closing:
            run.detach(self)  # the client left meanwhile: the grace period starts

    def _started(self, run: Run, request_id: str | None) -> None:
        # Before the run's first message reaches this client: the ack comes first.
        self._runs[run.job_id] = run
        self._reply(
            JobStarted(
                message="Job started",
                job_id=run.job_id,
                workflow_id=run.workflow_id,
                request_id=request_id,
            )
        )

    def _refused(self, exc: StartRefused, workflow_id: str, request_id: str | None) -> None:
        if exc.code == "job_already_running":
            # An error ack: the run with that id goes on, and the SDK keeps following it.
            self._reply(
                error_frame(exc.code, message=exc.message, job_id=exc.job_id, request_id=request_id)
            )
            return
        # Busy server or store down: the SDK waits for a terminal job_update of its
        # job_id, so the refusal is one (not a message of any run: no job_seq).
        self._reply(
            JobNotice(
                job_id=exc.job_id, workflow_id=workflow_id, status="failed", error=exc.message
            )
        )

    def _reconnect(self, frame: ReconnectJob) -> None:
        run = self._find(frame.job_id)
        if run is None:
            if self._hub.store is not None:
                self._spawn(self._reconnect_durable(frame))
            else:
                self._job_not_found(frame.job_id, frame.workflow_id)
            return
        if self._runs.get(frame.job_id) is run and self in run.subscribers:
            # The SDK repeats reconnect_job every 2 s: never duplicate the live stream.
            items: list[Outbound] = []
            incomplete = False
        else:
            items, incomplete = run.replay(frame.after_seq)
        self._reply(
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
        if not run.finished:
            run.attach(self)
            self._runs[run.job_id] = run

    async def _reconnect_durable(self, frame: ReconnectJob) -> None:
        store = self._hub.store
        assert store is not None
        if frame.job_id in self._followers:
            record = await store.get_run(frame.job_id)
            status = record.status if record is not None else "running"
            last = record.last_seq if record is not None else 0
            workflow_id = record.workflow_id if record is not None else frame.workflow_id
            self._reply(
                JobResumed(
                    job_id=frame.job_id,
                    workflow_id=workflow_id or "",
                    status=status,
                    last_seq=last,
                    replay_count=0,
                    replay_incomplete=False,
                )
            )
            return
        follower = DurableFollower(store, frame.job_id, frame.after_seq, self, self.user_id)
        # Known before the first await, so a reconnect_job repeated meanwhile starts no
        # second stream; forgotten when done, which for a finished run is within start(),
        # so asking again replays the terminal message again.
        self._followers[frame.job_id] = follower
        follower.on_done(lambda: self._forget_follower(follower))
        try:
            found = await follower.start(frame.workflow_id)
        except Exception as exc:
            self._forget_follower(follower)
            log.warning("connection.durable_reconnect_failed", job_id=frame.job_id, error=str(exc))
            self._job_not_found(frame.job_id, frame.workflow_id, f"store unavailable: {exc}")
            return
        if not found:
            self._forget_follower(follower)
            self._job_not_found(frame.job_id, frame.workflow_id)

    def _forget_follower(self, follower: DurableFollower) -> None:
        if self._followers.get(follower.job_id) is follower:
            del self._followers[follower.job_id]

    def _job_not_found(
        self, job_id: str, workflow_id: str | None, error: str = "job not found"
    ) -> None:
        self._reply(
            JobNotice(job_id=job_id, workflow_id=workflow_id or "", status="failed", error=error)
        )

    def _cancel(self, frame: CancelJob) -> None:
        run = self._find(frame.job_id)
        if run is None and self._hub.store is not None:
            self._spawn(self._cancel_durable(frame))
            return
        if run is None or not run.cancel():
            self._reply(error_frame(_NOT_FOUND, job_id=frame.job_id, request_id=frame.request_id))
            return
        self._reply(
            {
                "message": "Job cancellation requested",
                "job_id": run.job_id,
                "workflow_id": run.workflow_id,
            }
        )

    async def _cancel_durable(self, frame: CancelJob) -> None:
        store = self._hub.store
        assert store is not None
        try:
            record = await store.get_run(frame.job_id)
            requested = (
                record is not None
                and record.user_id == self.user_id
                and await store.request_cancel(frame.job_id)
            )
        except Exception as exc:
            log.warning("connection.durable_cancel_failed", job_id=frame.job_id, error=str(exc))
            requested = False
        if not requested:
            self._reply(error_frame(_NOT_FOUND, job_id=frame.job_id, request_id=frame.request_id))
            return
        # The ack names the run's workflow, as for a run of this process.
        workflow_id = frame.workflow_id or (record.workflow_id if record is not None else "")
        self._reply(
            {
                "message": "Job cancellation requested",
                "job_id": frame.job_id,
                "workflow_id": workflow_id,
            }
        )

    def _status(self, frame: GetStatus) -> None:
        if frame.job_id is None:
            self._reply(
                {
                    "active_jobs": [
                        {"job_id": run.job_id, "workflow_id": run.workflow_id, "status": run.status}
                        for run in self._runs.values()
                        if not run.finished
                    ]
                }
            )
            return
        run = self._find(frame.job_id)
        if run is None:
            self._reply({"status": "not_found", "job_id": frame.job_id})
        else:
            self._reply(
                {"status": run.status, "job_id": run.job_id, "workflow_id": run.workflow_id}
            )

    def _live_run(self, job_id: str, request_id: str | None) -> Run | None:
        run = self._find(job_id)
        if run is None or run.finished or run.execution is None:
            self._reply(error_frame(_NOT_FOUND, job_id=job_id, request_id=request_id))
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
            answer = error_frame(
                "input_rejected", message=error, job_id=run.job_id, request_id=request_id
            )
            answer["input"] = name
            self._reply(answer)
        else:
            self._reply({"message": ok, "job_id": run.job_id, "workflow_id": run.workflow_id})

    def _update_properties(self, frame: UpdateNodeProperties) -> None:
        run = self._live_run(frame.job_id, frame.request_id)
        if run is None:
            return
        assert run.execution is not None
        error = run.execution.update_properties(frame.node_id, frame.properties)
        if error is not None:
            answer = error_frame(
                "properties_rejected", message=error, job_id=run.job_id, request_id=frame.request_id
            )
            answer["node_id"] = frame.node_id
            self._reply(answer)
            return
        self._reply(
            {"message": "Node properties updated", "job_id": run.job_id, "node_id": frame.node_id}
        )

    def _stop(self, frame: Stop) -> None:
        run = self._runs.pop(frame.job_id, None)
        if run is not None:
            run.detach(self)
        follower = self._followers.pop(frame.job_id, None)
        if follower is not None:
            follower.stop()
        self._reply(GenerationStopped(message="Generation stopped", job_id=frame.job_id))
        self._reply({"message": "Streaming stopped", "job_id": frame.job_id})
