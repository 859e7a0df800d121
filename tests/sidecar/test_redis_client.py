"""The Redis client (``sidecar/redis_client.py``): a stop is never lost in a Redis command, neither by
``RedisWait``'s retry nor by redis-py. The retry through an outage is tested in ``test_redis_outage.py``."""

from __future__ import annotations

import asyncio

import pytest
import redis

from sidecar.redis_client import RedisWait, connect
from sidecar.store import Store


async def test_redis_wait_does_not_retry_a_command_that_failed_because_its_task_was_cancelled() -> None:
    """redis-py can report a cancelled command as a connection error; retrying it would swallow the stop."""
    failures: list[int] = []

    async def cancelled_command() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]  # a stop arrives while the command runs
        raise redis.ConnectionError("Connection closed by server.")

    task = asyncio.ensure_future(RedisWait(lambda: failures.append(1), "test")(cancelled_command))
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task
    assert failures == []


async def test_a_task_cancelled_during_a_command_stops(redis_url: str) -> None:
    """A cancellation that meets a command's end is not lost: the task stops. (With redis-py's socket timeout,
    its ``asyncio.wait_for`` around each send swallowed most of these on Python 3.11.)"""
    client = connect(redis_url)
    store = Store(client, namespace="cancel", member=1)

    async def busy() -> None:
        for _ in range(50):
            await store.due(0.0)

    try:
        went_on = 0
        for attempt in range(60):
            task = asyncio.create_task(busy())
            await asyncio.sleep((attempt % 6) * 0.0002)
            task.cancel()
            try:
                await task
                went_on += 1
            except asyncio.CancelledError:
                pass
        assert went_on == 0, f"{went_on} of 60 cancelled tasks ran to the end"
    finally:
        await client.aclose()
