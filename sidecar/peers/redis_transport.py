"""The ``redis`` peer transport: one Redis Stream per member inbox, for federations that share a Redis.

Sending (through the shared ``outbox``) is one pipelined ``XADD`` per envelope (``MAXLEN ~`` keeps each inbox bounded whoever writes it; the
reader also trims its own inbox now and then, in case a writer did not). Receiving is one task reading this
member's inbox with ``XREAD BLOCK`` in batches; on start it reads back one replay window, so messages sent while
this member was restarting still arrive, and those it had already accepted are refused by the Redis seen-record.
Redis going away (a restart, a network cut) never ends the reader: it reconnects with a capped backoff and
continues after the last entry it read. Redis is not trusted: entries are envelopes checked like any other.
Commands go through the lean client (``sidecar.resp``): one connection for sending, one for the blocking read.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from sidecar.peers.base import Envelope
from sidecar.peers.envelope import EnvelopeCodec
from sidecar.peers.inbox import Inbox
from sidecar.peers.outbox import Outbox
from sidecar.redis_client import REDIS_ERRORS
from sidecar.resp import RespClient

INBOX_MAXLEN = 10_000  # entries kept per inbox: seconds of traffic at full speed, more than a window when idle
READ_BATCH = 256
BLOCK_MS = 2_000
TRIM_EVERY = 30.0  # seconds between the reader's own trims of its inbox
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
ENTRY_FIELD = "e"

log = logging.getLogger(__name__)


def default_inbox_key(member: int) -> str:
    return f"dvm-sidecar:inbox:{member}"


class RedisTransport:
    def __init__(
        self,
        codec: EnvelopeCodec,
        inbox: Inbox,
        redis: aioredis.Redis,
        *,
        inbox_key: Callable[[int], str] = default_inbox_key,
    ) -> None:
        self._codec = codec
        self._inbox = inbox
        self._sender = RespClient.from_client(redis)
        self._reading = RespClient.from_client(redis)  # held by XREAD BLOCK: a connection of its own
        self._inbox_key = inbox_key
        self._reader: asyncio.Task[None] | None = None
        self._send_down = False
        self._outbox = Outbox(codec, self._deliver)

    async def start(self) -> None:
        if self._reader is None:
            await self._inbox.load()  # what a previous process took, before the replay window is read back
            self._reader = asyncio.create_task(self._read(), name=f"peer-inbox-{self._codec.directory.me}")

    async def stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await self._outbox.stop()
        try:
            await self._inbox.flush()
        finally:
            self._inbox.close()
            self._sender.close()
            self._reading.close()

    async def send(self, recipients: Sequence[int], payload: bytes) -> None:
        await self._outbox.send(recipients, payload)

    async def _deliver(self, recipient: int, events: list[str]) -> None:
        key = self._inbox_key(recipient)
        try:
            await self._sender.execute(
                [["XADD", key, "MAXLEN", "~", INBOX_MAXLEN, "*", ENTRY_FIELD, event] for event in events]
            )
        except REDIS_ERRORS as exc:
            if not self._send_down:
                log.warning("peer message to member %d not delivered: Redis unreachable (%s)", recipient, exc)
            self._send_down = True
            return
        self._send_down = False

    def messages(self) -> AsyncIterator[Envelope]:
        return self._inbox.messages()

    async def _read(self) -> None:
        key = self._inbox_key(self._codec.directory.me)
        last_id: str | bytes = f"{max(0, int((self._codec.clock() - self._codec.window) * 1000))}-0"
        backoff = BACKOFF_FIRST
        loop = asyncio.get_running_loop()
        next_trim = loop.time()
        down = False
        while True:
            try:
                if loop.time() >= next_trim:
                    await self._reading.call("XTRIM", key, "MAXLEN", "~", INBOX_MAXLEN)
                    next_trim = loop.time() + TRIM_EVERY
                batches = await self._reading.call(
                    "XREAD", "COUNT", READ_BATCH, "BLOCK", BLOCK_MS, "STREAMS", key, last_id
                )
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                if isinstance(exc, aioredis.TimeoutError) and not down:
                    continue  # a client socket timeout shorter than the block: not an outage
                if not down:
                    log.warning("peer inbox %s: Redis unreachable (%s); retrying", key, exc)
                down = True
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except Exception:  # a bug must not end this member's inbox for good
                log.exception("peer inbox %s: unexpected error; retrying", key)
                await asyncio.sleep(BACKOFF_MAX)
                continue
            if down:
                log.info("peer inbox %s: Redis reachable again", key)
                down, backoff = False, BACKOFF_FIRST
            last_id = await self._hand_over(batches, last_id)
            del batches  # not held while the next XREAD blocks: a batch may be megabytes of junk

    async def _hand_over(self, batches: Any, last_id: str | bytes) -> str | bytes:
        """Hand one XREAD answer (RESP2: [[stream, [[id, [field, value, ...]], ...]]]) to the inbox; the last entry
        id read. Whatever shape a stranger's entry has, it costs a counted rejection, not the reader."""
        for _stream, entries in batches or ():
            raws = []
            for entry_id, fields in entries:
                last_id = entry_id
                found = [v for f, v in zip(fields[::2], fields[1::2]) if f == ENTRY_FIELD.encode()] \
                    if isinstance(fields, list) else []
                if len(found) == 1 and isinstance(found[0], bytes):
                    raws.append(found[0])
                else:
                    self._inbox.reject("malformed", "a stream entry without one envelope field")
            await self._inbox.receive(raws)
        return last_id
