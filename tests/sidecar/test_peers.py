"""Peer transports on a real relay (nostr-sdk LocalRelay on 127.0.0.1) and a real Redis: delivery among three
members, every kind of forged or stale envelope refused with its reason while delivery goes on, a junk flood
survived with bounded memory, and a relay restart and a Redis restart survived."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from nostr_sdk import Event, Keys, LocalRelayBuilder, Nip44Version, RateLimit, nip44_decrypt, nip44_encrypt

from consensus.jsontext import dumps_compact
from consensus.nip90 import MAX_EVENT_BYTES, UnsignedEvent
from sidecar.metrics import PEER_REJECT_REASONS
from sidecar.peers import (
    PEER_MESSAGE_KIND,
    REJECTION_REASONS,
    Envelope,
    PeerDirectory,
    PeerTransport,
    make_transport,
)
from sidecar.peers.envelope import EVENT_OVERHEAD, EnvelopeCodec, Rejected
from sidecar.peers.redis_transport import INBOX_MAXLEN, default_inbox_key
from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay, connect_client, free_port

MEMBERS = (1, 2, 3)
WAIT = 20.0  # seconds any one message may take, relay reconnects included; never asserted as a duration


@pytest.fixture(scope="module")
def keys() -> dict[int, Keys]:
    return {member: Keys.generate() for member in MEMBERS}


def identities(keys: dict[int, Keys]) -> dict[int, str]:
    return {member: k.public_key().to_hex() for member, k in keys.items()}


@pytest.fixture
async def relay() -> AsyncIterator[EmbeddedRelay]:
    async with EmbeddedRelay() as running:
        yield running


class Member:
    """One member's transport, what it received and what it refused."""

    def __init__(self, transport: PeerTransport) -> None:
        self.transport = transport
        self.rejected: list[str] = []
        self._messages = transport.messages()

    async def next(self, timeout: float = WAIT) -> Envelope:
        return await asyncio.wait_for(anext(self._messages), timeout)


async def federation(
    kind: str, keys: dict[int, Keys], *, relays: Sequence[str] = (), redis: aioredis.Redis | None = None,
    members: Sequence[int] = MEMBERS, **options: object,
) -> dict[int, Member]:
    out = {}
    for member in members:
        rejected: list[str] = []
        transport = make_transport(
            kind, directory=PeerDirectory(member, identities(keys)), identity_keys=keys[member],
            relays=relays, redis=redis, rejections=rejected.append, **options,  # type: ignore[arg-type]
        )
        await transport.start()
        out[member] = Member(transport)
        out[member].rejected = rejected
    return out


async def stop(members: dict[int, Member]) -> None:
    for member in members.values():
        await member.transport.stop()


def forge(
    signer: Keys, recipient: str, content: str, *, pubkey: str | None = None, created_at: int | None = None,
    tags: tuple[tuple[str, ...], ...] | None = None, kind: int = PEER_MESSAGE_KIND,
) -> str:
    """An envelope built outside the codec, signed by ``signer`` (which may not be the claimed ``pubkey``)."""
    unsigned = UnsignedEvent(
        pubkey or signer.public_key().to_hex(), int(time.time()) if created_at is None else created_at, kind,
        tags or (("p", recipient),), content,
    )
    event_id = unsigned.event_id()
    return dumps_compact({
        "id": event_id.hex(), "pubkey": unsigned.pubkey, "created_at": unsigned.created_at, "kind": kind,
        "tags": [list(t) for t in unsigned.tags], "content": content, "sig": signer.sign_schnorr(event_id),
    })


def encrypt(sender: Keys, recipient: Keys, text: str) -> str:
    return nip44_encrypt(sender.secret_key(), recipient.public_key(), text, Nip44Version.V2)


def codec_for(keys: dict[int, Keys], member: int, **options: object) -> EnvelopeCodec:
    return EnvelopeCodec(PeerDirectory(member, identities(keys)), keys[member], **options)  # type: ignore[arg-type]


def seal(codec: EnvelopeCodec, recipient: int, *payloads: bytes) -> list[str]:
    return codec.seal(recipient, [codec.prepare(recipient, payload) for payload in payloads])


# -- the envelope, checked by an independent implementation


