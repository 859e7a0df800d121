"""Redis going away under a running sidecar (a restart, an outage) drops nothing: what must be stored waits for
Redis and goes on when it is back. Regression tests for what the process-level outage suite found: a job's
inputs and a customer's request were dropped on the first Redis error, and a request claim whose answer was
lost in the restart was then taken for a duplicate. Each test runs its own real Redis server and stops it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from consensus import frost
from consensus.effects import RequestSeen
from consensus.federation import Federation
from consensus.jobstate import JobState, Phase
from consensus.nip90 import UnsignedEvent, parse_job_request
from consensus.quorum import Member
from sidecar.metrics import Metrics
from sidecar.redis_client import RedisWait
from sidecar.redis_server import RedisServer
from sidecar.runner import JobRunner, Outlets
from sidecar.store import Store

SUITE = frost.SECP256K1_TR


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    yield redis_server
    redis_server.stop()


async def test_a_claim_made_but_whose_answer_was_lost_is_still_the_claimers(server: RedisServer) -> None:
    client = aioredis.Redis.from_url(server.url)
    try:
        store = Store(client, namespace="claims", member=1)
        assert await store.claim_request("req", ttl=60, token="first")
        assert await store.claim_request("req", ttl=60, token="first")  # the same claim, asked again
        assert not await store.claim_request("req", ttl=60, token="second")  # anyone else: a duplicate
        assert not await store.claim_request("req", ttl=60)
        assert 0 < await client.pttl(store.keys.seen_request("req")) <= 60_000
    finally:
        await client.aclose()


async def test_an_operation_waits_for_redis_to_come_back(server: RedisServer) -> None:
    client = aioredis.Redis.from_url(server.url)
    failures: list[int] = []
    wait = RedisWait(lambda: failures.append(1), "test")
    try:
        store = Store(client, namespace="wait", member=1)
        server.stop()
        task = asyncio.create_task(wait(lambda: store.claim_request("req", ttl=60, token="t")))
        await asyncio.sleep(0.5)
        assert not task.done() and failures  # held, and each failed attempt counted
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(10):
            assert await task
        assert await client.get(store.keys.seen_request("req")) == b"t"
    finally:
        await client.aclose()


async def test_a_job_input_that_arrives_while_redis_is_away_is_held_not_dropped(server: RedisServer) -> None:
    shares, public = frost.trusted_dealer_keygen(SUITE, 2, 3)
    federation = Federation(public)
    member = Member(federation, frost.vss_verify(SUITE, shares[1]))
    client = aioredis.Redis.from_url(server.url)
    metrics = Metrics(members=federation.members, relays=(), kinds=(5050,), version="test")
    forwarded: list[str] = []

    async def send(to: tuple[int, ...], message: object) -> None:
        pass

    async def run_dvm(request: object) -> None:
        forwarded.append("dvm")

    store = Store(client, namespace="outage", member=1)
    runner = JobRunner(member, store, metrics, Outlets(send=send, run_dvm=run_dvm, published=lambda *_: None))
    await runner.resume_all()  # nothing in flight: inputs are taken from here on
    request = parse_job_request(UnsignedEvent(
        "ab" * 32, 1000, 5050, (("i", "hello", "text"), ("p", federation.pubkey)), "",
    ).with_signature(bytes(64)))
    try:
        server.stop()
        fed = asyncio.create_task(runner.feed(RequestSeen(request)))
        await asyncio.sleep(0.5)
        assert not fed.done() and forwarded == []  # nothing leaves before the state is stored
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(10):
            await fed
        assert forwarded == ["dvm"]
        stored = await store.load_job(request.id)
        assert stored is not None and JobState.from_json(stored).phase is Phase.RUNNING
        assert await store.in_flight() == [request.id]
        assert (metrics.registry.get_sample_value("dvm_sidecar_redis_errors_total") or 0) > 0
    finally:
        await runner.close()
        await client.aclose()
