"""Bad input from outside, through the real transports: malformed job requests (from a relay that checks
nothing) and forged, replayed, stale, oversized or garbled peer messages (on the relay and in the Redis inbox
streams). Each is counted under its reason and ignored, and a normal job still completes afterwards."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from nostr_sdk import Event, EventBuilder, Filter, Keys, Kind, PublicKey, ReqTarget, Tag, Timestamp

from consensus.nip90 import ENCRYPTED_TAG
from sidecar.local import KIND, LocalFederation
from sidecar.peers import PeerDirectory
from sidecar.peers.envelope import PEER_MESSAGE_KIND, EnvelopeCodec
from sidecar.relay import EventFeed, connect_client
from tests.e2e.conftest import StartFederation, eventually, metric
from tests.e2e.customer import Customer, assert_result
from tests.e2e.lax_relay import LaxRelay

REQUESTS_REJECTED = "dvm_sidecar_requests_rejected_total"
PEER_REJECTED = "dvm_sidecar_peer_messages_rejected_total"
MEMBERS = (1, 2, 3)


def rejected(local: LocalFederation, name: str, member: int) -> dict[str, float]:
    return {
        labels["reason"]: value
        for metric_family in local.sidecars[member].metrics.registry.collect()
        for sample_name, labels, value, *_ in metric_family.samples
        if sample_name == name
    }


def increase(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {reason: after[reason] - before.get(reason, 0.0) for reason in after if after[reason] != before.get(reason)}


def tampered_signature(event: Event) -> str:
    data = json.loads(event.as_json())
    data["sig"] = ("0" if data["sig"][0] != "0" else "1") + data["sig"][1:]
    return json.dumps(data)


async def completes_a_job(local: LocalFederation, customer: Customer, text: str) -> None:
    job = await customer.request(text)
    assert_result(await customer.outcome(job, timeout=30), job, local.group_pubkey)


async def test_malformed_requests_are_counted_and_ignored(
    start_federation: StartFederation, lax_relay: LaxRelay
) -> None:
    local = await start_federation(extra_relays=(lax_relay.url,))

    async def subscribed() -> bool:
        return lax_relay.subscribers(KIND) >= len(MEMBERS)

    assert await eventually(subscribed)
    async with Customer(local.public_url, local.group_pubkey) as customer:
        before = {m: rejected(local, REQUESTS_REJECTED, m) for m in MEMBERS}
        bad_input_type = customer.build("x", tags=[["i", "y", "no-such-type"]])
        bad_bid = customer.build("x", tags=[["bid", "lots"]])
        huge = customer.build("x", content="A" * (1 << 20))
        wrong_kind = customer.build("x", kind=KIND + 1)
        encrypted = customer.build("x", tags=[[ENCRYPTED_TAG]])
        hour_ago = Timestamp.from_secs(int(time.time()) - 3600)
        stale = EventBuilder(Kind(KIND), "").tags(
            [Tag.parse(["i", "x", "text"]), Tag.parse(["p", local.group_pubkey])]
        ).custom_created_at(hour_ago).finalize(customer.keys)
        bad_signature = customer.build("signed by someone else")
        for event in (bad_input_type, bad_bid, huge, wrong_kind, encrypted, stale):
            assert await lax_relay.inject(event.as_json(), kind=KIND) == len(MEMBERS)
        # A forged signature and something that is not an event: counted as malformed too.
        await lax_relay.inject(tampered_signature(bad_signature), kind=KIND)
        await lax_relay.inject('{"id": "not an event"}', kind=KIND)

        expected = {"malformed": 4.0, "oversize": 1.0, "wrong_kind": 1.0, "encrypted": 1.0, "stale": 1.0}

        async def all_counted() -> bool:
            return all(increase(before[m], rejected(local, REQUESTS_REJECTED, m)) == expected for m in MEMBERS)

        assert await eventually(all_counted), [increase(before[m], rejected(local, REQUESTS_REJECTED, m)) for m in MEMBERS]
        # The service keeps working; a request that came by both relays is one job (the relay pool passes on
        # the first copy only).
        job = await customer.request("after the junk")
        await lax_relay.inject(job.request.as_json(), kind=KIND)
        assert_result(await customer.outcome(job, timeout=30), job, local.group_pubkey)
        assert await all_counted()
        for event in (bad_input_type, huge, wrong_kind, stale, bad_signature):
            for sidecar in local.sidecars.values():
                assert await sidecar.store.load_job(event.id().to_hex()) is None
        for m in MEMBERS:
            assert metric(local, m, "dvm_sidecar_requests_seen_total", kind=str(KIND)) == 1
        assert len(await customer.stored(job)) == 1
        customer.check_all_federation()


def sealed(codec: EnvelopeCodec, recipient: int, payload: bytes) -> str:
    """One envelope carrying ``payload`` to ``recipient``, as the event's JSON."""
    return codec.seal(recipient, [codec.prepare(recipient, payload)])[0]