def test_an_envelope_is_a_signed_ephemeral_event_encrypted_to_its_recipient(keys: dict[int, Keys]) -> None:
    payload = json.dumps({"type": "announce", "text": "héllo ✓"}, ensure_ascii=False).encode()
    (raw,) = seal(codec_for(keys, 1), 2, payload)
    event = Event.from_json(raw)
    assert event.verify() and event.kind().is_ephemeral() and event.kind().as_u16() == PEER_MESSAGE_KIND
    assert event.author().to_hex() == keys[1].public_key().to_hex()
    assert [t.to_vec() for t in event.tags()] == [["p", keys[2].public_key().to_hex()]]
    assert nip44_decrypt(keys[2].secret_key(), keys[1].public_key(), event.content()).encode() == payload
    assert len(raw) - len(event.content()) <= EVENT_OVERHEAD


def test_a_64_kib_message_goes_as_parts_each_under_the_relay_limit(keys: dict[int, Keys]) -> None:
    payload = ("é" * 32768).encode()  # 65536 bytes of two-byte characters: parts must cut between them
    sealed = seal(codec_for(keys, 1), 2, payload)
    assert len(sealed) == 2
    assert all(len(raw) <= MAX_EVENT_BYTES and Event.from_json(raw).verify() for raw in sealed)
    receiver = codec_for(keys, 2)
    assert receiver.open(receiver.check(sealed[0])) == []
    (whole,) = receiver.open(receiver.check(sealed[1]))
    assert whole.payload == payload and whole.sender == 1 and whole.message_id == json.loads(sealed[0])["id"]


def test_several_messages_share_one_event_and_come_out_one_by_one(keys: dict[int, Keys]) -> None:
    payloads = [json.dumps({"n": n, "text": 'quote " and ✓'}, ensure_ascii=False).encode() for n in range(5)]
    (raw,) = seal(codec_for(keys, 1), 2, *payloads)
    event = Event.from_json(raw)
    assert event.verify() and [t.to_vec() for t in event.tags()][1] == ["batch", "5"]
    receiver = codec_for(keys, 2)
    opened = receiver.open(receiver.check(raw))
    assert [e.payload for e in opened] == payloads and {e.sender for e in opened} == {1}
    assert [e.message_id for e in opened] == [f"{event.id().to_hex()}/{n}" for n in range(5)]


def test_a_forged_batch_is_refused(keys: dict[int, Keys]) -> None:
    to = keys[2].public_key().to_hex()
    receiver = codec_for(keys, 2)
    cases = [
        (("batch", "3"), '["a","b"]'),  # fewer than it says
        (("batch", "2"), '["a",{"b":1}]'),  # not strings
        (("batch", "2"), '["a",""]'),  # an empty message
        (("batch", "2"), "not json"),
        (("batch", "1"), '["a"]'),  # a batch of one is a plain message
        (("batch", "999"), '["a"]'),
        (("bunch", "2"), '["a","b"]'),
    ]
    for tag, text in cases:
        raw = forge(keys[1], to, encrypt(keys[1], keys[2], text), tags=(("p", to), tag))
        with pytest.raises(Rejected) as refused:
            receiver.open(receiver.check(raw))
        assert refused.value.reason == "malformed", (tag, text)


def test_callers_mistakes_are_value_errors(keys: dict[int, Keys]) -> None:
    codec = codec_for(keys, 1, max_payload=100)
    for recipient, payload in [(4, b"{}"), (2, b""), (2, b"\xff\xfe"), (2, b"x" * 101), (2, "str")]:
        with pytest.raises(ValueError):
            codec.prepare(recipient, payload)  # type: ignore[arg-type]
    ids = identities(keys)
    for kind in ("carrier-pigeon", "redis", "nostr"):  # unknown; no Redis client; no relay
        with pytest.raises(ValueError):
            make_transport(kind, directory=PeerDirectory(1, ids), identity_keys=keys[1])
    with pytest.raises(ValueError, match="not member 2"):
        make_transport("nostr", directory=PeerDirectory(2, ids), identity_keys=keys[1], relays=["ws://127.0.0.1:1"])
    for me, table in [(4, ids), (1, {**ids, 2: ids[1]}), (1, {**ids, 2: "ab" * 31}), (1, {0: ids[1], 1: ids[1]})]:
        with pytest.raises(ValueError):
            PeerDirectory(me, table)


def test_rejection_reasons_are_the_metrics_labels() -> None:
    assert REJECTION_REASONS == PEER_REJECT_REASONS


# -- delivery


