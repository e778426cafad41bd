"""Errors of the server layer's HTTP API and RPC answers.

Hierarchy::

    ApiError          a request the SDK API refuses: carries the HTTP status, NodeTool's
                      error code (``INVALID_INPUT``, ``WORKFLOW_NOT_FOUND``, …), a message
                      and whether retrying may help

The HTTP API answers it as ``{"code", "message", "detail", "retryable"}`` (NodeTool's
SDK reads ``code``, ``detail`` and ``retryable``); an RPC answers it as
``rpc_response.error`` (see :mod:`noderun.server.sdk`).
"""

from __future__ import annotations

from noderun.server.answers import ErrorBody

__all__ = ["ApiError"]


class ApiError(Exception):
    """The client asked for something this server refuses or does not have."""

    def __init__(self, status: int, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable

    def body(self) -> ErrorBody:
        return ErrorBody(
            code=self.code, message=self.message, detail=self.message, retryable=self.retryable
        )
