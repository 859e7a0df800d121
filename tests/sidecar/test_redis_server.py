"""The embedded server is a real Redis: AOF persistence across a restart, Streams, Lua."""

from __future__ import annotations

from pathlib import Path

import redis

from sidecar.redis_server import RedisServer


def test_state_survives_a_restart_in_the_same_directory(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    client = redis.Redis.from_url(server.url)
    client.set("job:1", "announced")
    client.xadd("inbox:1", {"m": "hello"})
    client.close()
    server.stop()  # SIGTERM flushes the append-only file

    server.start()
    client = redis.Redis.from_url(server.url)
    try:
        assert client.get("job:1") == b"announced"
        assert client.xlen("inbox:1") == 1
        assert client.eval("return redis.call('GET', KEYS[1])", 1, "job:1") == b"announced"
    finally:
        client.close()
        server.stop()


async def test_client_fixture_starts_clean(redis_client) -> None:  # type: ignore[no-untyped-def]
    assert await redis_client.dbsize() == 0
    await redis_client.set("x", 1)
    assert await redis_client.get("x") == b"1"
