"""The event loop the commands run on: uvloop where it is installed (Linux and macOS), else asyncio's own.

uvloop runs the same asyncio code with its loop, sockets and callbacks in C. Under a burst of jobs, a member's
sidecar used about 10% less CPU per job with it (``bench/e2e.py``, run on both). Nothing depends on it: the
tests run the service on both loops (in-process on asyncio's, as ``dvm-sidecar run`` processes on uvloop).

``tune_gc`` is for a long-running service once it is up: under a burst of jobs a sidecar spent ~7% of its
CPU in Python's cycle collector, ~1% after (timed with ``gc.callbacks`` over a 600-job burst).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

GC_YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation (Python's: 700)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is there."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def tune_gc() -> None:
    """Keep what was loaded so far (modules, the configuration, the keys) out of every later collection
    (``gc.freeze``), and collect the youngest generation every ``GC_YOUNG_THRESHOLD`` allocations: a job makes
    thousands of short-lived objects, and each collection cost about the same however few it found."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
