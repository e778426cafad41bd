"""NodeTool's Python node packages, hosted in a supervised pool of NodeTool workers.

``python -m nodetool.worker --stdio`` (from ``nodetool-core``) loads every node
package it finds and answers ``discover``/``execute`` frames on its pipes.
:class:`~noderun.nodetool.pool.WorkerPool` keeps a few of those processes alive,
:mod:`~noderun.nodetool.catalog` turns their ``discover`` answer into node specs
whose functions send ``execute`` to the pool, and :func:`start_nodetool` wires
both into a registry at server start-up.
"""

from __future__ import annotations

from noderun.nodetool.errors import (
    NodeToolError,
    PoolClosed,
    QueueFull,
    RemoteNodeError,
    WorkerLost,
    WorkerStartError,
)
from noderun.nodetool.pool import PoolOptions, WorkerPool
from noderun.nodetool.startup import start_nodetool, workspace_dir

__all__ = [
    "NodeToolError",
    "PoolClosed",
    "PoolOptions",
    "QueueFull",
    "RemoteNodeError",
    "WorkerLost",
    "WorkerPool",
    "WorkerStartError",
    "start_nodetool",
    "workspace_dir",
]
