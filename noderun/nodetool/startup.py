"""Server start-up: start the pool, merge its nodes into the registry."""

from __future__ import annotations

import os
from collections.abc import Iterable

import structlog

from noderun.assets import AssetStore
from noderun.nodetool.catalog import load_package_metadata, log_load_errors, node_specs
from noderun.nodetool.pool import PoolOptions, WorkerPool
from noderun.runtime.registry import Registry

__all__ = ["server_secrets", "start_nodetool"]

log = structlog.get_logger(__name__)


def server_secrets(keys: Iterable[str]) -> dict[str, str]:
    """The settings a node requires, from the server's environment only (never a client)."""
    return {key: os.environ[key] for key in keys if os.environ.get(key)}


async def start_nodetool(
    options: PoolOptions, registry: Registry, assets: AssetStore | None = None
) -> WorkerPool:
    """A started pool whose nodes are in ``registry``; native nodes keep their names.

    Asset references in media inputs are read from ``assets`` for the run's user.

    Raises :class:`~noderun.nodetool.errors.WorkerStartError` (the pool is then closed).
    """
    pool = WorkerPool(options)
    discovery = await pool.start()
    try:
        package_metadata = await load_package_metadata(
            options.python, {**os.environ, **options.env}, options.start_timeout
        )
    except BaseException:
        await pool.close()
        raise
    log_load_errors(discovery.load_errors)
    added = shadowed = 0
    for spec in node_specs(pool, discovery.nodes, package_metadata, server_secrets, assets):
        if spec.node_type in registry:
            shadowed += 1
            continue
        registry.add(spec)
        added += 1
    log.info(
        "nodetool.ready",
        workers=options.workers,
        nodes=added,
        shadowed_by_native=shadowed,
        protocol_version=discovery.protocol_version,
    )
    return pool
