"""A lean NIP-01 relay client on aiohttp websockets, for the sidecar's busy paths: peer envelopes and the
private relay its DVM talks to.

Why not nostr-sdk's ``Client`` there: through its Python bindings every sent and every received event crosses
an asynchronous FFI boundary, which costs about half a millisecond of CPU per event here, and a job moves some
twenty events through each sidecar. This client speaks the relay protocol directly: ``EVENT``/``OK`` to publish,
``REQ``/``EVENT``/``EOSE``/``CLOSED`` to subscribe, ``NOTICE``. Events travel as parsed JSON objects; checking
them (ids, signatures, what they say) is the caller's business, as with any relay.

Behaviour:
- one websocket per relay, opened again after ``retry`` seconds whenever it drops, forever until ``stop()``;
- subscriptions are kept and placed again on every connection (their filters are recomputed then, so a
  ``since`` follows the clock); one the relay CLOSED is placed again ``retry`` seconds later;
- ``publish`` sends and waits for the relay's ``OK`` (a ``duplicate:`` answer counts as accepted); while the
  relay is unreachable it waits for the connection, within its timeout;
- a relay message over ``max_message_bytes`` is refused unparsed and counted (``oversize``); one that is not a
  relay message is counted (``malformed``); neither drops the connection, so a peer that posts junk to a
  shared relay cannot cut a member off it. Only a frame over aiohttp's own cap (``FRAME_CAP``) ends the
  connection;
- the reader never waits for the consumer: events go through a buffer of ``EVENT_BUFFER`` to a task that
  hands them over in batches (whatever arrived meanwhile, so a consumer can check many with one Redis round
  trip). A consumer that may publish on this same connection while handling events would otherwise wait for
  an ``OK`` its own handler keeps unread. When the buffer is full, new events are dropped and counted
  (``overflow``), as nostr-sdk drops notifications past its channel size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from coincurve import PublicKeyXOnly

from consensus.jsontext import dumps_compact, loads_bounded
from consensus.nip90 import MAX_EVENT_BYTES, NostrEvent

log = logging.getLogger(__name__)

FRAME_CAP = 16 << 20  # bytes in one websocket frame before aiohttp drops the connection
RETRY = 5.0  # seconds between attempts to reach a relay, and before placing a CLOSED subscription again
PUBLISH_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 15.0
# A relay that does not answer our close frame must not hold a stop for aiohttp's default 10 s.
_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0)
SEEN_IDS = 20_000  # event ids remembered to pass each event on once when several relays carry it
EVENT_BUFFER = 4096  # events received and not yet handed over, per relay
BATCH = 256  # events handed over at once, at most
_RELAY_MESSAGE_DEPTH = 5  # ["EVENT", sub, {"tags": [[...]]}]

Filters = Callable[[], list[dict[str, Any]]]
Received = tuple[dict[str, Any], int]  # an event and the size of the relay message that carried it
EventHandler = Callable[[str, list[Received]], Awaitable[None]]  # (relay url, events in arrival order)


def _check_url(url: str) -> str:
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")) or len(url) <= len("wss://"):
        raise ValueError(f"not a relay URL: {url!r} (ws://host:port or wss://host)")
    return url


def event_id_of(text: str) -> str:
    """The id of an event in JSON text; without parsing it when "id" comes first, as nostr-sdk and
    ``dumps_compact`` of a ``NostrEvent`` write it."""
    if text.startswith('{"id":"') and text[71:72] == '"':
        return text[7:71]
    event_id = json.loads(text).get("id")
    if not isinstance(event_id, str):
        raise ValueError("the event has no id")
    return event_id


def signature_valid(event: NostrEvent) -> bool:
    """The event's BIP-340 signature by its pubkey over its id (the id itself is checked when a ``NostrEvent``
    is made), by libsecp256k1."""
    try:
        return bool(PublicKeyXOnly(bytes.fromhex(event.pubkey)).verify(bytes.fromhex(event.sig), bytes.fromhex(event.id)))
    except ValueError:  # a pubkey that is not a point on the curve
        return False


@contextlib.contextmanager
def _quick_ack(ws: aiohttp.ClientWebSocketResponse) -> Iterator[Callable[[], None]]:
    """Acknowledge what the relay sends at once instead of up to 40 ms later (Linux's delayed ACK).

    A relay that writes without TCP_NODELAY (nostr-sdk's LocalRelay) holds each small message back until the
    previous one is acknowledged (Nagle); with the client's delayed ACK that is 20-40 ms per message, most of a
    job's latency on loopback. TCP_QUICKACK is not sticky, so it is set again after every read: through a
    socket object of our own on a duplicate of the connection's descriptor, made once (uvloop's stand-in
    socket makes a new socket object for every call), closed when the connection's reading ends.
    """
    transport = ws.get_extra_info("socket")
    option = getattr(socket, "TCP_QUICKACK", None)
    if transport is None or option is None:
        yield lambda: None
        return
    try:
        own = socket.socket(fileno=os.dup(transport.fileno()))
    except OSError:
        yield lambda: None
        return

    def ack_now() -> None:
        with contextlib.suppress(OSError):
            own.setsockopt(socket.IPPROTO_TCP, option, 1)

    with own:
        ack_now()
        yield ack_now


@dataclass(frozen=True)
class Published:
    """A relay's answer to one event; ``answered`` False when there was none (not connected, no OK in time)."""

    accepted: bool
    message: str
    answered: bool = True


class RelayConnection:
    """One relay, kept connected: ``await start()``, ``publish``, ``subscribe``, ``await stop()``."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        on_event: EventHandler,
        *,
        on_rejected: Callable[[str], None] = lambda reason: None,
        max_message_bytes: int = MAX_EVENT_BYTES + 1024,
        retry: float = RETRY,
    ) -> None:
        self.url = _check_url(url)
        self._session = session
        self._on_event = on_event
        self._on_rejected = on_rejected
        self._max_bytes = max_message_bytes
        self._retry = retry
        self._subscriptions: dict[str, Filters] = {}
        self._pending: dict[str, asyncio.Future[Published]] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._up = asyncio.Event()
        self._received: asyncio.Queue[Received] = asyncio.Queue(EVENT_BUFFER)
        self._task: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._renewals: set[asyncio.Task[None]] = set()
        self._renewing: set[str] = set()  # subscriptions a CLOSED made us place again, not yet placed

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def start(self, timeout: float = 5.0) -> bool:
        """Start connecting; True if the relay answered within ``timeout`` (it keeps trying either way)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay {self.url}")
            self._dispatcher = asyncio.create_task(self._dispatch(), name=f"relay events {self.url}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._up.wait()
        return self.connected

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._dispatcher, *self._renewals) if t is not None]
        self._task = self._dispatcher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def subscribe(self, subscription: str, filters: Filters) -> None:
        """Place (or replace) a subscription now if connected, and again on every later connection."""
        self._subscriptions[subscription] = filters
        if self._ws is not None:
            self._spawn(self._request(self._ws, subscription))

    async def publish(self, event: dict[str, Any] | str, event_id: str, timeout: float = PUBLISH_TIMEOUT) -> Published:
        """Send one event (a dict, or its JSON text) and wait for the relay's OK."""
        text = event if isinstance(event, str) else dumps_compact(event)
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
                ws = self._ws
                if ws is None:
                    return Published(False, "connection lost", answered=False)
                future = self._pending.get(event_id)
                if future is None:
                    future = self._pending[event_id] = asyncio.get_running_loop().create_future()
                    future.add_done_callback(lambda _: self._pending.pop(event_id, None))
                await ws.send_str(f'["EVENT",{text}]')
                return await asyncio.shield(future)  # others may wait on the same event's answer
        except TimeoutError:
            late = Published(False, "no answer from the relay in time", answered=False)
            future = self._pending.get(event_id)
            if future is not None and not future.done():
                future.set_result(late)  # also forgets it: a relay that never answers leaves nothing behind
            return late
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            return Published(False, f"not sent: {exc}", answered=False)

    # --- the connection ---

    async def _run(self) -> None:
        while True:
            try:
                async with self._session.ws_connect(
                    self.url, max_msg_size=FRAME_CAP, heartbeat=30.0, timeout=_WS_TIMEOUT
                ) as ws:
                    self._ws = ws
                    self._up.set()
                    log.debug("connected to %s", self.url)
                    for subscription in list(self._subscriptions):
                        await self._request(ws, subscription)
                    await self._read(ws)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.debug("relay %s unreachable: %s", self.url, exc)
            except Exception:  # whatever it was, this relay is tried again: the loop must not end
                log.exception("relay %s: connection failed", self.url)
            finally:
                self._ws = None
                self._up.clear()
                for future in list(self._pending.values()):
                    if not future.done():
                        future.set_result(Published(False, "connection lost", answered=False))
            await asyncio.sleep(self._retry)

    async def _request(self, ws: aiohttp.ClientWebSocketResponse, subscription: str) -> None:
        filters = self._subscriptions.get(subscription)
        if filters is None or ws.closed:
            return
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
            await ws.send_str(dumps_compact(["REQ", subscription, *filters()]))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with _quick_ack(ws) as ack_now:
            async for frame in ws:
                ack_now()
                if frame.type is aiohttp.WSMsgType.TEXT:
                    self._handle(ws, frame.data)
                elif frame.type is aiohttp.WSMsgType.ERROR:
                    log.info("relay %s: connection error: %s", self.url, ws.exception())
                    return

    def _handle(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > self._max_bytes:
            self._on_rejected("oversize")
            return
        try:
            message = loads_bounded(text, max_bytes=self._max_bytes, max_depth=_RELAY_MESSAGE_DEPTH, what="relay message")
        except ValueError:
            self._on_rejected("malformed")
            return
        if not isinstance(message, list) or not message or not isinstance(message[0], str):
            self._on_rejected("malformed")
            return
        verb = message[0]
        if verb == "EVENT" and len(message) == 3 and message[1] in self._subscriptions and isinstance(message[2], dict):
            try:
                self._received.put_nowait((message[2], size))
            except asyncio.QueueFull:
                self._on_rejected("overflow")
        elif verb == "OK" and len(message) >= 3 and isinstance(message[1], str):
            future = self._pending.get(message[1])
            if future is not None and not future.done():
                note = message[3] if len(message) > 3 and isinstance(message[3], str) else ""
                future.set_result(Published(message[2] is True or note.startswith("duplicate:"), note))
        elif verb == "CLOSED" and len(message) >= 2 and message[1] in self._subscriptions:
            if message[1] in self._renewing:
                return  # already to be placed again: a relay repeating CLOSED costs one task, not one each
            self._renewing.add(message[1])
            log.info("relay %s closed subscription %s: %.200s; placing it again in %g s",
                     self.url, message[1], message[2] if len(message) > 2 else "", self._retry)
            self._spawn(self._renew(ws, message[1]))
        elif verb == "NOTICE":
            log.debug("relay %s: notice %.200s", self.url, message[1] if len(message) > 1 else "")
        elif verb not in ("EOSE", "AUTH", "EVENT"):
            self._on_rejected("malformed")

    async def _dispatch(self) -> None:
        while True:
            batch = [await self._received.get()]
            while len(batch) < BATCH and not self._received.empty():
                batch.append(self._received.get_nowait())
            try:
                await self._on_event(self.url, batch)
            except Exception:  # the consumer's bug must cost these events, not every later one
                log.exception("relay %s: handling %d events failed", self.url, len(batch))

    async def _renew(self, ws: aiohttp.ClientWebSocketResponse, subscription: str) -> None:
        try:
            await asyncio.sleep(self._retry)
            if self._ws is ws:
                await self._request(ws, subscription)
        finally:
            self._renewing.discard(subscription)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)


