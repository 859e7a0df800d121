"""The ``nostr`` peer transport: envelopes as ephemeral events through relays, the default across organisations.

One nostr-sdk ``Client`` on the federation's relays sends each envelope to all of them and subscribes to the
peer-message kind addressed (``#p``) to this member, since one replay window ago. nostr-sdk reconnects to a relay
that went away and then renews the subscription itself; what it does not renew is a subscription the relay
CLOSED (a relay that restarted half-way, a limit, a policy): a watch task checks every ``WATCH_EVERY`` seconds
that each relay still holds the subscription and renews it where it does not, so no relay event ends delivery
for good. A ``Client`` gets no notification for its own events: messages to this member itself are delivered
locally. nostr-sdk refuses a relay message over its size limit before parsing it (uncounted); the rest are
checked by the envelope codec like on any transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from nostr_sdk import (
    Client,
    ClientBuilder,
    ClientNotificationStream,
    Event,
    Filter,
    Kind,
    NostrSdkError,
    PublicKey,
    RelayLimits,
    RelayOptions,
    RelayUrl,
    ReqTarget,
    Timestamp,
)

from consensus.nip90 import MAX_EVENT_BYTES
from sidecar.peers.base import Envelope
from sidecar.peers.envelope import PEER_MESSAGE_KIND, EnvelopeCodec
from sidecar.peers.inbox import Inbox
from sidecar.peers.outbox import Outbox

CONNECT_WAIT = 5.0  # seconds start() waits for the relays before going on (nostr-sdk keeps trying after)
RETRY_INTERVAL = 5.0  # seconds between reconnection attempts to a relay that is down (nostr-sdk's minimum)
WATCH_EVERY = 5.0
NOTIFICATION_BUFFER = 4096  # nostr-sdk's default; past it the oldest are dropped if the reader falls behind

log = logging.getLogger(__name__)


class NostrTransport:
    def __init__(self, codec: EnvelopeCodec, inbox: Inbox, relays: Sequence[str]) -> None:
        if not relays:
            raise ValueError("the nostr peer transport needs at least one relay URL")
        try:
            self._relays = [RelayUrl.parse(url) for url in dict.fromkeys(relays)]
        except NostrSdkError as exc:
            raise ValueError(f"not a relay URL in {list(relays)!r}: {exc}") from None
        self._codec = codec
        self._inbox = inbox
        self._subscription = f"dvm-peers-{codec.directory.me}"
        self._client: Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox = Outbox(codec, self._deliver)

    def _filter(self) -> Filter:
        since = max(0, int(self._codec.clock() - self._codec.window))
        return (
            Filter()
            .kind(Kind(PEER_MESSAGE_KIND))
            .pubkey(PublicKey.parse(self._codec.directory.my_identity))
            .since(Timestamp.from_secs(since))
        )

    async def start(self) -> None:
        if self._client is not None:
            return
        # Relays' own limit, not this member's (possibly lower) one: what lies between is counted as oversize.
        client = (
            ClientBuilder()
            .relay_limits(RelayLimits().message_max_size(MAX_EVENT_BYTES + 1024).event_max_size(MAX_EVENT_BYTES))
            .notification_channel_size(NOTIFICATION_BUFFER)
            .build()
        )
        options = RelayOptions().retry_interval(timedelta(seconds=RETRY_INTERVAL)).adjust_retry_interval(False)
        for url in self._relays:
            await client.add_relay(url, opts=options)
        await client.connect(timedelta(seconds=CONNECT_WAIT))
        stream = client.notifications()  # before subscribing: the stream starts now
        self._client = client
        try:
            await client.subscribe(ReqTarget.auto([self._filter()]), id=self._subscription)
        except NostrSdkError as exc:  # no relay reachable yet: the watch subscribes once one is
            log.warning("peer subscription not placed yet (%s); retrying every %g s", exc, WATCH_EVERY)
        me = self._codec.directory.me
        self._tasks = [
            asyncio.create_task(self._pump(stream), name=f"peer-nostr-{me}"),
            asyncio.create_task(self._watch(client), name=f"peer-nostr-watch-{me}"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._outbox.stop()
        client, self._client = self._client, None
        if client is not None:
            await client.shutdown()
        self._inbox.close()

    async def send(self, recipients: Sequence[int], payload: bytes) -> None:
        if self._client is None:
            raise RuntimeError("the peer transport is not started")
        await self._outbox.send(recipients, payload)

    async def _deliver(self, recipient: int, events: list[str]) -> None:
        client = self._client
        if recipient == self._codec.directory.me or client is None:
            if client is not None:
                await self._inbox.receive(events)
            return
        results = await asyncio.gather(
            *(client.send_event(Event.from_json(raw)) for raw in events), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("peer message to member %d not sent: %s", recipient, result)
            elif not result.success:
                log.warning("peer message to member %d taken by no relay: %s", recipient, dict(result.failed))

    def messages(self) -> AsyncIterator[Envelope]:
        return self._inbox.messages()

    async def _pump(self, stream: ClientNotificationStream) -> None:
        while True:
            notification = await stream.next()
            if notification is None or notification.is_shutdown():
                return
            if notification.is_new_event():
                event: Event = notification.event  # type: ignore[attr-defined]
                try:
                    raw = event.as_json()
                except NostrSdkError:
                    self._inbox.reject("malformed", "nostr-sdk could not serialize the event")
                    continue
                await self._inbox.receive([raw], [event])

    async def _watch(self, client: Client) -> None:
        """Renew the subscription on any relay that no longer holds it (closed by the relay, or never placed)."""
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                relays = await client.relays()
                for url, relay in relays.items():
                    if self._subscription in await relay.subscriptions():
                        continue
                    log.info("peer subscription missing on %s; renewing it", url)
                    await client.subscribe(ReqTarget.single(url, [self._filter()]), id=self._subscription)
            except NostrSdkError as exc:
                log.debug("peer subscription check failed: %s", exc)
