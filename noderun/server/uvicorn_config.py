"""The uvicorn settings noderun runs with, shared with the benchmark's echo floor.

The floor must run under exactly these flags, or the server/floor ratio
measures a configuration difference instead of noderun's overhead.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import uvicorn

from noderun.server.logging import quiet_invalid_utf8

__all__ = ["uvicorn_config"]


def _loop_setting() -> str:
    # uvloop is a hard dependency except on Windows, where it does not build.
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    log_level: str = "warning",
    lifespan: Literal["auto", "on", "off"] = "on",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    proxy_headers: bool = False,
    forwarded_allow_ips: str | None = None,
    max_frame_bytes: int = 16 * 1024 * 1024,
) -> uvicorn.Config:
    """uvicorn settings for the hot path.

    ``websockets-sansio`` writes each frame straight to the transport (no
    per-connection task or queue of its own); per-message deflate is off because
    it costs ~70 KiB per connection and CPU per frame (PROTOCOL.md §1). Proxy
    headers are off unless asked for (uvicorn trusts them from localhost by default):
    a client address should not come from a header nobody vouched for. A message
    over ``max_frame_bytes`` closes the connection with 1009 (uvicorn's ``ws_max_size``).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=_loop_setting(),
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=max_frame_bytes,
        ws_ping_interval=None,
        lifespan=lifespan,
        log_level=log_level,
        # noderun.server.logging routes uvicorn's records through its own pipeline.
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    # After uvicorn configured its loggers: it logs a client's bad UTF-8 as a traceback.
    quiet_invalid_utf8()
    return config
