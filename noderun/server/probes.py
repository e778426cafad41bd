"""HTTP probes beside ``/ws``: ``/livez``, ``/readyz``, ``/version`` and ``/health``.

* ``GET /livez``: 200 whenever the process answers HTTP (restart it when this fails).
* ``GET /readyz``: 200 when it should get traffic; 503 with the reasons while starting,
  draining, when the store (durable runs configured) does not answer a real read, or
  when a check added with :meth:`Lifecycle.add_readiness_check` reports a reason.
* ``GET /version``: the package version.
* ``GET /health``: 200 with the number of active runs once started (unchanged).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from noderun.server.lifecycle import Lifecycle
from noderun.server.version import VERSION

__all__ = ["probe_routes"]


def probe_routes(lifecycle: Lifecycle) -> list[Route]:
    async def livez(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "alive"})

    async def readyz(_request: Request) -> JSONResponse:
        reasons = await lifecycle.not_ready()
        if reasons:
            return JSONResponse({"status": "unavailable", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def version(_request: Request) -> JSONResponse:
        return JSONResponse({"name": "noderun", "version": VERSION})

    async def health(_request: Request) -> JSONResponse:
        hub = lifecycle.hub
        if hub is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok", "active_runs": len(hub.active)})

    return [
        Route("/livez", livez),
        Route("/readyz", readyz),
        Route("/version", version),
        Route("/health", health),
    ]
