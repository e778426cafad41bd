"""In-process cost of a trivial run: the runtime without a socket or codec around it.

The runtime provides the hook ``noderun.runtime.bench_hooks.run_trivial(n) ->
float`` (seconds for ``n`` trivial single-node runs, including whatever event
loop set-up it needs). It is imported lazily, by name, so the benchmark works —
and type-checks — before the runtime exists.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

__all__ = ["HOOK", "measure_inprocess"]

HOOK = "noderun.runtime.bench_hooks"


def measure_inprocess(n: int) -> float | None:
    """Microseconds per trivial in-process run, or None when the hook is unavailable.

    Call it outside any running event loop: the hook may start its own. Errors
    raised by the hook propagate.
    """
    try:
        module = importlib.import_module(HOOK)
    except ModuleNotFoundError as exc:
        # Only the hook's own absence means "unavailable"; a broken import inside
        # it is a bug that should surface.
        if exc.name is not None and (HOOK + ".").startswith(exc.name + "."):
            return None
        raise
    run_trivial = cast(Callable[[int], float] | None, getattr(module, "run_trivial", None))
    if run_trivial is None:
        return None
    return run_trivial(n) / n * 1e6
