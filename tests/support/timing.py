"""The one scaled time unit of the tests, and the waits derived from it.

Raise ``NODERUN_TEST_TIME_SCALE`` on a slow machine: every duration a test uses is a
multiple or a fraction of :data:`SECOND`, so one variable stretches them all together.
"""

from __future__ import annotations

import os

__all__ = ["LONG_TIMEOUT", "SECOND", "START_TIMEOUT", "TIMEOUT"]

#: One second, scaled: the unit every test duration is derived from.
SECOND = 1.0 * float(os.environ.get("NODERUN_TEST_TIME_SCALE", "1"))
#: How long to wait for something that must happen (a frame, a terminal state, a commit).
TIMEOUT = 5.0 * SECOND
#: For what spans a few process round trips: a deployed server answering its probes.
LONG_TIMEOUT = 2 * TIMEOUT
#: For starting a real NodeTool worker or a load generator: about a second on an idle
#: machine, far more on a loaded one.
START_TIMEOUT = 12 * TIMEOUT
