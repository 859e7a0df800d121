"""The event loop the commands run on: uvloop where it is installed (Linux and macOS), else asyncio's own.

uvloop runs the same asyncio code with its loop, sockets and callbacks in C. Under a burst of jobs, a member's
sidecar used about 10% less CPU per job with it (``bench/e2e.py``, run on both). Nothing depends on it: the
tests run the service on both loops (in-process on asyncio's, as ``dvm-sidecar run`` processes on uvloop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is there."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
