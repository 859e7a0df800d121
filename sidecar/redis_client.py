"""How the sidecar talks to Redis: the client it opens, and waiting out an outage (``RedisWait``).

What is stored, under which key names, is ``store.py``'s business; this module only holds the connection's
settings and the retry loop that keeps work from being dropped while Redis restarts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis

MAX_CONNECTIONS = 128  # Redis connections one sidecar opens at most; past that, callers wait for a free one
CONNECTION_WAIT = 20.0  # seconds a caller waits for a free connection before it gets a ConnectionError
CONNECT_TIMEOUT = 5.0  # seconds to open a connection to Redis
RETRY_FIRST, RETRY_MAX = 0.05, 2.0  # seconds between attempts while Redis is away: from a blip to a restart
REDIS_ERRORS = (aioredis.RedisError, OSError)

T = TypeVar("T")
log = logging.getLogger("dvm_sidecar.redis")


def connect(url: str) -> aioredis.Redis:
    """A client for the Redis at ``url`` that makes callers wait for a free connection when all
    ``MAX_CONNECTIONS`` are busy. redis-py's default pool raises "Too many connections" past 100 instead: a
    burst of peer messages (each handled in its own task) then lost messages to Redis errors.

    No socket timeout on commands: redis-py wraps each send in ``asyncio.wait_for`` when one is set, and on
    Python 3.11 that swallows a cancellation arriving as the send completes, so a task asked to stop went on
    (a member's stop then waited its full timeout). A Redis that stops answering holds its callers as an outage
    does; readiness asks with a deadline of its own (``Store.ping``)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT,
        socket_timeout=None, socket_connect_timeout=CONNECT_TIMEOUT,
    )
    return aioredis.Redis.from_pool(pool)


def cancelling() -> bool:
    """Whether the current task was asked to stop (redis-py can hide that behind a connection error)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class RedisWait:
    """Runs store operations that must not be dropped (a job's state before its effects, a request's claim)
    again and again until Redis answers, waiting a little longer each time (up to ``RETRY_MAX``): a Redis
    restart or outage holds the work up instead of losing it. Each failure is counted through ``failed``;
    the outage is logged once, and its end once. Cancelling the caller ends the wait. Only Redis and socket
    errors are retried: a ``ValueError`` is the caller's mistake and raised at once. The operations given must
    be safe to run twice (a write whose answer was lost may have happened)."""

    def __init__(self, failed: Callable[[], None], what: str) -> None:
        self._failed = failed
        self._what = what
        self._down = False

    async def __call__(self, operation: Callable[[], Awaitable[T]]) -> T:
        delay = RETRY_FIRST
        while True:
            try:
                result = await operation()
            except REDIS_ERRORS as exc:
                if cancelling():  # redis-py may report a cancelled command as a connection error
                    raise asyncio.CancelledError from None
                self._failed()
                if not self._down:
                    self._down = True
                    log.warning("%s: Redis unreachable (%s); waiting for it", self._what, exc)
            else:
                if self._down:
                    self._down = False
                    log.info("%s: Redis reachable again", self._what)
                return result
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(2 * delay, RETRY_MAX)
