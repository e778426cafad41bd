"""Errors of the protocol layer: the client sent something we cannot accept.

Hierarchy::

    ProtocolError                 the client sent something wrong (never our bug)
    ├── FrameError                the frame does not decode       → ``invalid_frame``
    ├── MessageError              no ``command`` and no known ``type`` → ``invalid_message``
    └── CommandError              unknown command or malformed ``data`` → ``invalid_command``

Each carries the fields its error frame needs (PROTOCOL.md §2); the server turns
it into that frame with :func:`noderun.protocol.server.error_frame`.
"""

from __future__ import annotations

__all__ = ["CommandError", "FrameError", "MessageError", "ProtocolError"]


class ProtocolError(Exception):
    """Root of the errors caused by a client frame."""

    def __init__(self, detail: str, *, request_id: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.request_id = request_id


class FrameError(ProtocolError):
    """Bad MessagePack/JSON, not a map, or envelope keys of the wrong type."""


class MessageError(ProtocolError):
    """A frame with neither ``command`` nor a known ``type``."""


class CommandError(ProtocolError):
    """An unknown command, or a known command whose ``data`` is malformed."""

    def __init__(
        self,
        detail: str,
        *,
        command: str,
        request_id: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(detail, request_id=request_id)
        self.command = command
        self.job_id = job_id
