"""The server process's garbage-collector settings.

Runs free their objects by reference counting (a finished run breaks its cycles), so
the cyclic collector finds next to nothing to collect; what it costs is the walk. With
CPython's default young-generation threshold (700 net allocations of tracked objects)
that walk is frequent, and it is worst for durable runs: their objects stay alive while
their group commit is in flight, so each young collection finds them alive, promotes
them, and the promoted ones push the collector into full collections that walk every
finished run kept for replay. Measured under the benchmark's 32-connection durable load
(server's own ``gc.callbacks`` timing): 25 µs of collection per run and full-collection
pauses up to 90 ms with the default; 2 to 3 µs per run and young pauses of ≤ 5 ms with
:data:`YOUNG_THRESHOLD`, no full collection; ephemeral runs 2.3 → 0.7 µs per run.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_heap"]

#: Net allocations of tracked objects between young collections (CPython's default:
#: 700). A young collection walks at most this many objects (≈ 3 ms measured).
YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Call once start-up is over: everything built so far lives for the whole process,
    so it leaves the collector's generations (``gc.freeze``), and young collections
    become rarer (:data:`YOUNG_THRESHOLD`).

    Process-wide, so only the owner of the process calls it
    (:func:`noderun.server.serve.serve`), never the app: an app embedded in another
    program must not retune that program's collector."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
