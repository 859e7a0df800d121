"""The public side: job requests in from the federation's relays, co-signed events out through the outbox.

Intake refuses, and counts, what is not a job for this federation: oversize or malformed events, bad
signatures, kinds not served, encrypted requests (not supported yet), requests too old or dated in the future,
requests addressed elsewhere, and duplicates (the store's dedupe survives restarts and lasts until the request
is too old anyway). A request's claim waits out a Redis outage rather than dropping the request. Publication
goes through the Redis outbox: an event stays there, retried with backoff, until every relay took it (or enough
tries ended with at least one relay holding it), and the relays that accepted it are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import redis
from nostr_sdk import Client, Event, Filter, Kind, PublicKey, RelayStatus, RelayUrl, ReqTarget, Timestamp

from consensus.nip90 import MAX_EVENT_BYTES, JobRequest, NostrEvent, parse_job_request
from sidecar.metrics import Metrics
from sidecar.relay import EventFeed, publish
from sidecar.store import RedisWait, Store

log = logging.getLogger("dvm_sidecar.public")

MAX_REQUEST_AGE = 900.0  # seconds, by default; older requests are stale (clients stop listening long before)
MAX_CLOCK_SKEW = 300.0  # seconds a request may be dated in the future
GIVE_UP_ATTEMPTS = 10  # after this many rounds an event some relay holds leaves the outbox


class PublicSide:
    def __init__(
        self,
        *,
        relays: Sequence[str],
        group_pubkey: str,
        kinds: Sequence[int],
        accept_unaddressed: bool,
        store: Store,
        metrics: Metrics,
        on_request: Callable[[JobRequest], Awaitable[None]],
        clock: Callable[[], float] = time.time,
        max_request_age: float = MAX_REQUEST_AGE,
    ) -> None:
        if not max_request_age > 0:
            raise ValueError(f"max_request_age={max_request_age!r}: must be a positive number of seconds")
        self.relays = tuple(relays)
        self.group_pubkey = group_pubkey
        self.kinds = tuple(kinds)
        self.accept_unaddressed = accept_unaddressed
        self.store = store
        self.metrics = metrics
        self.on_request = on_request
        self.clock = clock
        self.max_request_age = max_request_age
        self._stored = RedisWait(metrics.redis_error, "request intake")
        self.client = Client()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._labels: dict[str, str] = {}

    async def start(self) -> None:
        for url in self.relays:
            parsed = RelayUrl.parse(url)
            self._labels[str(parsed)] = url
            await self.client.add_relay(parsed)
        await self.client.connect(timedelta(seconds=5))
        feed = EventFeed(self.client)
        query = Filter().kinds([Kind(k) for k in self.kinds]).since(Timestamp.from_secs(int(self.clock() - self.max_request_age)))
        if not self.accept_unaddressed:
            query = query.pubkey(PublicKey.parse(self.group_pubkey))
        await self.client.subscribe(ReqTarget.auto([query]))
        self._tasks += [
            asyncio.create_task(self._intake(feed)),
            asyncio.create_task(self._publisher()),
            asyncio.create_task(self._watch_relays()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.shutdown()

    def wake(self) -> None:
        """A new event is in the outbox: publish now rather than at the next poll."""
        self._wake.set()

    async def connected(self) -> int:
        relays = await self.client.relays()
        return sum(1 for relay in relays.values() if relay.status() == RelayStatus.CONNECTED)

    # --- intake ---

    async def _intake(self, feed: EventFeed) -> None:
        async for sdk_event in feed:
            try:
                await self._accept(sdk_event)
            except redis.RedisError:
                self.metrics.redis_error()
                log.exception("request intake: Redis error")

    async def _accept(self, sdk_event: Event) -> None:
        reject = self.metrics.request_rejected
        raw = sdk_event.as_json()
        if len(raw.encode("utf-8", "surrogatepass")) > MAX_EVENT_BYTES:
            reject("oversize")  # measured, not read from an error message's wording
            return
        try:
            event = NostrEvent.from_json(raw, max_bytes=MAX_EVENT_BYTES)
        except ValueError:
            reject("malformed")
            return
        if event.kind not in self.kinds:
            reject("wrong_kind")
            return
        if not sdk_event.verify():
            reject("malformed")
            return
        try:
            request = parse_job_request(event)
        except ValueError as exc:
            log.info("request %s refused: %s", event.id, exc)
            reject("malformed")
            return
        if request.encrypted:
            log.info("request %s is encrypted: not supported yet, skipped", event.id)
            reject("encrypted")
            return
        now = self.clock()
        if not now - self.max_request_age <= event.created_at <= now + MAX_CLOCK_SKEW:
            reject("stale")
            return
        if not self._addressed(request):
            reject("unaddressed")
            return
        # Remembered until the request would be refused as stale anyway; claimed even if Redis is briefly away
        # (a request dropped then would never come back: the relay sent it once).
        remember, token = event.created_at + self.max_request_age - now + 1.0, os.urandom(8).hex()
        if not await self._stored(lambda: self.store.claim_request(event.id, ttl=remember, token=token)):
            reject("duplicate")
            return
        self.metrics.request_seen(event.kind)
        await self.on_request(request)

    def _addressed(self, request: JobRequest) -> bool:
        if self.group_pubkey in request.service_providers:
            return True
        return self.accept_unaddressed and not request.service_providers

    # --- publication ---

    async def _publisher(self) -> None:
        while True:
            try:
                await self._publish_due()
            except redis.RedisError:
                self.metrics.redis_error()
                log.exception("outbox: Redis error")
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that arrives as
            # the wake is set, and stop() would then wait for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()

    async def _publish_due(self) -> None:
        items = await self.store.due(self.clock())
        for item in items:
            event = NostrEvent.from_json(item.event_json)
            try:
                output = await publish(self.client, event)
                accepted = {self._label(str(url)) for url in output.success}
                failed = {self._label(str(url)): str(err) for url, err in output.failed.items()}
            except Exception as exc:  # nostr-sdk raises its own errors when no relay is reachable
                accepted, failed = set(), {url: str(exc) for url in self.relays}
            already = await self.store.accepted_relays(item.event_id)
            if accepted and not already:  # the first relay to hold it: the job is out
                self.metrics.observe_phase("publishing", max(0.0, self.clock() - item.first_enqueued))
            missing = [url for url in self.relays if url not in accepted and url not in already]
            done = not missing or (item.attempts + 1 >= GIVE_UP_ATTEMPTS and (accepted or already))
            next_attempt = None if done else self.clock() + min(60.0, 2.0 ** item.attempts)
            for url in self.relays:
                if url in accepted:
                    self.metrics.relay_published(url, "accepted")
                elif url in failed:
                    self.metrics.relay_published(url, "rejected" if "rejected" in failed[url].lower() else "error")
            for url in self.relays:
                await self.store.record_publish(
                    item.event_id, url, url in accepted, now=self.clock(), next_attempt=next_attempt
                )
        self.metrics.set_outbox_depth(await self.store.outbox_depth())

    def _label(self, url: str) -> str:
        return self._labels.get(url, self._labels.get(url.rstrip("/"), url))

    async def _watch_relays(self) -> None:
        while True:
            relays = await self.client.relays()
            for url, relay in relays.items():
                label = self._label(str(url))
                if label in self.relays:
                    self.metrics.set_relay_connected(label, relay.status() == RelayStatus.CONNECTED)
            await asyncio.sleep(2.0)
