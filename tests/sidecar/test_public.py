"""The public side: the requests a relay hands over together are claimed in one round trip; an event just put in
the outbox goes out at once, and what that first round does not deliver stays due for the outbox's poll. A real
relay, a real Redis, events checked with nostr-sdk."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from nostr_sdk import Filter, Keys, Kind, ReqTarget

from consensus.nip90 import JobRequest, UnsignedEvent
from sidecar import public
from sidecar.metrics import Metrics
from sidecar.public import PublicSide
from sidecar.relay import EmbeddedRelay, EventFeed, connect_client, free_port, verify
from sidecar.schnorr import Signer
from sidecar.store import Store

KIND = 6050


async def nothing(_request: object) -> None:
    raise AssertionError("no request is expected here")


def make_public(url: str, redis_client: aioredis.Redis, **options: float) -> tuple[PublicSide, Store, Metrics]:
    store = Store(redis_client, namespace="pub", member=1, job_ttl=60.0)
    metrics = Metrics(members=(1, 2, 3), relays=(url,), kinds=(5050,), version="test")
    side = PublicSide(relays=(url,), group_pubkey="ab" * 32, kinds=(5050,), accept_unaddressed=False,
                      store=store, metrics=metrics, on_request=nothing, **options)
    return side, store, metrics


def accepted(metrics: Metrics, url: str) -> float:
    value = metrics.registry.get_sample_value(
        "dvm_sidecar_relay_publish_total", {"relay": url, "result": "accepted"}
    )
    return value or 0.0


@pytest.fixture
async def relay() -> AsyncIterator[EmbeddedRelay]:
    async with EmbeddedRelay() as running:
        yield running


@pytest.fixture
def no_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox's poll comes only at start: anything published later was published by publish_now."""
    monkeypatch.setattr(public, "POLL_EVERY", 3600.0)


class CountingStore(Store):
    claim_calls = 0

    async def claim_requests(self, claims):  # type: ignore[no-untyped-def]
        self.claim_calls += 1
        return await super().claim_requests(claims)


async def test_the_requests_of_one_batch_are_claimed_together(redis_client: aioredis.Redis) -> None:
    group = "ab" * 32
    store = CountingStore(redis_client, namespace="pub", member=1)
    metrics = Metrics(members=(1, 2, 3), relays=("ws://127.0.0.1:1",), kinds=(5050,), version="test")
    seen: list[str] = []

    async def on_request(request: JobRequest) -> None:
        seen.append(request.event.id)

    side = PublicSide(relays=("ws://127.0.0.1:1",), group_pubkey=group, kinds=(5050,), accept_unaddressed=False,
                      store=store, metrics=metrics, on_request=on_request)
    customer = Signer(Keys.generate())
    now = int(time.time())
    requests = [customer.sign_event(UnsignedEvent(customer.pubkey, now, 5050,
                                                  (("i", f"job {n}", "text"), ("p", group)), ""))
                for n in range(3)]
    wrong_kind = customer.sign_event(UnsignedEvent(customer.pubkey, now, 5051, (("p", group),), ""))
    batch = [(json.loads(e.to_json()), len(e.to_json())) for e in [*requests, requests[0], wrong_kind]]
    await side._intake(batch)
    assert seen == [e.id for e in requests] and store.claim_calls == 1
    await side._intake(batch[:1])  # a relay sending it again later
    assert seen == [e.id for e in requests]

    def rejected(reason: str) -> float:
        value = metrics.registry.get_sample_value("dvm_sidecar_requests_rejected_total", {"reason": reason})
        return value or 0.0

    assert rejected("duplicate") == 2 and rejected("wrong_kind") == 1


