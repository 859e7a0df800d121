"""The lean Redis client against a real Redis: replies of every kind, batches, errors as redis-py's, callers at
once and cancelled ones, a server restart, database and password."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from sidecar.redis_server import RedisServer
from sidecar.relay import free_port
from sidecar.resp import _INCOMPLETE, RespClient, pack, parse, reply_end


async def test_replies_of_every_kind(redis_client: aioredis.Redis) -> None:
    client = RespClient.from_client(redis_client)
    try:
        assert await client.call("SET", "k", b"v\r\nw") == "OK"
        assert await client.call("GET", "k") == b"v\r\nw"
        assert await client.call("GET", "missing") is None
        assert await client.call("INCRBY", "n", 5) == 5
        assert await client.call("ZADD", "z", 1.5, "a", 2, "b") == 2
        assert await client.call("ZRANGE", "z", 0, -1, "WITHSCORES") == [b"a", b"1.5", b"b", b"2"]
        assert await client.call("XREAD", "COUNT", 1, "STREAMS", "nothing", "0-0") is None
        assert await redis_client.get("k") == b"v\r\nw"  # the same server redis-py talks to
    finally:
        await client.aclose()


async def test_a_batch_goes_in_one_write_and_errors_are_redis_pys(redis_client: aioredis.Redis) -> None:
    client = RespClient.from_client(redis_client)
    try:
        replies = await client.execute(
            [["SET", "a", 1], ["EVALSHA", "0" * 40, 0], ["LPUSH", "a", "x"], ["GET", "a"]], raise_on_error=False
        )
        assert replies[0] == "OK" and replies[3] == b"1"
        assert isinstance(replies[1], NoScriptError) and type(replies[2]) is ResponseError
        with pytest.raises(NoScriptError):
            await client.execute([["GET", "a"], ["EVALSHA", "0" * 40, 0]])
        sha = await client.call("SCRIPT", "LOAD", "return ARGV[1]")
        assert await client.call("EVALSHA", sha, 0, "back") == b"back"
        with pytest.raises(ValueError):
            await client.call("SET", "a", True)  # refused before anything is sent
        assert await client.call("GET", "a") == b"1"
    finally:
        await client.aclose()


async def test_callers_at_once_and_a_cancelled_one_keep_the_order(redis_client: aioredis.Redis) -> None:
    client = RespClient.from_client(redis_client)
    try:
        await client.call("SET", "slow", "x")
        values = [f"value {i}".encode() for i in range(200)]
        await client.execute([["SET", f"k{i}", v] for i, v in enumerate(values)])
        cancelled = asyncio.ensure_future(client.call("GET", "slow"))
        replies = asyncio.gather(*(client.call("GET", f"k{i}") for i in range(200)))
        cancelled.cancel()
        assert await replies == values
        assert await client.call("GET", "slow") == b"x"
    finally:
        await client.aclose()


async def test_callers_of_one_turn_of_the_loop_share_one_write(redis_client: aioredis.Redis) -> None:
    client = RespClient.from_client(redis_client)
    try:
        await client.call("PING")  # connected
        protocol = client._protocol
        assert protocol is not None and protocol.transport is not None
        writes: list[bytes] = []
        write = protocol.transport.write
        protocol.transport.write = lambda data: (writes.append(bytes(data)), write(data))[1]  # type: ignore[method-assign]
        counted = await asyncio.gather(*(client.call("INCR", "n") for _ in range(50)),
                                       client.execute([["INCR", "n"], ["GET", "n"]]))
        assert counted == [*range(1, 51), [51, b"51"]]  # in the order queued
        assert len(writes) == 1 and writes[0].count(b"INCR") == 51
        await client.call("INCR", "n")  # a lone caller still goes out at once, in a write of its own
        assert len(writes) == 2
    finally:
        await client.aclose()


async def test_a_restart_fails_the_waiting_and_the_next_call_connects_again(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = RespClient.from_client(aioredis.Redis.from_url(server.url))
    try:
        assert await client.call("PING") == "PONG"
        blocked = asyncio.ensure_future(client.call("BLPOP", "never", 0))
        await asyncio.sleep(0.1)
        server.stop()
        with pytest.raises(RedisConnectionError):
            await blocked
        with pytest.raises(RedisConnectionError):
            await client.call("PING")  # nobody listens
        await asyncio.to_thread(server.start)
        assert await client.call("PING") == "PONG"
    finally:
        await client.aclose()
        server.stop()


async def test_database_and_password_come_from_the_redis_py_client(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    admin = aioredis.Redis.from_url(server.url)
    try:
        await admin.config_set("requirepass", "s3cret")
        await admin.aclose()
        admin = aioredis.Redis.from_url(server.url, password="s3cret")
        authed = aioredis.Redis.from_url(f"{server.url}?db=3", password="s3cret")
        client = RespClient.from_client(authed)
        try:
            await client.call("SET", "where", "db3")
            assert await authed.get("where") == b"db3"
            assert await admin.get("where") is None  # database 0
        finally:
            await client.aclose()
            await authed.aclose()
        refused = RespClient.from_client(aioredis.Redis.from_url(server.url, password="wrong"))
        with pytest.raises(RedisConnectionError, match="AUTH"):
            await refused.call("PING")
        await refused.aclose()
    finally:
        await admin.aclose()
        server.stop()


def test_replies_split_anywhere_are_read_whole() -> None:
    replies = b"+OK\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\nx\r\n*1\r\n:7\r\n-ERR no\r\n*-1\r\n"
    expected = ["OK", 42, b"abc", None, [b"x", [7]], "ERR no", None]
    for cut in range(len(replies)):
        buffer, got, pos = bytearray(replies[:cut]), [], 0
        for part in (replies[cut:], b""):
            while True:
                if reply_end(buffer, pos) < 0:
                    assert parse(buffer, pos)[0] is _INCOMPLETE, cut  # the scan and the parser agree
                    break
                reply, pos = parse(buffer, pos)
                if reply is _INCOMPLETE:
                    break
                got.append(str(reply) if isinstance(reply, ResponseError) else reply)
            buffer += part
        assert got == expected, cut
    assert pack(["SET", b"k", 1, 2.5]) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n2.5\r\n"


async def test_a_large_reply_in_many_pieces_is_read_whole(redis_client: aioredis.Redis) -> None:
    client = RespClient.from_client(redis_client)
    try:
        values = [bytes([i % 256]) * 65536 for i in range(64)]  # 4 MiB in one reply, read in pieces
        await client.execute([["RPUSH", "big", v] for v in values])
        assert await client.call("LRANGE", "big", 0, -1) == values
    finally:
        await client.aclose()


async def test_a_redis_on_a_tcp_port(tmp_path: Path) -> None:
    """As compose deploys it (redis://redis:6379): host, port and database from the URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary (the tests' own server listens on a unix socket only)")
    port = free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis_py = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/4")
    client = RespClient.from_client(redis_py)
    try:
        for _ in range(100):  # bounded: the server takes a moment to listen
            try:
                assert await client.call("SET", "over", "tcp") == "OK"
                break
            except RedisConnectionError:
                await asyncio.sleep(0.05)
        assert await redis_py.get("over") == b"tcp"
    finally:
        await client.aclose()
        await redis_py.aclose()
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("junk", [b"!3\r\nabc\r\n", b"$x\r\n", b"*two\r\n", b":1.5\r\n", b"*1\r\n" * 5000 + b":1\r\n"])
async def test_a_server_answering_junk_fails_the_callers_not_the_client(junk: bytes) -> None:
    """Not RESP2 (a RESP3 type, a bad length or count) or nested past any reply of ours: whoever waits gets a connection error, the connection
    is dropped, and the next call connects again."""
    answers = [junk, b"+PONG\r\n"]
    served: list[asyncio.Future[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        served.append(done)
        await reader.readuntil(b"\r\n")
        writer.write(answers.pop(0))
        await writer.drain()
        await reader.read()  # until the client drops the connection
        writer.close()
        done.set_result(None)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RespClient(host="127.0.0.1", port=port)
    try:
        with pytest.raises(RedisConnectionError, match="unreadable"):
            await client.call("PING")
        assert await client.call("PING") == "PONG"
    finally:
        await client.aclose()
        async with asyncio.timeout(10):
            await asyncio.gather(*served)
        server.close()
        await server.wait_closed()
