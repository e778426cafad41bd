"""Errors of the NodeTool worker pool.

::

    NodeToolError
    ├── WorkerStartError   the pool could not start (interpreter, module, deadline)
    ├── WireError          a worker broke the framing: a bug on one side
    ├── QueueFull          every worker busy and the queue at its bound
    ├── PoolClosed         the pool is closing or closed
    ├── WorkerLost         the worker died, hung or was killed mid-request
    └── RemoteNodeError    the node itself raised inside the worker

Each reaches the client as the run's ``failed`` terminal through
:class:`~noderun.runtime.errors.NodeFailed`, whose text names the node.
"""

from __future__ import annotations

__all__ = [
    "MediaInputError",
    "NodeToolError",
    "PoolClosed",
    "QueueFull",
    "RemoteNodeError",
    "WireError",
    "WorkerLost",
    "WorkerStartError",
]


class NodeToolError(Exception):
    """Root of the worker pool's errors."""


class WorkerStartError(NodeToolError):
    """A worker did not get to answer ``discover``."""

    def __init__(self, worker: str, reason: str) -> None:
        super().__init__(f"NodeTool worker {worker} did not start: {reason}")
        self.worker = worker
        self.reason = reason


class WireError(NodeToolError):
    """A frame that cannot be decoded, or a length beyond the limit."""


class QueueFull(NodeToolError):
    """No worker is free and ``queue_limit`` requests already wait."""

    def __init__(self, node_type: str, limit: int) -> None:
        super().__init__(
            f"NodeTool worker queue full ({limit} waiting): {node_type} not started, retry later"
        )
        self.node_type = node_type
        self.limit = limit


class PoolClosed(NodeToolError):
    """The pool stopped taking work (server shutdown)."""

    def __init__(self, node_type: str) -> None:
        super().__init__(f"NodeTool worker pool is closed: {node_type} not run")
        self.node_type = node_type


class WorkerLost(NodeToolError):
    """The worker running the node exited, hung or was killed before answering."""

    def __init__(self, node_type: str, worker: str, reason: str) -> None:
        super().__init__(f"NodeTool worker {worker} lost while running {node_type}: {reason}")
        self.node_type = node_type
        self.worker = worker
        self.reason = reason


class RemoteNodeError(NodeToolError):
    """The node raised inside the worker; ``traceback`` is the worker's text."""

    def __init__(self, node_type: str, error: str, traceback: str = "") -> None:
        super().__init__(error or f"{node_type} failed in its worker")
        self.node_type = node_type
        self.error = error
        self.traceback = traceback


class MediaInputError(NodeToolError):
    """A media input could not be turned into the worker's blob (no such asset of the
    run's user, bad base64); the node is not sent."""

    def __init__(self, node_type: str, name: str, reason: str) -> None:
        super().__init__(f"{node_type}: input {name!r}: {reason}")
        self.node_type = node_type
        self.name = name
        self.reason = reason
