"""Whole federations for the end-to-end tests: ``LocalFederation`` on the session's real Redis server, with
embedded nostr-sdk relays, short protocol timeouts, and everything stopped after each test."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from consensus.federation import Timeouts
from sidecar.local import LocalFederation, LocalOptions
from tests.e2e.lax_relay import LaxRelay

# Short enough that the give-up and takeover paths run in seconds, long enough for a loaded 2-core machine.
FAST = Timeouts(dvm=4.0, deadline=6.0, coordinator=3.0, session=1.0)

STOP_WITHIN = 20.0  # seconds; a federation that takes longer to stop is a bug (its tasks are printed)

StartFederation = Callable[..., Awaitable[LocalFederation]]


@pytest.fixture
async def start_federation(redis_url: str) -> AsyncIterator[StartFederation]:
    """``await start_federation(up={1, 2}, **LocalOptions fields)``: a running federation (only the members in
    ``up`` started; all by default)."""
    started: list[LocalFederation] = []

    async def start(up: set[int] | None = None, **options: Any) -> LocalFederation:
        options.setdefault("timeouts", FAST)
        local = LocalFederation(LocalOptions(redis_url=redis_url, **options))
        started.append(local)
        await local.start(up)
        return local

    yield start
    for local in reversed(started):
        try:
            async with asyncio.timeout(STOP_WITHIN):
                await local.stop()
        except TimeoutError:
            _print_tasks()
            raise


@pytest.fixture
async def lax_relay() -> AsyncIterator[LaxRelay]:
    relay = LaxRelay()
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


def _print_tasks() -> None:
    """What every task waits on: the clue when stopping a federation hangs."""
    for task in asyncio.all_tasks():
        print("task", task, file=sys.stderr)
        task.print_stack(limit=6, file=sys.stderr)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, every: float = 0.05) -> bool:
    """Poll ``check`` until it is true (True) or ``timeout`` seconds passed (False); bounded in count too."""
    for _ in range(max(1, int(timeout / every))):
        if await check():
            return True
        await asyncio.sleep(every)
    return await check()


def metric(local: LocalFederation, member: int, name: str, **labels: str) -> float:
    """A sample of member ``member``'s metrics (0 for a series never touched)."""
    return local.sidecars[member].metrics.registry.get_sample_value(name, labels) or 0.0
