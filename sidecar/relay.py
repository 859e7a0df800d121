"""An embedded nostr relay (nostr-sdk ``LocalRelay``) and small nostr-sdk helpers the service and tests share.

The embedded relay serves as the operator's private relay (the DVM's only relay), the demo's public relay and
the tests' relay. Its rate limit is raised: nostr-sdk's default (60 events a minute per connection) answers
"rate-limited: slow down" to the sidecar's and the tests' bursts. It listens on 127.0.0.1 unless told
otherwise (a container that must reach it over an internal network passes its own address).

The helpers keep the rest of the code from knowing nostr-sdk 0.45's call shapes: connect a ``Client`` to one
URL, move events between ``nostr_sdk.Event`` and ``consensus.nip90.NostrEvent`` (through JSON, which both
sides check strictly), verify with ``Event.verify()``, and read the events a client receives (signing is
``sidecar.schnorr``'s). A ``Client`` never sees events it published itself: listen with a second client.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from nostr_sdk import (
    Client,
    ClientNotificationStream,
    Event,
    LocalRelay,
    LocalRelayBuilder,
    NostrSdkError,
    RateLimit,
    RelayStatus,
    RelayUrl,
)

from consensus.nip90 import MAX_EVENT_BYTES, NostrEvent

LOOPBACK = "127.0.0.1"
_BIND_ATTEMPTS = 5  # a free port found by probing can be taken before the relay binds it
_RELEASE_WAIT = 5.0  # seconds to wait for the listening socket to close on stop
_SHUTDOWN_AGAIN = 0.25  # seconds after which a shutdown the relay has not acted on is sent again


@dataclass(frozen=True)
class RelayLimits:
    """Per-connection limits: open subscriptions (REQs) and events accepted a minute."""

    max_subscriptions: int = 10_000
    events_per_minute: int = 6_000_000  # 100,000 a second: never the bottleneck on one machine

    def __post_init__(self) -> None:
        for name in ("max_subscriptions", "events_per_minute"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value < 2**32:
                raise ValueError(f"relay limit {name} must be an integer in 1..{2**32 - 1}")


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the relay binds; TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedRelay:
    """A nostr-sdk ``LocalRelay`` on ``host``:``port`` (a free port when none is given).

    ``await start()`` returns its ws URL; ``await stop()`` returns once the port is released, so a relay can
    be started again on the same port (a restart test). Also an async context manager.
    """

    def __init__(
        self, *, port: int | None = None, host: str = LOOPBACK, limits: RelayLimits | None = None
    ) -> None:
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"relay port {port} is not in 1..65535")
        self._host = host
        self._port = port
        self._limits = limits or RelayLimits()
        self._relay: LocalRelay | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the relay is not running: call start() first")
        return self._url

    @property
    def port(self) -> int | None:
        return self._port

    async def start(self) -> str:
        if self._relay is not None:
            return self.url
        attempts = 1 if self._port is not None else _BIND_ATTEMPTS
        for attempt in range(attempts):
            port = self._port if self._port is not None else free_port(self._host)
            relay = self._build(port)
            try:
                await relay.run()
            except NostrSdkError as exc:
                if attempt + 1 < attempts and "in use" in str(exc):
                    continue
                raise OSError(f"cannot start a relay on {self._host}:{port}: {exc}") from None
            self._relay, self._port = relay, port
            self._url = f"ws://{self._host}:{port}"
            return self._url
        raise AssertionError("unreachable")  # the last attempt either returns or raises

    def _build(self, port: int) -> LocalRelay:
        limit = RateLimit(
            max_reqs=self._limits.max_subscriptions, notes_per_minute=self._limits.events_per_minute
        )
        return LocalRelayBuilder().addr(self._host).port(port).rate_limit(limit).build()

    async def stop(self) -> None:
        relay, self._relay, self._url = self._relay, None, None
        if relay is None or self._port is None:
            return
        # A shutdown sent just after the relay started can be lost (nostr-sdk 0.45's relay may not be listening
        # for it yet: about one start/stop in eight kept serving here), so it is sent again until the port is
        # released.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RELEASE_WAIT
        resend = 0.0
        while True:
            if loop.time() >= resend:
                relay.shutdown()
                resend = loop.time() + _SHUTDOWN_AGAIN
            if _port_is_free(self._host, self._port) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        del relay  # the relay also stops when its last reference is dropped

    async def __aenter__(self) -> EmbeddedRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


# ----------------------------------------------------------------------------------------------------
# Clients


async def connect_client(url: str, *, timeout: float = 5.0, require: bool = True) -> Client:
    """A ``Client`` on the one relay at ``url``, with nostr-sdk's reconnection running in the background.

    With ``require`` it raises ``ConnectionError`` when the relay is not reachable within ``timeout``;
    without, it returns anyway and keeps trying (a DVM that starts before its relay).
    """
    client = Client()
    try:
        await client.add_relay(RelayUrl.parse(url))
    except NostrSdkError as exc:
        raise ValueError(f"not a relay URL: {url!r} ({exc})") from None
    await client.connect(timedelta(seconds=timeout))
    if require:
        relay = await client.relay(RelayUrl.parse(url))
        if relay is None or relay.status() != RelayStatus.CONNECTED:
            await client.shutdown()
            raise ConnectionError(f"relay {url} did not answer within {timeout:g} s")
    return client


class EventFeed:
    """The events a client receives from its subscriptions, first sight only, in arrival order.

    Create it BEFORE subscribing: the underlying notification stream starts at creation.
    """

    def __init__(self, client: Client) -> None:
        self._stream: ClientNotificationStream = client.notifications()
        self._closed = False

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event; ``None`` on timeout or when the client has shut down."""
        if self._closed:
            return None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                notification = await asyncio.wait_for(self._stream.next(), remaining)
            except TimeoutError:
                return None
            if notification is None or notification.is_shutdown():
                self._closed = True
                return None
            if notification.is_new_event():
                return notification.event

    async def __aiter__(self) -> AsyncIterator[Event]:
        while (event := await self.next()) is not None:
            yield event


# ----------------------------------------------------------------------------------------------------
# Events across the boundary


def to_sdk_event(event: NostrEvent) -> Event:
    return Event.from_json(event.to_json())


def from_sdk_event(event: Event, *, max_bytes: int = MAX_EVENT_BYTES) -> NostrEvent:
    """The core's view of an event (``ValueError`` if it breaks the core's stricter rules or size cap)."""
    return NostrEvent.from_json(event.as_json(), max_bytes=max_bytes)


def verify(event: NostrEvent | Event) -> bool:
    """Id and BIP-340 signature, checked by nostr-sdk."""
    try:
        sdk_event = event if isinstance(event, Event) else to_sdk_event(event)
        return bool(sdk_event.verify())
    except NostrSdkError:
        return False