async def test_a_claim_left_without_a_job_by_a_stopped_process_is_taken_over(redis_client: aioredis.Redis) -> None:
    """Killed between a request's claim and its job's first save, a process leaves a claim and no job: the
    next process takes that request again, and only that one."""
    group = "ab" * 32
    customer = Signer(Keys.generate())
    now = int(time.time())
    unsaved, saved, fresh, forgotten, heard_of = [
        customer.sign_event(UnsignedEvent(customer.pubkey, now, 5050, (("i", f"job {n}", "text"), ("p", group)), ""))
        for n in range(5)
    ]
    seen: list[str] = []

    async def on_request(request: JobRequest) -> None:
        seen.append(request.event.id)

    def new_process(store: Store) -> tuple[PublicSide, Metrics]:
        metrics = Metrics(members=(1, 2, 3), relays=("ws://127.0.0.1:1",), kinds=(5050,), version="test")
        side = PublicSide(relays=("ws://127.0.0.1:1",), group_pubkey=group, kinds=(5050,),
                          accept_unaddressed=False, store=store, metrics=metrics, on_request=on_request)
        return side, metrics

    def duplicates(metrics: Metrics) -> float:
        value = metrics.registry.get_sample_value("dvm_sidecar_requests_rejected_total", {"reason": "duplicate"})
        return value or 0.0

    def relayed(*events: object) -> list[tuple[dict[str, object], int]]:
        return [(json.loads(e.to_json()), len(e.to_json())) for e in events]  # type: ignore[attr-defined]

    store = Store(redis_client, namespace="pub-retake", member=1)  # finished jobs kept an hour
    for event in (unsaved, saved, forgotten, heard_of):
        assert await store.claim_request(event.id, 600, token="the stopped process")
    await store.save_job(saved.id, b"{}", phase="running", updated_at=1.0)
    await store.save_job(heard_of.id, b"{}", phase="pending", updated_at=1.0)  # from peers' announces only

    side, metrics = new_process(store)
    await side._intake(relayed(unsaved, saved, fresh, heard_of))
    assert seen == [unsaved.id, fresh.id, heard_of.id] and duplicates(metrics) == 1
    await side._intake(relayed(unsaved, fresh))  # from a second relay, their jobs not saved yet
    assert seen == [unsaved.id, fresh.id, heard_of.id] and duplicates(metrics) == 3

    # Finished jobs forgotten before their requests are stale: no job may mean "finished long ago", so a
    # claim is never taken over.
    side, metrics = new_process(Store(redis_client, namespace="pub-retake", member=1, job_ttl=60.0))
    await side._intake(relayed(forgotten))
    assert seen == [unsaved.id, fresh.id, heard_of.id] and duplicates(metrics) == 1


async def test_an_event_just_enqueued_is_published_without_waiting_for_the_poll(
    relay: EmbeddedRelay, redis_client: aioredis.Redis, no_poll: None
) -> None:
    keys = Keys.generate()
    event = Signer(keys).sign_event(UnsignedEvent(keys.public_key().to_hex(), 1_700_000_000, KIND, (), "result"))
    listener = await connect_client(relay.url)
    feed = EventFeed(listener)
    await listener.subscribe(ReqTarget.auto([Filter().kind(Kind(KIND))]))
    side, store, metrics = make_public(relay.url, redis_client)
    await side.start()
    try:
        await asyncio.sleep(0.1)  # the start's poll has run, on an empty outbox
        await store.enqueue([(event.id, event.to_json())], now=1.0)
        side.publish_now(event.id, event.to_json(), 1.0)
        seen = await feed.next(timeout=10.0)
        assert seen is not None and seen.id().to_hex() == event.id and verify(seen)
        async with asyncio.timeout(10.0):
            while await store.due(1e12):  # recorded as delivered: nothing left for the poll
                await asyncio.sleep(0.02)
        assert await store.accepted_relays(event.id) == {relay.url}
        side.publish_now(event.id, event.to_json(), 1.0)  # an event already delivered is only sent again
        await asyncio.sleep(0.2)
        assert accepted(metrics, relay.url) == 2
        assert await store.due(1e12) == []
    finally:
        await side.stop()
        await listener.shutdown()


async def test_what_the_first_round_does_not_deliver_stays_due(
    redis_client: aioredis.Redis, no_poll: None
) -> None:
    url = f"ws://127.0.0.1:{free_port()}"  # no relay there
    keys = Keys.generate()
    event = Signer(keys).sign_event(UnsignedEvent(keys.public_key().to_hex(), 1_700_000_000, KIND, (), "late"))
    side, store, metrics = make_public(url, redis_client, publish_timeout=0.3)
    await side.start()
    try:
        await store.enqueue([(event.id, event.to_json())], now=1.0)
        side.publish_now(event.id, event.to_json(), 1.0)
        async with asyncio.timeout(10.0):
            while not (items := await store.due(1e12)) or items[0].attempts == 0:
                await asyncio.sleep(0.05)
        assert [item.event_id for item in items] == [event.id]  # rescheduled for the poll, not dropped
        assert await store.accepted_relays(event.id) == set()
        assert accepted(metrics, url) == 0
    finally:
        await side.stop()
