"""The stable identity of a server process in a run store.

A store fails the runs its own server id left running as soon as that id starts again
(PROTOCOL.md §5: a restarted server reports its runs interrupted before it is ready),
so the id must survive a restart: the same server on the same host, data directory and
port gets the same id; so does the same worker process of a server that runs several.
"""

from __future__ import annotations

import hashlib
import os
import socket

from noderun.persistence.errors import StoreConfigError

__all__ = ["MAX_SERVER_ID", "check_server_id", "default_server_id"]

#: Longest server id: it travels in cancel notifications with a job id.
MAX_SERVER_ID = 200


def default_server_id(
    port: int,
    *,
    worker: int | None = None,
    host: str | None = None,
    data_dir: str | None = None,
) -> str:
    """``HOST:PORT:DIGEST`` (``:wN`` for worker ``N``), stable across restarts.

    ``host`` defaults to this machine's host name and ``data_dir`` to the current
    directory (where a relative sqlite path lives); the digest of both keeps ids of
    servers in different directories apart without making the id unreadable.
    """
    host = host or socket.gethostname() or "localhost"
    where = os.path.realpath(data_dir or os.getcwd())
    digest = hashlib.sha256(f"{host}\0{where}".encode()).hexdigest()[:12]
    server_id = f"{host[:100]}:{port}:{digest}"
    if worker is not None:
        server_id += f":w{worker}"
    return server_id


def check_server_id(server_id: str) -> str:
    """``server_id`` if it is usable as an owner id, else :class:`StoreConfigError`."""
    if not server_id or len(server_id) > MAX_SERVER_ID or not server_id.isprintable():
        raise StoreConfigError(
            "server_id", server_id, f"must be 1 to {MAX_SERVER_ID} printable characters"
        )
    return server_id
