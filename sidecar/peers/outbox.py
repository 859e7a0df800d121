"""The sending half every transport shares: per recipient, one envelope in flight, and what queues meanwhile
goes together in the next one.

Rules: ``send`` checks the payload at once (``ValueError`` for a caller's mistake) and returns when the envelope
holding it has been handed to the transport (or failed, which is logged: delivery is best effort). Nothing
waits on purpose: an idle recipient gets each message in its own envelope immediately; under load, messages
that arrive while an envelope is on its way share the next (up to ``MAX_BATCH`` and one event's size), so the
cost per message falls as the load rises. Order per recipient is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sidecar.peers.envelope import MAX_BATCH, EnvelopeCodec, Prepared

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Queued:
    message: Prepared
    sent: asyncio.Future[None]


class Outbox:
    def __init__(self, codec: EnvelopeCodec, deliver: Callable[[int, list[str]], Awaitable[None]]) -> None:
        """``deliver(recipient, events)`` hands sealed events to the transport; it logs its own failures."""
        self._codec = codec
        self._deliver = deliver
        self._queues: dict[int, deque[_Queued]] = {}
        self._flushers: dict[int, asyncio.Task[None]] = {}

    async def send(self, recipients: Sequence[int], payload: bytes) -> None:
        members = list(dict.fromkeys(recipients))
        prepared = [self._codec.prepare(member, payload) for member in members]  # all checked before any is queued
        loop = asyncio.get_running_loop()
        waits = []
        for member, message in zip(members, prepared):
            queued = _Queued(message, loop.create_future())
            self._queues.setdefault(member, deque()).append(queued)
            waits.append(queued.sent)
            if member not in self._flushers:
                self._flushers[member] = asyncio.create_task(self._flush(member), name=f"peer-outbox-{member}")
        await asyncio.gather(*waits)

    async def _flush(self, recipient: int) -> None:
        queue = self._queues[recipient]
        limit = self._codec.event_text_limit
        try:
            while queue:
                batch = [queue.popleft()]
                size = batch[0].message.size + 2  # as EnvelopeCodec.batch_fits counts: items, commas, brackets
                while queue and len(batch) < MAX_BATCH and size + queue[0].message.size + 1 <= limit:
                    size += queue[0].message.size + 1
                    batch.append(queue.popleft())
                try:
                    events = self._codec.seal(recipient, [queued.message for queued in batch])
                    await self._deliver(recipient, events)
                except Exception:  # a failure costs these messages, never the outbox
                    log.exception("peer messages to member %d not sent", recipient)
                finally:
                    for queued in batch:
                        if not queued.sent.done():
                            queued.sent.set_result(None)
        finally:
            del self._flushers[recipient]
            for queued in queue:  # cancelled (stop): release whoever waits
                if not queued.sent.done():
                    queued.sent.set_result(None)
            queue.clear()

    async def stop(self) -> None:
        flushers = list(self._flushers.values())
        for task in flushers:
            task.cancel()
        await asyncio.gather(*flushers, return_exceptions=True)