async def exchange(members: dict[int, Member]) -> None:
    """Every member sends one message to all (itself included); each gets all three, each sender's in order."""
    for sender, member in members.items():
        await member.transport.send(MEMBERS, json.dumps({"from": sender, "n": 1}).encode())
        await member.transport.send([m for m in MEMBERS if m != sender], json.dumps({"from": sender, "n": 2}).encode())
    for receiver, member in members.items():
        got = [await member.next() for _ in range(1 + 2 * (len(MEMBERS) - 1))]
        seen = [(e.sender, json.loads(e.payload)["n"]) for e in got]
        for sender in MEMBERS:
            expected = [1] if sender == receiver else [1, 2]
            assert [n for s, n in seen if s == sender] == expected
        assert all(json.loads(e.payload)["from"] == e.sender for e in got)
        assert len({e.message_id for e in got}) == len(got)
        assert member.rejected == []


async def test_three_members_exchange_messages_over_nostr(keys: dict[int, Keys], relay: EmbeddedRelay) -> None:
    members = await federation("nostr", keys, relays=[relay.url])
    try:
        await exchange(members)
        big = ("x" * 50_000).encode()  # two parts
        await members[1].transport.send([3], big)
        assert (await members[3].next()).payload == big
    finally:
        await stop(members)


async def test_three_members_exchange_messages_over_redis(keys: dict[int, Keys], redis_client: aioredis.Redis) -> None:
    members = await federation("redis", keys, redis=redis_client)
    try:
        await exchange(members)
        for n in range(100):  # many in a row keep their order
            await members[2].transport.send([1], str(n).encode())
        assert [int((await members[1].next()).payload) for _ in range(100)] == list(range(100))
        events_before = await redis_client.xlen(default_inbox_key(1))
        await asyncio.gather(*(members[2].transport.send([1], str(n).encode()) for n in range(300)))
        assert [int((await members[1].next()).payload) for _ in range(300)] == list(range(300))
        assert await redis_client.xlen(default_inbox_key(1)) - events_before < 300  # sent at once: batched
    finally:
        await stop(members)


# -- hostile envelopes


def hostile_envelopes(keys: dict[int, Keys], stranger: Keys) -> list[tuple[str | bytes, str]]:
    """Envelopes for member 2 that must each be refused, with the reason expected."""
    to = keys[2].public_key().to_hex()
    me1 = keys[1].public_key().to_hex()
    now = int(time.time())
    good = encrypt(keys[1], keys[2], '{"ok":true}')
    tampered = json.loads(forge(keys[1], to, good))
    tampered["content"] = encrypt(keys[1], keys[2], '{"ok":false}')
    bad_sig = json.loads(forge(keys[1], to, good))
    bad_sig["sig"] = "00" * 64
    return [
        (forge(stranger, to, encrypt(stranger, keys[2], "{}")), "unknown_author"),
        (forge(stranger, to, good, pubkey=me1), "bad_signature"),  # a member's name, another key's signature
        (dumps_compact(tampered), "bad_signature"),
        (dumps_compact(bad_sig), "bad_signature"),
        (forge(keys[1], to, good, created_at=now - 600), "stale"),
        (forge(keys[1], to, good, created_at=now + 600), "stale"),
        (forge(keys[1], to, "A" * 70_000), "oversize"),
        (forge(keys[1], keys[3].public_key().to_hex(), encrypt(keys[1], keys[3], "{}")), "malformed"),  # not mine
        (forge(keys[1], to, encrypt(keys[1], keys[3], "{}")), "malformed"),  # addressed to me, not decryptable
        (forge(keys[1], to, good, kind=1), "malformed"),
        (b"\xff" * 100, "malformed"),
        ("[" * 5000 + "]" * 5000, "malformed"),
        ('{"id": 1}', "malformed"),
    ]


async def test_hostile_envelopes_are_refused_with_their_reason_over_redis(
    keys: dict[int, Keys], redis_client: aioredis.Redis
) -> None:
    members = await federation("redis", keys, redis=redis_client)
    cases = hostile_envelopes(keys, Keys.generate())
    replayed = seal(codec_for(keys, 1), 2, b'{"first":true}')[0]
    cases += [(replayed, "accepted"), (replayed, "replay")]
    try:
        for raw, _ in cases:
            await redis_client.xadd(default_inbox_key(2), {"e": raw})
        await redis_client.xadd(default_inbox_key(2), {"other": "field"})
        await redis_client.execute_command("XADD", default_inbox_key(2), "*", "e", replayed, "e", replayed)
        assert json.loads((await members[2].next()).payload) == {"first": True}
        await members[1].transport.send([2], b'{"still":"delivered"}')
        assert json.loads((await members[2].next()).payload) == {"still": "delivered"}
        expected = Counter(reason for _, reason in cases if reason != "accepted") + Counter(malformed=2)
        assert Counter(members[2].rejected) == expected
    finally:
        await stop(members)


