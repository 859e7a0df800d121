"""sidecar.store across a restart of its Redis server (AOF: every kind of record is still there, and the
scripts load themselves again into the empty script cache) and with the server stopped (every operation raises
redis.ConnectionError, ping answers False), on redis-py alone and with the lean client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from sidecar.redis_server import RedisServer
from sidecar.resp import RespClient
from sidecar.store import OutboxItem, Store

RELAY_A = "wss://relay-a.example.org"
RELAY_B = "wss://relay-b.example.org"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    srv = RedisServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


CLIENTS = pytest.mark.parametrize("lean", [False, True], ids=["redis-py", "lean"])


@CLIENTS
async def test_state_survives_a_server_restart(server: RedisServer, lean: bool) -> None:
    client = aioredis.Redis.from_url(server.url)
    fast = RespClient.from_client(client) if lean else None
    store = Store(client, namespace="fed", member=1, job_ttl=900, fast=fast)
    await store.claim_request("req")
    await store.save_job("open", b"half", phase="agreement", updated_at=1.0)
    await store.save_job("done", b"s", phase="signing", updated_at=2.0)
    await store.finish_job(
        "done", b"final", phase="publishing", outcome="cosigned", events=[("e", "{}")], finished_at=3.0
    )
    await store.record_publish("e", RELAY_A, True, now=4.0, next_attempt=8.0)
    await store.record_evidence(2, "equivocation", "done", "two announcements", at=3.0)
    await client.aclose()
    server.stop()  # SIGTERM flushes the append-only file

    server.start()  # an empty script cache: the scripts must load themselves again
    client = aioredis.Redis.from_url(server.url)
    try:
        store = Store(client, namespace="fed", member=1, job_ttl=900, fast=fast)  # the lean one reconnects
        assert await store.claim_request("req") is False
        assert await store.in_flight() == ["open"]
        assert await store.load_job("open") == b"half"
        assert await store.load_job("done") == b"final"
        assert 0 < await client.ttl(store.keys.job("done")) <= 900
        assert await store.due(8.0) == [OutboxItem("e", "{}", 1, 3.0)]
        assert await store.accepted_relays("e") == {RELAY_A}
        assert [e.kind for e in await store.evidence()] == ["equivocation"]
        await store.record_publish("e", RELAY_B, True, now=8.0, next_attempt=None)  # its script reloaded too
        assert await store.due(100.0) == [] and await store.accepted_relays("e") == {RELAY_A, RELAY_B}
        await store.finish_job("open", b"f", phase="publishing", outcome="cosigned", finished_at=9.0)
        assert await store.in_flight() == []
    finally:
        await client.aclose()
        if fast is not None:
            await fast.aclose()


async def _every_operation(store: Store) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: store.claim_request("r"),
        lambda: store.save_job("j", b"s", phase="dvm", updated_at=1.0),
        lambda: store.finish_job(
            "j", b"s", phase="dvm", outcome="timeout", events=[("e", "{}")], finished_at=1.0
        ),
        lambda: store.due(1.0),
        lambda: store.record_publish("e", RELAY_A, True, now=1.0, next_attempt=None),
        lambda: store.evidence(),
    ]


@CLIENTS
async def test_a_stopped_server_raises_connection_error(server: RedisServer, lean: bool) -> None:
    client = aioredis.Redis.from_url(server.url)
    fast = RespClient.from_client(client) if lean else None
    try:
        store = Store(client, namespace="fed", member=1, fast=fast)
        assert await store.ping() is True
        await store.claim_request("warm")  # a pooled connection exists when the server goes away
        server.stop()
        for operation in await _every_operation(store):
            with pytest.raises(redis.ConnectionError):
                await operation()
        assert await store.ping() is False
    finally:
        await client.aclose()
        if fast is not None:
            await fast.aclose()
