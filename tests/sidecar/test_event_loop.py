"""The commands' event loop: uvloop when it is installed, asyncio's own when it is not; the same result."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from sidecar import event_loop


async def loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert event_loop.run(loop_module()).startswith(uvloop.__name__)


def test_asyncio_loop_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert event_loop.run(loop_module()).startswith("asyncio")


def test_an_exception_comes_through() -> None:
    async def fails() -> None:
        raise ValueError("from the coroutine")

    with pytest.raises(ValueError, match="from the coroutine"):
        event_loop.run(fails())


def test_tune_gc_freezes_what_is_loaded_and_collects_the_young_less_often() -> None:
    before = gc.get_threshold()
    try:
        event_loop.tune_gc()
        assert gc.get_freeze_count() > 1000  # this process's modules and objects so far
        assert gc.get_threshold() == (event_loop.GC_YOUNG_THRESHOLD, *before[1:])
        garbage = []
        garbage.append(garbage)  # a cycle made after the freeze is still collected
        del garbage
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
