"""What the NodeTool worker tests share: the test node package and the skip rule.

The package (``nodepack/nodetool/nodes/noderuntest``) is found by the worker the
way NodeTool finds every node package: a subpackage of the ``nodetool.nodes``
namespace package on the worker's path (here ``PYTHONPATH``). Its
``nodepack/nodetool/package_metadata/noderun-test.json`` is what NodeTool's
package scanner writes (``BaseNode.get_metadata()`` of each node).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from noderun.nodetool import PoolOptions
from tests.support.timing import START_TIMEOUT

__all__ = ["NODEPACK", "options", "require_nodetool"]

NODEPACK = Path(__file__).resolve().parent / "nodepack"


def require_nodetool() -> None:
    """Skip without ``nodetool-core`` (fail instead when ``NODERUN_REQUIRE_NODETOOL=1``)."""
    try:
        found = importlib.util.find_spec("nodetool.worker") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        message = (
            "nodetool-core is not installed (pip install -e '.[nodetool]'; "
            "scripts/test installs it)"
        )
        if os.environ.get("NODERUN_REQUIRE_NODETOOL") == "1":
            pytest.fail(message)
        pytest.skip(message)


def options(**overrides: object) -> PoolOptions:
    """Pool options for one worker loading only the test package."""
    values: dict[str, object] = {
        "workers": 1,
        "python": sys.executable,
        "namespaces": ("noderuntest",),
        "start_timeout": START_TIMEOUT,
        "env": {"PYTHONPATH": str(NODEPACK)},
        "restart_backoff": 0.05,
    }
    values.update(overrides)
    return PoolOptions(**values)  # type: ignore[arg-type]
