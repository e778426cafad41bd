"""HTTP probes beside ``/ws``: ``/livez``, ``/readyz``, ``/version`` and ``/health``.

* ``GET /livez``: 200 whenever the process answers HTTP (restart it when this fails).
* ``GET /readyz``: 200 when it should get traffic; 503 with the reasons while starting,
  draining, when the store (durable runs configured) does not answer a real read, or
  when a check added with :meth:`Lifecycle.add_readiness_check` reports a reason.
* ``GET /version``: the package version.
* ``GET /health``: 200 with the number of active runs once started (unchanged).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from noderun.server.answers import Alive, NotReady, ProbeHealth, Ready, Starting, VersionInfo
from noderun.server.lifecycle import Lifecycle
from noderun.server.version import VERSION

__all__ = ["probe_routes"]


_encode = msgspec.json.Encoder().encode


def _json(answer: msgspec.Struct, status: int = 200) -> Response:
    return Response(_encode(answer), status_code=status, media_type="application/json")


def probe_routes(lifecycle: Lifecycle) -> list[Route]:
    async def livez(_request: Request) -> Response:
        return _json(Alive())

    async def readyz(_request: Request) -> Response:
        reasons = await lifecycle.not_ready()
        if reasons:
            return _json(NotReady(reasons=reasons), 503)
        return _json(Ready())

    async def version(_request: Request) -> Response:
        return _json(VersionInfo(version=VERSION))

    async def health(_request: Request) -> Response:
        hub = lifecycle.hub
        if hub is None:
            return _json(Starting(), 503)
        return _json(ProbeHealth(active_runs=len(hub.active)))

    return [
        Route("/livez", livez),
        Route("/readyz", readyz),
        Route("/version", version),
        Route("/health", health),
    ]
