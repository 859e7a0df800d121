"""sidecar.http against real parts: a Redis server, a nostr-sdk relay and client, the Metrics registry."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from nostr_sdk import Client, LocalRelay, LocalRelayBuilder, RelayStatus, RelayUrl
from redis.exceptions import RedisError

from sidecar.http import (
    DEFAULT_HOST,
    JobStatus,
    MemberStatus,
    StatusSnapshot,
    make_app,
    start_http,
)
from sidecar.metrics import CanaryResult, Metrics
from sidecar.redis_server import RedisServer

NPUB = "npub1" + "q" * 58
NOW = 1_700_000_000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveStatus:
    """A StatusSource backed by real parts: a Redis ping, a relay's connection state, the last canary."""

    def __init__(self, redis: aioredis.Redis, client: Client, relay: RelayUrl, metrics: Metrics) -> None:
        self.redis, self.client, self.relay, self.metrics = redis, client, relay, metrics
        self.last_canary: CanaryResult | None = None
        self.jobs: tuple[JobStatus, ...] = ()

    def record_canary(self, result: CanaryResult) -> None:
        self.last_canary = result
        self.metrics.canary_finished(result)

    async def readiness(self) -> Mapping[str, bool]:
        try:
            redis_ok = bool(await self.redis.ping())
        except (RedisError, OSError):
            redis_ok = False
        relay_ok = (await self.client.relay(self.relay)).status() == RelayStatus.CONNECTED
        return {"redis": redis_ok, "public_relay": relay_ok, "canary": self.last_canary == "ok"}

    async def status(self) -> StatusSnapshot:
        members = (
            MemberStatus(1, NPUB, True, None),
            MemberStatus(2, "npub1second", False, NOW - 42),
            MemberStatus(3, "npub1third", False, None),
        )
        return StatusSnapshot(NPUB, 2, members, self.jobs, "0.1.0", NOW)


class HangingStatus:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    async def readiness(self) -> Mapping[str, bool]:
        if self.error is not None:
            raise self.error
        await asyncio.sleep(30)
        return {}

    async def status(self) -> StatusSnapshot:
        return StatusSnapshot(NPUB, 1, (), (), "0.1.0", NOW)


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def relay() -> AsyncIterator[LocalRelay]:
    relay = LocalRelayBuilder().addr("127.0.0.1").port(free_port()).build()
    await relay.run()
    try:
        yield relay
    finally:
        relay.shutdown()


@pytest.fixture
async def source(redis_server: RedisServer, relay: LocalRelay) -> AsyncIterator[LiveStatus]:
    url = await relay.url()
    client = Client()
    await client.add_relay(url)
    await client.connect()
    redis = aioredis.Redis.from_url(redis_server.url, socket_connect_timeout=1, socket_timeout=1)
    metrics = Metrics(members=[1, 2, 3], relays=[str(url)], kinds=[5050], version="0.1.0")
    live = LiveStatus(redis, client, url, metrics)
    try:
        for _ in range(100):  # bounded wait for the websocket to come up
            if (await client.relay(url)).status() == RelayStatus.CONNECTED:
                break
            await asyncio.sleep(0.05)
        yield live
    finally:
        await client.shutdown()
        await redis.aclose()


@pytest.fixture
async def http(source: LiveStatus) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(source.metrics, source))) as client:
        yield client


async def readyz(http: TestClient) -> tuple[int, dict[str, object]]:
    response = await http.get("/readyz")
    return response.status, await response.json()


async def test_healthz_answers_while_the_process_runs(http: TestClient) -> None:
    response = await http.get("/healthz")
    assert response.status == 200
    assert await response.text() == "ok\n"


async def test_metrics_serves_the_sidecar_registry(http: TestClient, source: LiveStatus) -> None:
    source.record_canary("ok")
    response = await http.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert 'dvm_sidecar_build_info{version="0.1.0"} 1.0' in text
    assert 'dvm_sidecar_canary_total{result="ok"} 1.0' in text
    assert "_created" not in text
    openmetrics = await http.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert (await openmetrics.text()).endswith("# EOF\n")


async def test_ready_only_when_redis_relay_and_canary_are_good(http: TestClient, source: LiveStatus) -> None:
    status, body = await readyz(http)
    assert status == 503
    assert body == {"ready": False, "checks": {"redis": True, "public_relay": True, "canary": False}}
    source.record_canary("ok")
    status, body = await readyz(http)
    assert status == 200
    assert body == {"ready": True, "checks": {"redis": True, "public_relay": True, "canary": True}}
    source.record_canary("wrong")
    status, body = await readyz(http)
    assert status == 503 and body["checks"] == {"redis": True, "public_relay": True, "canary": False}


async def test_not_ready_when_redis_stops(
    http: TestClient, source: LiveStatus, redis_server: RedisServer
) -> None:
    source.record_canary("ok")
    assert (await readyz(http))[0] == 200
    redis_server.stop()
    status, body = await readyz(http)
    assert status == 503
    assert body["checks"] == {"redis": False, "public_relay": True, "canary": True}
    assert (await http.get("/healthz")).status == 200  # the process is still up


async def test_not_ready_when_the_relay_goes_away(
    http: TestClient, source: LiveStatus, relay: LocalRelay
) -> None:
    source.record_canary("ok")
    assert (await readyz(http))[0] == 200
    relay.shutdown()
    for _ in range(100):  # bounded: the client notices the closed socket
        status, body = await readyz(http)
        if status == 503:
            break
        await asyncio.sleep(0.05)
    assert status == 503
    assert body["checks"] == {"redis": True, "public_relay": False, "canary": True}


@pytest.mark.parametrize("error", [None, RuntimeError("secret-looking detail")])
async def test_a_hanging_or_failing_probe_is_not_ready(error: Exception | None) -> None:
    metrics = Metrics(members=[1], relays=[], kinds=[5050], version="0.1.0")
    app = make_app(metrics, HangingStatus(error), readiness_timeout=0.2)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body["ready"] is False and body["checks"] == {}
        assert "secret-looking detail" not in str(body)
        page = await (await client.get("/")).text()
        assert "NOT READY" in page and "secret-looking detail" not in page


async def test_status_page_shows_federation_members_and_jobs_escaped(
    http: TestClient, source: LiveStatus
) -> None:
    source.record_canary("ok")
    source.jobs = (
        JobStatus("ab" * 32, 5050, "cosigned", NOW - 10, NOW - 8.5),
        JobStatus("<script>alert(1)</script>", 5050, "signing", NOW - 3, None),
    )
    response = await http.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert NPUB in page and "2 of 3 members" in page and "<strong>ready</strong>" in page
    assert "42 s ago" in page and "never" in page and "(this sidecar)" in page
    assert "ab" * 32 in page and "cosigned" in page and "1.50 s" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_start_http_binds_loopback_by_default(source: LiveStatus) -> None:
    server = await start_http(make_app(source.metrics, source), port=0)
    try:
        assert server.host == DEFAULT_HOST == "127.0.0.1" and server.port > 0
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/healthz") as response:
            assert response.status == 200
    finally:
        await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"{server.url}/healthz")
