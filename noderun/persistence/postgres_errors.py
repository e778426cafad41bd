"""How the PostgreSQL store maps asyncpg's and the socket's errors to its own.

A client is told a fixed reason for each kind of failure (as ``store unavailable: …``);
the driver's own messages ("cannot switch to state 12 …") stay in the exception's
``__cause__``, which the store logs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from noderun.persistence.errors import StoreFull, StoreUnavailable, WriteRejected

__all__ = ["connecting", "translated"]

_TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now, …
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, out of memory
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
)


#: The reason a client is told, by kind of failure.
_LOST = "connection to the database lost"
_REASONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (TimeoutError, "database did not answer in time"),
    (asyncpg.exceptions.OperatorInterventionError, "database shutting down or not accepting"),
    (asyncpg.exceptions.InsufficientResourcesError, "database out of resources"),
    (asyncpg.exceptions.TransactionRollbackError, "transaction conflict"),
)


def _unavailable(exc: BaseException, default: str = _LOST) -> StoreUnavailable:
    reason = next((text for kinds, text in _REASONS if isinstance(exc, kinds)), default)
    error = StoreUnavailable("postgres", reason)
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Map asyncpg and socket errors to the store's error classes."""
    try:
        yield
    except asyncpg.exceptions.DiskFullError as exc:
        raise StoreFull("postgres", "database disk full") from exc
    except _TRANSIENT as exc:
        raise _unavailable(exc) from exc
    except asyncpg.PostgresError as exc:
        raise WriteRejected("postgres", str(exc)) from exc
    except asyncpg.InterfaceError as exc:
        if isinstance(exc, ValueError):  # an argument that cannot be encoded: our bug
            raise WriteRejected("postgres", str(exc)) from exc
        # "connection is closed", "connection was released", …
        raise _unavailable(exc) from exc
    except asyncpg.exceptions.InternalClientError as exc:
        # Seen when the server kills a connection mid-operation ("cannot switch to
        # state …; another operation is in progress"): that connection is unusable
        # (its release terminates it) and the batch is retried on a fresh one.
        raise _unavailable(exc) from exc


@contextlib.contextmanager
def connecting() -> Iterator[None]:
    """Map any failure to open a connection to StoreUnavailable.

    While connecting, even a server-side refusal (database not accepting connections,
    too many clients, bad password) means "cannot reach the store now".
    """
    try:
        yield
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _unavailable(exc, "cannot connect to the database") from exc