async def test_hostile_envelopes_that_a_relay_carries_are_refused_over_nostr(
    keys: dict[int, Keys], relay: EmbeddedRelay
) -> None:
    members = await federation("nostr", keys, relays=[relay.url], members=(1, 2), max_payload=1000)
    stranger = Keys.generate()
    to = keys[2].public_key().to_hex()
    cases = [
        (forge(stranger, to, encrypt(stranger, keys[2], "{}")), "unknown_author"),
        # from the future (an old one the subscription's "since" already keeps away)
        (forge(keys[1], to, encrypt(keys[1], keys[2], "{}"), created_at=int(time.time()) + 600), "stale"),
        (forge(keys[1], to, encrypt(keys[1], keys[2], "x" * 2000)), "oversize"),  # over this receiver's limit
        (forge(keys[1], to, encrypt(keys[1], keys[3], "{}")), "malformed"),
    ]
    publisher = await connect_client(relay.url)
    try:
        for raw, _ in cases:
            assert (await publisher.send_event(Event.from_json(raw))).success
        await members[1].transport.send([2], b'{"still":"delivered"}')
        assert json.loads((await members[2].next()).payload) == {"still": "delivered"}
        for _ in range(100):  # the relay may hand them over in any order: wait, bounded, for all four
            if len(members[2].rejected) == len(cases):
                break
            await asyncio.sleep(0.05)
        assert Counter(members[2].rejected) == Counter(reason for _, reason in cases)
    finally:
        await publisher.shutdown()
        await stop(members)


async def test_a_replay_after_a_restart_is_caught_by_the_redis_record(
    keys: dict[int, Keys], relay: EmbeddedRelay, redis_client: aioredis.Redis
) -> None:
    members = await federation("nostr", keys, relays=[relay.url], redis=redis_client, members=(1, 2))
    (raw,) = seal(codec_for(keys, 1), 2, b'{"once":1}')
    publisher = await connect_client(relay.url)
    try:
        await publisher.send_event(Event.from_json(raw))
        assert (await members[2].next()).payload == b'{"once":1}'
        await members[2].transport.stop()  # a restart: the in-memory record is gone, Redis's is not
        members.update(await federation("nostr", keys, relays=[relay.url], redis=redis_client, members=(2,)))
        other = await connect_client(relay.url)  # a fresh client: nostr-sdk's own dedupe does not hide it
        await other.send_event(Event.from_json(raw))
        await other.shutdown()
        await members[1].transport.send([2], b'{"after":1}')
        assert (await members[2].next()).payload == b'{"after":1}'
        assert members[2].rejected == ["replay"]
    finally:
        await publisher.shutdown()
        await stop(members)


# -- floods


def python_heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_a_junk_flood_is_survived_with_bounded_memory_over_redis(
    keys: dict[int, Keys], redis_client: aioredis.Redis
) -> None:
    members = await federation("redis", keys, redis=redis_client, members=(1, 2))
    stranger = Keys.generate()
    to = keys[2].public_key().to_hex()
    big = encrypt(keys[1], keys[2], "y" * 30_000)
    junk = [
        forge(stranger, to, big),  # ~40 KB from a stranger
        forge(keys[1], to, big, created_at=int(time.time()) - 900),  # a member's, stale
        dumps_compact({**json.loads(forge(keys[1], to, "B" * 40_000)), "sig": "00" * 64}),  # broken signature
        "not json at all " * 3000,
    ]
    tracemalloc.start()
    try:
        await members[1].transport.send([2], b"warm-up")
        await members[2].next()
        before = python_heap()
        for start in range(0, 2000, 100):
            async with redis_client.pipeline(transaction=False) as pipe:
                for n in range(start, start + 100):
                    pipe.xadd(default_inbox_key(2), {"e": junk[n % len(junk)]})
                await pipe.execute()
        await members[1].transport.send([2], b"after the flood")
        assert (await members[2].next(timeout=120)).payload == b"after the flood"
        grown = python_heap() - before
    finally:
        tracemalloc.stop()
        await stop(members)
    assert len(members[2].rejected) == 2000
    assert set(members[2].rejected) == {"unknown_author", "stale", "bad_signature", "malformed"}
    assert grown < 2_000_000, f"the Python heap grew by {grown} bytes over a flood of ~50 MB of junk"
    assert await redis_client.xlen(default_inbox_key(2)) <= INBOX_MAXLEN


