"""The public side: job requests in from the federation's relays, co-signed events out through the outbox.

Intake refuses, and counts, what is not a job for this federation: oversize or malformed events, bad
signatures, kinds not served, encrypted requests (not supported yet), requests too old or dated in the future,
requests addressed elsewhere, and duplicates (the store's dedupe survives restarts and lasts until the request
is too old anyway). A request's claim waits out a Redis outage rather than dropping the request; a claim that
an earlier process made but died before saving the job for is taken over, so no kill loses a request. Publication
goes through the Redis outbox: an event stays there, retried with backoff, until every relay took it (or enough
tries ended with at least one relay holding it), and the relays that accepted it are recorded. An event the
runner has just put there is published at once from memory (``publish_now``), without waiting for the
outbox's next read: the poll is for retries and for what a previous process left behind, and it skips an
event while a publication of it is under way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis

from consensus.nip90 import MAX_EVENT_BYTES, JobRequest, NostrEvent, parse_job_request
from sidecar.metrics import Metrics, PublishResult
from sidecar.nostr_client import PUBLISH_TIMEOUT, Received, RelayPool, signature_valid
from sidecar.redis_client import RedisWait, cancelling
from sidecar.store import Claim, OutboxItem, Store

log = logging.getLogger("dvm_sidecar.public")

MAX_REQUEST_AGE = 900.0  # seconds, by default; older requests are stale (clients stop listening long before)
MAX_CLOCK_SKEW = 300.0  # seconds a request may be dated in the future
POLL_EVERY = 1.0  # seconds between looks at the outbox when nothing wakes the publisher
GIVE_UP_ATTEMPTS = 10  # after this many rounds an event some relay holds leaves the outbox
SUBSCRIPTION = "dvm-requests"
TAKEN_MEMORY = 16_384  # request ids this process took, newest last: more than can wait for their first save
_WRAPPER = len(f'["EVENT","{SUBSCRIPTION}",]')  # what a relay message adds around the event


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
        publish_timeout: float = PUBLISH_TIMEOUT,
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
        self.publish_timeout = publish_timeout  # seconds a relay has to answer a publication
        self._stored = RedisWait(metrics.redis_error, "request intake")
        # A claim with no job behind it was left by a process that stopped between the claim and the job's
        # first save: that request is taken again. Only if a saved job's record outlives every claim (then
        # "no job" means "never saved", not "finished and forgotten"), and never for a request this process
        # took itself (the same request from a second relay while its job is not saved yet).
        self._retake = store.job_ttl >= max_request_age + MAX_CLOCK_SKEW + 1.0
        self._taken: OrderedDict[str, None] = OrderedDict()
        self.pool = RelayPool(self.relays, self._intake, on_rejected=self._refused,
                              max_message_bytes=MAX_EVENT_BYTES + _WRAPPER)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._publishing: set[str] = set()  # event ids with a publication under way
        self._fresh: set[asyncio.Task[None]] = set()  # publish_now's tasks

    def _filters(self) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"kinds": list(self.kinds), "since": max(0, int(self.clock() - self.max_request_age))}
        if not self.accept_unaddressed:
            query["#p"] = [self.group_pubkey]
        return [query]

    async def start(self) -> None:
        self.pool.subscribe(SUBSCRIPTION, self._filters)
        if not await self.pool.start():
            log.warning("no public relay reachable yet; retrying in the background")
        self._tasks += [asyncio.create_task(self._publisher()), asyncio.create_task(self._watch_relays())]

    async def stop(self) -> None:
        try:
            tasks = [*self._tasks, *self._fresh]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:  # also when this stop is cancelled (a slow stop timed out): no connection outlives it
            await self.pool.stop()

    def publish_now(self, event_id: str, event_json: str, enqueued_at: float) -> None:
        """An event has just been put in the outbox (durably): publish it now, in a task of its own. Whatever
        this first round does not deliver stays due in the outbox, and the poll retries it."""
        if event_id in self._publishing:
            return
        # Nothing is recorded yet for an event just enqueued: no relay to read back before publishing.
        item = OutboxItem(event_id, event_json, attempts=0, first_enqueued=enqueued_at)
        task = asyncio.create_task(self._publish_fresh(item))
        self._fresh.add(task)
        task.add_done_callback(self._fresh.discard)

    async def connected(self) -> int:
        return self.pool.connected()

    # --- intake ---

    def _refused(self, reason: str) -> None:
        """A relay message refused before it was read as an event: too big, not a relay message, or arriving
        while the intake's buffer is full (``overflow``)."""
        if reason == "oversize":
            self.metrics.request_rejected("oversize")
        elif reason == "overflow":
            self.metrics.request_rejected("overflow")
        else:
            self.metrics.request_rejected("malformed")

    async def _intake(self, batch: list[Received]) -> None:
        """The requests a relay handed over together are checked, then claimed in one round trip."""
        now = self.clock()
        requests = [request for data, size in batch if (request := self._check(data, size, now)) is not None]
        if not requests:
            return
        # Remembered until the request would be refused as stale anyway; claimed even if Redis is briefly away
        # (a request dropped then would never come back: the relay sent it once).
        claims = [(r.event.id, r.event.created_at + self.max_request_age - now + 1.0, os.urandom(8).hex())
                  for r in requests]
        try:
            claimed = await self._stored(lambda: self.store.claim_requests(claims))
        except redis.RedisError:
            self.metrics.redis_error()
            log.exception("request intake: Redis error")
            return
        for request, claim in zip(requests, claimed):
            job_id = request.event.id
            if claim is Claim.UNSAVED and self._retake and job_id not in self._taken:
                log.info("request %s: claimed by an earlier process that stopped before saving the job; "
                         "taken again", job_id)
            elif claim is not Claim.FIRST:
                self.metrics.request_rejected("duplicate")
                continue
            self._taken[job_id] = None
            while len(self._taken) > TAKEN_MEMORY:
                self._taken.popitem(last=False)
            self.metrics.request_seen(request.kind)
            await self.on_request(request)

    def _check(self, data: dict[str, Any], size: int, now: float) -> JobRequest | None:
        """The job request in a relay's event, or None (counted) if it is none for this federation."""
        reject = self.metrics.request_rejected
        if size - _WRAPPER > MAX_EVENT_BYTES:
            reject("oversize")
            return None
        try:
            event = NostrEvent.from_dict(data)
        except ValueError:
            reject("malformed")
            return None
        if event.kind not in self.kinds:
            reject("wrong_kind")
            return None
        if not signature_valid(event):
            reject("malformed")
            return None
        try:
            request = parse_job_request(event)
        except ValueError as exc:
            log.info("request %s refused: %s", event.id, exc)
            reject("malformed")
            return None
        if request.encrypted:
            log.info("request %s is encrypted: not supported yet, skipped", event.id)
            reject("encrypted")
            return None
        if not now - self.max_request_age <= event.created_at <= now + MAX_CLOCK_SKEW:
            reject("stale")
            return None
        if not self._addressed(request):
            reject("unaddressed")
            return None
        return request

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
                if cancelling():  # redis-py may report a cancelled command as a connection error
                    raise asyncio.CancelledError from None
                self.metrics.redis_error()
                log.exception("outbox: Redis error")
            # A timer that wakes the loop, not a timeout around the wait: Python 3.11's wait_for swallows a
            # cancellation that meets the wake, and stop() then waits for this loop forever.
            poll = asyncio.get_running_loop().call_later(POLL_EVERY, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                poll.cancel()
            self._wake.clear()

    async def _publish_due(self) -> None:
        items = await self.store.due(self.clock())
        for item in items:
            if item.event_id not in self._publishing:  # publish_now has it in hand
                await self._publish(item, await self.store.accepted_relays(item.event_id))
        self.metrics.set_outbox_depth(await self.store.outbox_depth())

    async def _publish_fresh(self, item: OutboxItem) -> None:
        try:
            await self._publish(item, set())
        except redis.RedisError:
            if cancelling():
                raise asyncio.CancelledError from None
            self.metrics.redis_error()  # the event is still due in the outbox: the poll publishes it again
            log.exception("outbox: Redis error while recording event %s", item.event_id)

    async def _publish(self, item: OutboxItem, already: set[str]) -> None:
        """One publication round of one event to every relay, and its record in the outbox."""
        self._publishing.add(item.event_id)
        try:
            answers = await self.pool.publish(item.event_json, item.event_id, self.publish_timeout)
            accepted = {url for url, answer in answers.items() if answer.accepted}
            if accepted and not already:  # the first relay to hold it: the job is out
                self.metrics.observe_phase("publishing", max(0.0, self.clock() - item.first_enqueued))
            missing = [url for url in self.relays if url not in accepted and url not in already]
            done = not missing or (item.attempts + 1 >= GIVE_UP_ATTEMPTS and (accepted or already))
            next_attempt = None if done else self.clock() + min(60.0, 2.0 ** item.attempts)
            for url, answer in answers.items():
                outcome: PublishResult = "accepted" if answer.accepted else "rejected" if answer.answered else "error"
                self.metrics.relay_published(url, outcome)
                if not answer.accepted:
                    log.info("event %s not taken by %s: %.200s", item.event_id, url, answer.message)
            for url in self.relays:
                await self.store.record_publish(
                    item.event_id, url, url in accepted, now=self.clock(), next_attempt=next_attempt
                )
        finally:
            self._publishing.discard(item.event_id)

    async def _watch_relays(self) -> None:
        while True:
            for relay in self.pool.relays:
                self.metrics.set_relay_connected(relay.url, relay.connected)
            await asyncio.sleep(2.0)
