"""A lean Redis client for the busy paths: commands in, replies out, nothing else.

redis-py's asyncio client spends about 90 µs of CPU on one command (argument encoding, the connection pool,
the retry wrapper, a pipeline object, asyncio streams); a job moves a dozen commands through each sidecar. This
client writes a whole batch of commands, and every batch queued in the same turn of the event loop, in one
``write`` on one connection and matches replies to waiters in order (RESP2, parsed from one buffer by an
``asyncio.Protocol``): about 10-30 µs a command. It carries job-state writes, request claims, the replay
record and the ``redis`` peer transport; everything else stays on redis-py, from whose client it takes its
address (``from_client``).

Rules: errors are redis-py's exception types (``redis.ConnectionError`` for a lost or refused connection, a
reply error as ``redis.ResponseError`` or ``NoScriptError``), so callers handle both clients alike; a lost
connection fails every command waiting on it and the next call connects again; a caller cancelled while its
reply is on the way leaves the order intact (the reply is read and dropped). One connection serves any number
of callers at once, except that a blocking command (``XREAD BLOCK``) holds it: give such a reader a client of
its own. No socket timeout on commands, as with the redis-py client (``redis_client.connect``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from sidecar.redis_client import CONNECT_TIMEOUT

Arg = bytes | str | int | float
Reply = Any  # bytes, int, str (a status), None, a list of replies, or a ResponseError (a command's error)

_INCOMPLETE = object()


def pack(command: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, str):
            raw = arg.encode()
        elif isinstance(arg, bytes):
            raw = arg
        elif isinstance(arg, bool):
            raise ValueError("a Redis argument cannot be a bool")
        elif isinstance(arg, int):
            raw = b"%d" % arg
        elif isinstance(arg, float):
            raw = repr(arg).encode()
        else:
            raise ValueError(f"a Redis argument must be bytes, str, int or float, not {type(arg).__name__}")
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _error(message: str) -> ResponseError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


def reply_end(buffer: bytearray, pos: int) -> int:
    """Where the reply at ``pos`` ends, or -1 while it is incomplete: a scan that builds and copies nothing, so
    a large reply arriving in many pieces costs a scan per piece, not a parse of all that came so far."""
    pending = 1
    while pending:
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            return -1
        kind, pending = buffer[pos], pending - 1
        if kind == 0x24:  # $ bulk string: its length says where it ends
            size = int(buffer[pos + 1:end])
            pos = end + 2 + (size + 2 if size >= 0 else 0)
            if pos > len(buffer):
                return -1
        else:
            if kind == 0x2A:  # * array: that many replies more
                pending += max(int(buffer[pos + 1:end]), 0)
            pos = end + 2
    return pos


def parse(buffer: bytearray, pos: int) -> tuple[Reply, int]:
    """One reply from ``buffer`` at ``pos``: (reply, position after it), or (_INCOMPLETE, pos)."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind, line, after = buffer[pos], bytes(buffer[pos + 1:end]), end + 2
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            return _INCOMPLETE, pos
        return bytes(buffer[after:after + size]), after + size + 2
    if kind == 0x3A:  # : integer
        return int(line), after
    if kind == 0x2B:  # + status
        return line.decode(), after
    if kind == 0x2D:  # - error
        return _error(line.decode(errors="replace")), after
    if kind == 0x2A:  # * array
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse(buffer, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, after
    raise RedisConnectionError(f"unexpected reply from Redis: {bytes(buffer[pos:pos + 16])!r}")


class _Batch:
    """The replies one ``execute`` waits for: ``count`` of them, in order, then ``done`` holds them all."""

    __slots__ = ("count", "done", "replies")

    def __init__(self, done: asyncio.Future[list[Reply]], count: int) -> None:
        self.done = done
        self.count = count
        self.replies: list[Reply] = []


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[_Batch] = deque()
        self.buffer = bytearray()
        self.partial = False  # the reply at the front of the buffer was found incomplete
        self.lost: BaseException | None = None
        self.unsent: list[bytes] = []  # batches queued in this turn of the event loop, written together at its end

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, batch: _Batch, packed: bytes) -> None:
        """Queue a batch: every batch of one turn of the loop goes out in one write (one system call, and one
        read for Redis), in the order queued, which is the order its replies come back in."""
        self.waiting.append(batch)
        if not self.unsent:
            asyncio.get_running_loop().call_soon(self._write)
        self.unsent.append(packed)

    def _write(self) -> None:
        unsent, self.unsent = self.unsent, []
        if self.lost is None and self.transport is not None and not self.transport.is_closing():
            self.transport.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        try:
            while self.waiting:
                # A reply found incomplete is parsed again only once it is whole: scanning is cheap, parsing
                # what came so far on every read is not. A reply is first parsed at once (the common case).
                if self.partial and reply_end(self.buffer, pos) < 0:
                    break
                reply, pos = parse(self.buffer, pos)
                self.partial = reply is _INCOMPLETE
                if self.partial:
                    break
                batch = self.waiting[0]
                batch.replies.append(reply)
                if len(batch.replies) == batch.count:
                    self.waiting.popleft()
                    if not batch.done.done():  # a cancelled caller: its replies are read and dropped
                        batch.done.set_result(batch.replies)
        except (ValueError, RedisConnectionError, RecursionError) as exc:  # no reply of ours nests that deep
            self._fail(RedisConnectionError(f"unreadable reply from Redis: {exc.__class__.__name__}: {exc}"))
            assert self.transport is not None
            self.transport.abort()
            return
        del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        while self.waiting:
            batch = self.waiting.popleft()
            if not batch.done.done():
                batch.done.set_exception(exc)