def codec_for(local: LocalFederation, member: int, *, keys: Keys | None = None, skew: float = 0.0) -> EnvelopeCodec:
    """Seals envelopes as ``member`` (with ``keys`` standing in for its identity: a stranger), ``skew``
    seconds off the clock."""
    identities = {m: k.public_key().to_hex() for m, k in local.identities.items()}
    keys = keys or local.identities[member]
    identities[member] = keys.public_key().to_hex()
    return EnvelopeCodec(PeerDirectory(member, identities), keys, clock=lambda: time.time() + skew)


async def test_forged_replayed_and_oversized_peer_messages_on_the_relay(start_federation: StartFederation) -> None:
    local = await start_federation(transport="nostr")
    target = 2
    spy = await connect_client(local.public_url)
    feed = EventFeed(spy)
    me = PublicKey.parse(local.identities[target].public_key().to_hex())
    await spy.subscribe(ReqTarget.auto([Filter().kind(Kind(PEER_MESSAGE_KIND)).pubkey(me)]))
    try:
        async with Customer(local.public_url, local.group_pubkey) as customer:
            await completes_a_job(local, customer, "a job whose messages are captured")
            async with asyncio.timeout(10):
                captured = await feed.next()
            assert captured is not None
            # A new process: its nostr-sdk client has not seen the captured event (a client passes on each
            # event id once), so only the replay record in Redis can refuse it.
            await local.stop_member(target)
            await local.start_member(target)
            before = rejected(local, PEER_REJECTED, target)
            invalid_before = metric(local, target, "dvm_sidecar_invalid_contributions_total", peer="1")

            stranger = Keys.generate()
            forged = sealed(codec_for(local, 1, keys=stranger), target, b'{"type":"done"}')
            # Dated in the future: the relay itself drops one dated before the subscription's ``since``.
            stale = sealed(codec_for(local, 1, skew=3600), target, b'{"type":"done"}')
            garbled = sealed(codec_for(local, 1), target, b'{"not": "a quorum message"}')
            oversized = EventBuilder(Kind(PEER_MESSAGE_KIND), "x" * 60_000).tags(
                [Tag.parse(["p", me.to_hex()])]
            ).finalize(stranger)
            for raw in (forged, stale, garbled):
                assert (await spy.send_event(Event.from_json(raw))).success
            for event in (oversized, captured):  # the captured one again: a replay after the restart
                assert (await spy.send_event(event)).success
            expected = {"unknown_author": 1.0, "stale": 1.0, "malformed": 1.0, "oversize": 1.0, "replay": 1.0}

            async def all_counted() -> bool:
                return increase(before, rejected(local, PEER_REJECTED, target)) == expected

            assert await eventually(all_counted), increase(before, rejected(local, PEER_REJECTED, target))
            # The garbled one was authenticated: its sender is blamed.
            assert metric(local, target, "dvm_sidecar_invalid_contributions_total", peer="1") == invalid_before + 1
            await completes_a_job(local, customer, "after the forgeries")
            customer.check_all_federation()
    finally:
        await spy.shutdown()


async def test_junk_forged_and_replayed_entries_in_the_redis_inboxes(start_federation: StartFederation) -> None:
    local = await start_federation(transport="redis")
    target = 2
    inbox = local.sidecars[target].store.keys.inbox(target)
    redis = local.sidecars[1].redis
    async with Customer(local.public_url, local.group_pubkey) as customer:
        await completes_a_job(local, customer, "a job whose messages are captured")
        entries = await redis.xrange(inbox)
        assert entries
        captured = entries[-1][1]
        before = rejected(local, PEER_REJECTED, target)

        fresh = json.loads(sealed(codec_for(local, 1), target, b'{"type":"done"}'))
        fresh["sig"] = ("0" if fresh["sig"][0] != "0" else "1") + fresh["sig"][1:]
        junk: list[Any] = [
            {"e": "not json at all"},
            {"e": "A" * (1 << 20)},
            {"other": "no envelope field"},
            {"e": sealed(codec_for(local, 1, keys=Keys.generate()), target, b"{\"type\":\"done\"}")},
            {"e": sealed(codec_for(local, 3, skew=-3600), target, b'{"type":"done"}')},
            {"e": json.dumps(fresh)},
            captured,  # a replay
        ]
        for fields in junk:
            await redis.xadd(inbox, fields)
        expected = {"malformed": 2.0, "oversize": 1.0, "unknown_author": 1.0, "stale": 1.0, "bad_signature": 1.0,
                    "replay": 1.0}

        async def all_counted() -> bool:
            return increase(before, rejected(local, PEER_REJECTED, target)) == expected

        assert await eventually(all_counted), increase(before, rejected(local, PEER_REJECTED, target))
        await completes_a_job(local, customer, "after the junk")
        customer.check_all_federation()
