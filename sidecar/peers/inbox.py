"""The receiving half every transport shares: envelopes in, authenticated messages out, rejections counted.

Rules: nothing a peer or a transport sends can raise out of here (every failure becomes a counted rejection);
the queue of accepted messages is bounded and applies back-pressure to the reader; a message id is accepted once,
checked in memory and, when a Redis client is given, also with ``SET NX`` under the store's key (which survives
a restart of this process for two replay windows). Redis being down never stops delivery: the in-memory record
still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial

import redis.asyncio as aioredis

from sidecar.peers.base import Envelope
from sidecar.peers.envelope import Checked, EnvelopeCodec, Rejected

QUEUE_SIZE = 1024
REDIS_ERRORS = (aioredis.RedisError, OSError)

log = logging.getLogger(__name__)


class _Closed:
    pass


_CLOSED = _Closed()


class Inbox:
    def __init__(
        self,
        codec: EnvelopeCodec,
        *,
        rejections: Callable[[str], None],
        redis: aioredis.Redis | None = None,
        seen_key: Callable[[str], str] | None = None,
    ) -> None:
        self.codec = codec
        self._rejections = rejections
        self._redis = redis
        me = codec.directory.me
        self._seen_key = seen_key or (lambda message_id: f"dvm-sidecar:peer-seen:{me}:{message_id}")
        self._queue: asyncio.Queue[Envelope | _Closed] = asyncio.Queue(QUEUE_SIZE)
        self._closed = False
        self._redis_down = False

    def reject(self, reason: str, detail: str) -> None:
        log.debug("peer message dropped (%s): %s", reason, detail)
        try:
            self._rejections(reason)
        except Exception:
            log.exception("the rejection counter failed")

    async def receive(self, raws: Sequence[str | bytes]) -> None:
        """Authenticate a batch of envelopes (event JSON) in arrival order and queue the messages they carry."""
        await self._accept([partial(self.codec.check, raw) for raw in raws])

    async def receive_events(self, events: Sequence[tuple[object, int]]) -> None:
        """The same for events a relay client already parsed, each with the size of what carried it."""
        await self._accept([partial(self.codec.check_event, *item) for item in events])

    async def _accept(self, checks: Sequence[Callable[[], Checked]]) -> None:
        checked: list[Checked] = []
        for check in checks:
            try:
                checked.append(check())
            except Rejected as rejected:
                self.reject(rejected.reason, rejected.detail)
            except Exception as exc:  # a bug or an unforeseen input must cost one message, not the reader
                log.warning("peer message dropped: unexpected %s while checking it", type(exc).__name__)
                self.reject("malformed", type(exc).__name__)
        if self._redis is not None and checked:
            checked = await self._first_sight(checked)
        for item in checked:
            try:
                envelopes = self.codec.open(item)
            except Rejected as rejected:
                self.reject(rejected.reason, rejected.detail)
                continue
            except Exception as exc:
                log.warning("peer message dropped: unexpected %s while opening it", type(exc).__name__)
                self.reject("malformed", type(exc).__name__)
                continue
            for envelope in envelopes:
                if not self._closed:
                    await self._queue.put(envelope)

    async def _first_sight(self, checked: list[Checked]) -> list[Checked]:
        """Those not already marked seen in Redis (one round trip for the batch); all of them if Redis is down."""
        assert self._redis is not None
        ttl_ms = int(2 * self.codec.window * 1000)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in checked:
                    pipe.set(self._seen_key(item.message_id), b"1", nx=True, px=ttl_ms)
                firsts = await pipe.execute()
        except REDIS_ERRORS as exc:
            if not self._redis_down:
                log.warning("Redis unreachable for peer replay checks (%s); using the in-memory record", exc)
            self._redis_down = True
            return checked
        if self._redis_down:
            log.info("Redis reachable again for peer replay checks")
            self._redis_down = False
        fresh = []
        for item, first in zip(checked, firsts):
            if first:
                fresh.append(item)
            else:
                self.reject("replay", "message id already marked seen in Redis")
        return fresh

    def messages(self) -> AsyncIterator[Envelope]:
        return _Messages(self._queue)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._queue.full():
            self._queue.get_nowait()  # one undelivered message is lost at shutdown; the end mark must fit
        self._queue.put_nowait(_CLOSED)


class _Messages:
    """An iterator over the queue that a timeout may interrupt without ending it (an async generator would be
    closed by the cancellation), so ``asyncio.wait_for(anext(it), t)`` can be used again and again."""

    def __init__(self, queue: asyncio.Queue[Envelope | _Closed]) -> None:
        self._queue = queue

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> Envelope:
        item = await self._queue.get()
        if isinstance(item, _Closed):
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(item)  # for any other iterator
            raise StopAsyncIteration
        return item
