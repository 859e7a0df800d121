"""The ``nostr`` peer transport: envelopes as ephemeral events through relays, the default across organisations.

A ``RelayPool`` (``sidecar.nostr_client``) on the federation's relays sends each envelope to all of them and
subscribes to the peer-message kind addressed (``#p``) to this member, since one replay window ago (recomputed
on each connection). The pool reconnects to a relay that went away and places the subscription again, also
one the relay CLOSED, so no relay event ends delivery for good. A relay does not send a client its own
events back to it, so messages to this member itself are delivered locally. Relay messages over the size
limit are refused unparsed (``oversize``); the rest are checked by the envelope codec like on any transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from consensus.nip90 import MAX_EVENT_BYTES
from sidecar.nostr_client import RelayPool, event_id_of
from sidecar.peers.base import Envelope
from sidecar.peers.envelope import PEER_MESSAGE_KIND, EnvelopeCodec
from sidecar.peers.inbox import Inbox
from sidecar.peers.outbox import Outbox

CONNECT_WAIT = 5.0  # seconds start() waits for the relays before going on (the pool keeps trying after)

log = logging.getLogger(__name__)


class NostrTransport:
    def __init__(self, codec: EnvelopeCodec, inbox: Inbox, relays: Sequence[str]) -> None:
        if not relays:
            raise ValueError("the nostr peer transport needs at least one relay URL")
        self._codec = codec
        self._inbox = inbox
        self._subscription = f"dvm-peers-{codec.directory.me}"
        # The relays' own limit, not this member's (possibly lower) one: what lies between is counted as oversize.
        self._pool = RelayPool(relays, inbox.receive_events, on_rejected=self._relay_rejected,
                               max_message_bytes=MAX_EVENT_BYTES + 1024)
        self._started = False
        self._outbox = Outbox(codec, self._deliver)

    def _filters(self) -> list[dict[str, Any]]:
        since = max(0, int(self._codec.clock() - self._codec.window))
        return [{"kinds": [PEER_MESSAGE_KIND], "#p": [self._codec.directory.my_identity], "since": since}]

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self._inbox.load()  # what a previous process took, before anything arrives
        self._pool.subscribe(self._subscription, self._filters)
        if not await self._pool.start(CONNECT_WAIT):
            log.warning("no peer relay reachable yet; retrying in the background")

    async def stop(self) -> None:
        try:
            await self._outbox.stop()
        finally:  # also when this stop is cancelled (a slow stop timed out): no connection outlives it
            if self._started:
                self._started = False
                await self._pool.stop()
            try:
                await self._inbox.flush()
            finally:
                self._inbox.close()

    async def send(self, recipients: Sequence[int], payload: bytes) -> None:
        if not self._started:
            raise RuntimeError("the peer transport is not started")
        await self._outbox.send(recipients, payload)

    async def _deliver(self, recipient: int, events: list[str]) -> None:
        if recipient == self._codec.directory.me:
            await self._inbox.receive(events)
            return
        answers = await asyncio.gather(*(self._pool.publish(raw, event_id_of(raw)) for raw in events))
        for by_relay in answers:
            if not any(answer.accepted for answer in by_relay.values()):
                refusals = {url: answer.message for url, answer in by_relay.items()}
                log.warning("peer message to member %d taken by no relay: %s", recipient, refusals)

    def messages(self) -> AsyncIterator[Envelope]:
        return self._inbox.messages()

    def _relay_rejected(self, reason: str) -> None:
        self._inbox.reject(reason, "refused as it came from the relay")  # type: ignore[arg-type]