class RespClient:
    """Commands on one connection to the Redis at ``path`` (a Unix socket) or ``host``:``port``."""

    def __init__(
        self, *, path: str | None = None, host: str = "localhost", port: int = 6379, db: int = 0,
        username: str | None = None, password: str | None = None, tls: bool = False,
    ) -> None:
        self._path, self._host, self._port = path, host, port
        self._setup: list[list[Arg]] = []
        if password is not None:
            self._setup.append(["AUTH", *([username] if username else []), password])
        if db:
            self._setup.append(["SELECT", db])
        self._tls = tls
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._closed = False

    @classmethod
    def from_client(cls, client: aioredis.Redis) -> RespClient:
        """A client for the Redis that a redis-py client talks to (same address, database and credentials)."""
        kwargs = client.connection_pool.connection_kwargs
        return cls(
            path=kwargs.get("path"), host=kwargs.get("host", "localhost"), port=int(kwargs.get("port", 6379)),
            db=int(kwargs.get("db") or 0), username=kwargs.get("username"), password=kwargs.get("password"),
            tls=issubclass(client.connection_pool.connection_class, aioredis.SSLConnection),
        )

    async def call(self, *command: Arg) -> Reply:
        """One command's reply; a reply error is raised."""
        (reply,) = await self.execute([command])
        return reply

    async def execute(self, commands: Sequence[Sequence[Arg]], *, raise_on_error: bool = True) -> list[Reply]:
        """The replies to ``commands``, sent in one write. With ``raise_on_error`` the first reply error is raised;
        without, errors stand in the list in their command's place."""
        if not commands:
            return []
        packed = b"".join(pack(command) for command in commands)  # ValueError before anything is sent
        reused = self._protocol is not None and self._protocol.lost is None
        try:
            replies = await self._send(packed, len(commands))
        except RedisConnectionError:
            if not reused:
                raise
            # A connection found dead on use (Redis restarted while this one was idle): once more on a new one,
            # as redis-py does. The commands given here are safe to run twice (the callers' retries need that too).
            replies = await self._send(packed, len(commands))
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
        return replies

    async def _send(self, packed: bytes, count: int) -> list[Reply]:
        protocol = await self._connection()
        batch = _Batch(asyncio.get_running_loop().create_future(), count)
        protocol.send(batch, packed)
        return await batch.done

    def close(self) -> None:
        """Close the connection (commands waiting fail); a connection being made is abandoned."""
        self._closed = True
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def aclose(self) -> None:
        connecting = self._connecting
        self.close()
        if connecting is not None:
            await asyncio.gather(connecting, return_exceptions=True)

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._closed:
            raise RedisConnectionError("the Redis client is closed")
        if self._connecting is None:  # callers arriving meanwhile share one attempt
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self._path:
                    _, protocol = await loop.create_unix_connection(_Protocol, self._path)
                else:
                    context = ssl.create_default_context() if self._tls else None
                    _, protocol = await loop.create_connection(_Protocol, self._host, self._port, ssl=context)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from None
        for command in self._setup:
            batch = _Batch(loop.create_future(), 1)
            protocol.waiting.append(batch)
            assert protocol.transport is not None
            protocol.transport.write(pack(command))
            (reply,) = await batch.done
            if isinstance(reply, ResponseError):
                protocol.transport.close()
                raise RedisConnectionError(f"Redis refused {command[0]!s}: {reply}")
        if self._closed:
            assert protocol.transport is not None
            protocol.transport.close()
            raise RedisConnectionError("the Redis client is closed")
        self._protocol = protocol
        return protocol