async def test_a_junk_flood_through_a_relay_is_survived(keys: dict[int, Keys], relay: EmbeddedRelay) -> None:
    members = await federation("nostr", keys, relays=[relay.url], members=(1, 2))
    to = keys[2].public_key().to_hex()
    strangers = [Keys.generate() for _ in range(4)]
    flood = [forge(strangers[n % 4], to, f"junk {n} " + "z" * (n % 7) * 1000) for n in range(2000)]
    publisher = await connect_client(relay.url)
    try:
        for start in range(0, len(flood), 200):
            await asyncio.gather(*(publisher.send_event(Event.from_json(raw)) for raw in flood[start:start + 200]))
        await members[1].transport.send([2], b"after the flood")
        assert (await members[2].next(timeout=120)).payload == b"after the flood"
        for _ in range(200):
            if len(members[2].rejected) == len(flood):
                break
            await asyncio.sleep(0.05)
        assert Counter(members[2].rejected) == Counter(unknown_author=len(flood))
    finally:
        await publisher.shutdown()
        await stop(members)


# -- outages


async def until_delivered(sender: Member, receiver: Member, recipient: int, *, tries: int = 60) -> None:
    """Send a message every half second until one arrives (bounded in count); fail if none does."""
    for attempt in range(tries):
        await sender.transport.send([recipient], f"try {attempt}".encode())
        try:
            await receiver.next(timeout=0.5)
            return
        except TimeoutError:
            continue
    raise AssertionError(f"nothing delivered in {tries} tries")


def closing_relay(port: int):  # type: ignore[no-untyped-def]
    """A relay that CLOSEs every subscription (its subscription ids may be 8 characters at most)."""
    limit = RateLimit(max_reqs=10_000, notes_per_minute=6_000_000)
    return LocalRelayBuilder().addr("127.0.0.1").port(port).max_subid_length(8).rate_limit(limit).build()


async def test_a_relay_restart_does_not_end_delivery(keys: dict[int, Keys]) -> None:
    port = free_port()
    relay = EmbeddedRelay(port=port)
    await relay.start()
    members = await federation("nostr", keys, relays=[relay.url], members=(1, 2))
    try:
        await members[1].transport.send([2], b"before")
        assert (await members[2].next()).payload == b"before"
        await relay.stop()
        await members[1].transport.send([2], b"while down")  # logged, not raised
        await relay.start()
        await until_delivered(members[1], members[2], 2)
    finally:
        await stop(members)
        await relay.stop()


async def test_a_subscription_the_relay_closed_is_renewed(keys: dict[int, Keys]) -> None:
    port = free_port()
    closing = closing_relay(port)
    await closing.run()
    members = await federation("nostr", keys, relays=[f"ws://127.0.0.1:{port}"], members=(1, 2))
    relay = EmbeddedRelay(port=port)
    try:
        closing.shutdown()
        del closing
        for _ in range(400):  # bounded wait (20 s) for the old relay to let go of the port
            try:
                await relay.start()
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail(f"port {port} was not free again within 20 s")
        # Members reconnect RETRY (5 s) after the loss; a minute's bound leaves room for a loaded machine (one
        # clean-clone CI run saw nothing delivered within 30 s, which no local run, idle or loaded, reproduced).
        await until_delivered(members[1], members[2], 2, tries=120)
    finally:
        await stop(members)
        await relay.stop()


async def test_a_redis_restart_does_not_end_delivery(keys: dict[int, Keys], tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    client = aioredis.Redis.from_url(server.url)
    members = await federation("redis", keys, redis=client, members=(1, 2))
    try:
        await members[1].transport.send([2], b"before")
        assert (await members[2].next()).payload == b"before"
        server.stop(kill=True)
        await members[1].transport.send([2], b"while down")  # logged, not raised
        await asyncio.sleep(0.3)  # the reader meets the outage and backs off
        server.start()
        await until_delivered(members[1], members[2], 2)
        assert members[2].rejected == []
    finally:
        await stop(members)
        await client.aclose()
        server.stop()
