"""The peer layer's bounded parts on their own: the replay record (in memory and in Redis), reassembly of
parts, the split of a long payload, and the fix to nostr-sdk's bindings."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
import redis.asyncio as aioredis
from nostr_sdk import Event, Keys, nip44_decrypt

from sidecar.peers import ffi
from sidecar.peers.inbox import Inbox
from sidecar.peers.parts import PART_BYTES, PENDING_PER_SENDER, Part, PartMismatch, Reassembly, split_text
from sidecar.peers.replay import ReplayCache
from tests.sidecar.test_peers import MEMBERS, codec_for, encrypt, forge, seal


@pytest.fixture(scope="module")
def keys() -> dict[int, Keys]:
    return {member: Keys.generate() for member in MEMBERS}


def test_the_replay_cache_stays_within_its_capacity_and_forgets_expired_ids() -> None:
    cache = ReplayCache(capacity=100)
    for n in range(1000):
        cache.add(n.to_bytes(32, "big"), forget_after=10_000.0, now=0.0)
    assert len(cache) == 100 and (999).to_bytes(32, "big") in cache and (0).to_bytes(32, "big") not in cache
    cache.add(b"late", forget_after=20_000.0, now=15_000.0)  # everything before has expired
    assert len(cache) == 1 and b"late" in cache


def test_reassembly_checks_the_digest_and_bounds_what_it_keeps() -> None:
    parts = Reassembly(window=60.0)
    digest = hashlib.sha256(b"abcd").hexdigest()
    assert parts.add(1, Part(1, 2, digest), b"ab", message_id="m1", created_at=5, now=0.0) is None
    assert parts.add(1, Part(2, 2, digest), b"cd", message_id="m2", created_at=6, now=0.0) == (b"abcd", "m1", 5)
    parts.add(1, Part(1, 2, digest), b"ab", message_id="m1", created_at=5, now=0.0)
    with pytest.raises(PartMismatch):
        parts.add(1, Part(2, 2, digest), b"XX", message_id="m2", created_at=5, now=0.0)
    for n in range(50):
        parts.add(2, Part(1, 3, f"{n:064x}"), b"x", message_id=str(n), created_at=0, now=0.0)
    assert parts.pending() == PENDING_PER_SENDER
    parts.add(3, Part(1, 2, "ee" * 32), b"x", message_id="late", created_at=0, now=1000.0)
    assert parts.pending() == 1  # the rest waited longer than the window


@pytest.mark.parametrize("text", ["a" * 40961, "é" * 20481, "€" * 13654, "😀" * 10241 + "x"])
def test_split_text_cuts_only_between_characters(text: str) -> None:
    pieces = split_text(text.encode())
    assert "".join(pieces) == text and all(len(p.encode()) <= PART_BYTES for p in pieces) and len(pieces) == 2


@pytest.mark.parametrize("size", [0, 1, 300, 4095, 65_000, 200_000])
def test_the_bindings_fix_hands_nostr_sdk_the_same_bytes(keys: dict[int, Keys], size: int) -> None:
    assert ffi.install() and ffi.install()  # idempotent
    text = ("aé€😀\n\"\\" * (size // 16 + 1))[:size]
    event = Event.from_json(forge(keys[1], keys[2].public_key().to_hex(), text))
    assert event.verify() and event.content() == text  # nostr-sdk hashed exactly the bytes Python sent
    if 0 < size <= 65_000:
        assert nip44_decrypt(keys[2].secret_key(), keys[1].public_key(), encrypt(keys[1], keys[2], text)) == text


async def test_the_redis_record_is_read_at_start_and_written_in_the_background(
    keys: dict[int, Keys], redis_client: aioredis.Redis
) -> None:
    """Loaded at start, the inbox trusts its memory and adds ids to the Redis record in the background, so a
    restart (which loads the record again) still catches replays. Without the load (Redis away at start) it
    waits for Redis's verdict until its memory covers two replay windows; a cache that had to drop an id early
    makes it ask Redis again."""
    now = [1_000_000.0]
    window = 10.0
    key = "dvm-sidecar:test:seen"

    def inbox() -> tuple[Inbox, list[str]]:
        rejected: list[str] = []
        codec = codec_for(keys, 2, replay_window=window, clock=lambda: now[0])
        return Inbox(codec, rejections=rejected.append, redis=redis_client, seen_key=key), rejected

    async def recorded(count: int) -> bool:
        for _ in range(200):
            if await redis_client.zcard(key) == count:
                return True
            await asyncio.sleep(0.01)
        return False

    sender = codec_for(keys, 1, replay_window=window, clock=lambda: now[0])
    cold, rejected = inbox()  # not loaded: Redis is asked on the message's way
    (first,) = seal(sender, 2, b'{"n":1}')
    await cold.receive([first])
    assert await redis_client.zcard(key) == 1  # in the record before delivery
    assert await redis_client.zscore(key, json.loads(first)["id"]) == now[0] + 2 * window
    assert 0 < await redis_client.pttl(key) <= 2 * window * 1000

    loaded, rejected_loaded = inbox()  # a restart: the record is read into memory
    assert await loaded.load() == 1
    assert loaded._memory_suffices()
    (second,) = seal(sender, 2, b'{"n":2}')
    await loaded.receive([first, second, second])
    assert rejected_loaded == ["replay", "replay"]  # both from memory
    assert await recorded(2)  # the new id added in the background
    (third,) = seal(sender, 2, b'{"n":3}')
    await loaded.receive([third])
    await loaded.flush()  # a stop writes what waits at once
    assert await redis_client.zcard(key) == 3

    again, rejected_again = inbox()
    assert await again.load() == 3
    await again.receive([second])
    assert rejected_again == ["replay"]

    now[0] += 2 * window + 1  # every id is forgettable now: the next load drops them
    fresh, _ = inbox()
    assert await fresh.load() == 0 and await redis_client.zcard(key) == 0

    loaded.codec.seen.add(b"x" * 32, forget_after=now[0] + window, now=now[0])
    loaded.codec.seen.capacity = 1
    loaded.codec.seen.add(b"y" * 32, forget_after=now[0] + window, now=now[0])  # drops x early
    assert loaded.codec.seen.forgot_early_at == now[0] and not loaded._memory_suffices()
    for box in (cold, loaded, again, fresh):
        box.close()
    assert rejected == []