class RelayPool:
    """Several relays as one: publish to all, subscribe on all, each event passed on once."""

    def __init__(
        self,
        urls: Sequence[str],
        on_event: Callable[[list[Received]], Awaitable[None]],
        *,
        on_rejected: Callable[[str], None] = lambda reason: None,
        max_message_bytes: int = MAX_EVENT_BYTES + 1024,
        retry: float = RETRY,
    ) -> None:
        if not urls:
            raise ValueError("a relay pool needs at least one relay URL")
        for url in urls:
            _check_url(url)
        self._urls = list(dict.fromkeys(urls))
        self._on_event = on_event
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._options = {"on_rejected": on_rejected, "max_message_bytes": max_message_bytes, "retry": retry}
        self._session: aiohttp.ClientSession | None = None
        self._subscriptions: dict[str, Filters] = {}
        self.relays: list[RelayConnection] = []

    async def start(self, timeout: float = 5.0) -> int:
        """Connect to every relay; the number that answered within ``timeout``."""
        if self._session is None:
            # The timeout bounds the opening handshake only: a relay that takes the connection and never
            # answers the upgrade is tried again instead of holding the member off every relay.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HANDSHAKE_TIMEOUT))
            self.relays = [RelayConnection(url, self._session, self._first_sight, **self._options)  # type: ignore[arg-type]
                           for url in self._urls]
            for relay in self.relays:
                for subscription, filters in self._subscriptions.items():
                    relay.subscribe(subscription, filters)
        answered = await asyncio.gather(*(relay.start(timeout) for relay in self.relays))
        return sum(answered)

    async def stop(self) -> None:
        session, self._session = self._session, None
        try:
            await asyncio.gather(*(relay.stop() for relay in self.relays))
        finally:  # also when the stop itself is cancelled: no connection or session outlives the pool
            if session is not None:
                await session.close()

    def connected(self) -> int:
        return sum(relay.connected for relay in self.relays)

    def subscribe(self, subscription: str, filters: Filters) -> None:
        """Place a subscription on every relay (also on those connected later)."""
        self._subscriptions[subscription] = filters
        for relay in self.relays:
            relay.subscribe(subscription, filters)

    async def publish(self, event: dict[str, Any] | str, event_id: str,
                      timeout: float = PUBLISH_TIMEOUT) -> dict[str, Published]:
        """Send to every relay at once; each relay's answer by URL."""
        text = event if isinstance(event, str) else dumps_compact(event)
        answers = await asyncio.gather(*(relay.publish(text, event_id, timeout) for relay in self.relays))
        return dict(zip(self._urls, answers))

    async def _first_sight(self, url: str, batch: list[Received]) -> None:
        if len(self.relays) > 1:
            batch = [item for item in batch if self._first(item[0].get("id"))]
        if batch:
            await self._on_event(batch)

    def _first(self, event_id: object) -> bool:
        if not isinstance(event_id, str):
            return True  # the consumer refuses it
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return True
