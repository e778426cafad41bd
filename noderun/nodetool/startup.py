"""Server start-up: start the pool, merge its nodes into the registry."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import structlog

from noderun.assets import AssetStore
from noderun.nodetool.catalog import load_package_metadata, log_load_errors, node_specs
from noderun.nodetool.pool import PoolOptions, WorkerPool
from noderun.runtime.registry import Registry

__all__ = ["SHM", "SHM_MIN_FREE", "server_secrets", "start_nodetool", "workspace_dir"]

log = structlog.get_logger(__name__)


SHM = "/dev/shm"
#: A tmpfs with less room than this is not taken unasked: the workers write media
#: inputs into their workspaces there (a container's ``/dev/shm`` is 64 MiB).
SHM_MIN_FREE = 1 << 30


def workspace_dir(configured: str, environ: Mapping[str, str], shm: str = SHM) -> str | None:
    """The ``TMPDIR`` to give the workers, or ``None`` to leave theirs as inherited.

    Each execute makes and removes a workspace directory there; on a disk file
    system that costs the worker more than the rest of a trivial execute's fixed
    work, on a tmpfs next to nothing. So: the setting when given; else the
    environment's ``TMPDIR`` when set (an operator's choice); else ``shm`` when it
    is writable and has ``SHM_MIN_FREE`` free; else ``None`` (the system default).
    """
    if configured:
        return configured
    if environ.get("TMPDIR"):
        return None
    try:
        stats = os.statvfs(shm)
    except OSError:
        return None
    if stats.f_bavail * stats.f_frsize < SHM_MIN_FREE or not os.access(shm, os.W_OK | os.X_OK):
        return None
    return shm


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
