"""One logging pipeline: structlog's and the standard library's records (uvicorn, asyncpg)
rendered by the same processors — JSON lines when stderr is not a TTY, readable console
output on one — with secrets redacted from every line at every level.

uvicorn logs each WebSocket handshake with its path and query string (where ``?api_key=``
travels) and each connection's open and close at INFO; those lines concern one connection,
so they are demoted to DEBUG, and a token is replaced by ``***`` wherever it appears:
``api_key=``/``token=`` query parameters and ``Authorization`` header values.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "quiet_invalid_utf8", "redact"]

_QUERY_SECRET = re.compile(r"(?i)\b(api_key|access_token|token)=([^&\s\"']+)")
_AUTH_HEADER = re.compile(
    r"(?i)(authorization['\"]?\s*[:=,]\s*\(?\s*(?:b?['\"])?)([^'\"\s)]+(?:\s+[^'\"\s)]+)?)"
)

#: uvicorn's per-connection lines (logger ``uvicorn.error``), demoted to DEBUG.
_PER_CONNECTION = (
    '"WebSocket ',
    "connection open",
    "connection closed",
    "connection rejected",
)


def redact(text: str) -> str:
    """``text`` with query-string tokens and Authorization values replaced by ``***``."""
    if "=" in text:
        text = _QUERY_SECRET.sub(r"\1=***", text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(r"\1***", text)
    return text


def _redact_event(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


class _PerConnectionToDebug(logging.Filter):
    """Demote uvicorn's per-connection INFO lines to DEBUG (dropped unless at debug)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self._level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and any(marker in record.msg for marker in _PER_CONNECTION)
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self._level <= logging.DEBUG
        return True


def configure_logging(level: str = "info", *, stream: Any = None) -> None:
    """Route structlog and stdlib logging (uvicorn, asyncpg) through one renderer."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    stream = sys.stderr if stream is None else stream
    renderer: structlog.typing.Processor
    if stream.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write per record (message and newline together): print() writes them
        # separately, and on an unbuffered stream (python -u, PYTHONUNBUFFERED) two
        # processes sharing one output file then interleave records on one line.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_PerConnectionToDebug(numeric))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # uvicorn's loggers propagate to the root handler above (its own config is off:
    # uvicorn_config passes log_config=None).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
        logger.setLevel(numeric)


#: What uvicorn's websockets-sansio protocol logs, with a traceback at ERROR, when a
#: text frame is not UTF-8 (it then closes the socket with 1007 itself).
_INVALID_UTF8 = "Invalid UTF-8 sequence received from client."


class _InvalidUtf8(logging.Filter):
    """Turns uvicorn's invalid-UTF-8 traceback into one debug line.

    A client that sends bad bytes is not a server fault: uvicorn already closed
    it with 1007 (PROTOCOL.md §1), so there is nothing for an operator to fix.
    A filter on the logger, not on a handler: it applies however logging is set up.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != _INVALID_UTF8:
            return True
        record.levelno = logging.DEBUG
        record.levelname = "DEBUG"
        record.msg = "websocket.invalid_utf8: text frame is not UTF-8, closed with 1007"
        record.exc_info = None
        record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_FILTER = _InvalidUtf8()


def quiet_invalid_utf8() -> None:
    """Install the filter on uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
