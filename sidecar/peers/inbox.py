"""The receiving half every transport shares: envelopes in, authenticated messages out, rejections counted.

Rules: nothing a peer or a transport sends can raise out of here (every failure becomes a counted rejection);
the queue of accepted messages is bounded and applies back-pressure to the reader; a message id is accepted once,
checked in memory and, when a Redis client is given, against a record in Redis that survives a restart of this
process (a sorted set of ids scored by when each may be forgotten, two replay windows after it was taken).
Redis being down never stops delivery: the in-memory record still holds.

The Redis record is what a restarted process knows of the messages it took before. The transport's start reads
it into memory (``load``), so no message waits for a Redis round trip; accepted ids are added to it in the
background, in batches (what arrived in a quarter of a second), for the next restart. Only when that read failed (Redis away at start) is Redis asked
on every message's way, until the in-memory record covers every id that could still be replayed, that is once
this process has run two replay windows without its cache dropping an id early (a message is stale one window
after its date). An id taken in the last quarter second before a crash may be missing from the record: a
replay of it reaches the quorum core, which takes a message twice as it takes it once.
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
from sidecar.redis_client import REDIS_ERRORS
from sidecar.resp import Arg, RespClient

QUEUE_SIZE = 1024
MARK_EVERY = 0.25  # seconds the ids accepted meanwhile wait to go to the Redis record together

log = logging.getLogger(__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
        seen_key: str | None = None,
    ) -> None:
        self.codec = codec
        self._rejections = rejections
        # The record's commands go through the lean client (``sidecar.resp``), on the Redis ``redis`` names.
        self._redis = None if redis is None else RespClient.from_client(redis)
        self._seen_key = seen_key or f"dvm-sidecar:peer-seen:{codec.directory.me}"
        self._loaded = False  # the Redis record has been read into memory
        self._keep = 2 * codec.window  # seconds an id is kept: two windows, as a message is stale one after its date
        self._queue: asyncio.Queue[Envelope | _Closed] = asyncio.Queue(QUEUE_SIZE)
        self._closed = False
        self._redis_down = False
        self._started = codec.clock()
        self._to_mark: list[str] = []
        self._marker: asyncio.Task[None] | None = None

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

    async def load(self) -> int:
        """Read the Redis record of ids this member took before (a previous process's) into memory; the number
        read. Once loaded, no message waits for Redis; if Redis cannot be read, it is asked message by message."""
        if self._redis is None or self._loaded:
            return 0
        now = self.codec.clock()
        try:
            _, flat = await self._redis.execute([
                ["ZREMRANGEBYSCORE", self._seen_key, "-inf", now],
                ["ZRANGEBYSCORE", self._seen_key, now, "+inf", "WITHSCORES"],
            ])
        except REDIS_ERRORS as exc:
            log.warning("peer replay record not read (%s): Redis is asked message by message for now", exc)
            return 0
        entries = list(zip(flat[::2], flat[1::2]))
        for message_id, forget_after in entries:
            try:
                self.codec.seen.add(bytes.fromhex(_text(message_id)), forget_after=float(forget_after), now=now)
            except ValueError:
                continue  # not an id of ours: nothing to remember
        self._loaded = True
        return len(entries)

    def _memory_suffices(self) -> bool:
        now, cover = self.codec.clock(), self._keep
        early = self.codec.seen.forgot_early_at
        return (self._loaded or now - self._started > cover) and (early is None or now - early > cover)

    async def _first_sight(self, checked: list[Checked]) -> list[Checked]:
        """Those not already in the Redis record (one round trip for the batch); all of them if Redis is down,
        or once the in-memory record suffices (then they are added to it in the background)."""
        assert self._redis is not None
        if self._memory_suffices():
            self._to_mark += [item.message_id for item in checked]
            if self._marker is None:
                self._marker = asyncio.create_task(self._mark(), name="peer replay marks")
            return checked
        forget_after = self.codec.clock() + self._keep
        try:
            commands: list[list[Arg]] = [["ZADD", self._seen_key, "NX", forget_after, i.message_id] for i in checked]
            commands.append(["PEXPIRE", self._seen_key, int(self._keep * 1000)])
            *firsts, _ = await self._redis.execute(commands)
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
                self.reject("replay", "message id already in the Redis record")
        return fresh

    async def _mark(self) -> None:
        try:
            while self._to_mark:
                await asyncio.sleep(MARK_EVERY)  # one write for all that arrive meanwhile, not one per message
                await self._write_marks()
        finally:
            self._marker = None

    async def _write_marks(self) -> None:
        assert self._redis is not None
        ids, self._to_mark = self._to_mark, []
        if not ids:
            return
        now = self.codec.clock()
        forget_after = now + self._keep
        with contextlib.suppress(*REDIS_ERRORS):  # the in-memory record holds; only a restart misses these
            await self._redis.execute([
                ["ZADD", self._seen_key, *[arg for message_id in ids for arg in (forget_after, message_id)]],
                ["ZREMRANGEBYSCORE", self._seen_key, "-inf", now],
                ["PEXPIRE", self._seen_key, int(self._keep * 1000)],
            ])

    async def flush(self) -> None:
        """Write the ids still waiting to the Redis record now (a stop: the next process should know them)."""
        if self._marker is not None:
            self._marker.cancel()
            self._marker = None
        if self._redis is not None:
            await self._write_marks()

    def messages(self) -> AsyncIterator[Envelope]:
        return _Messages(self._queue)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._marker is not None:
            self._marker.cancel()
        if self._redis is not None:
            self._redis.close()
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
