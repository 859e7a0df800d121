"""The lean relay client against real relays (nostr-sdk's LocalRelay) and, for what a well-behaved relay never
does (junk, oversize, CLOSED, silence), against a small aiohttp websocket server that plays a hostile relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from nostr_sdk import EventBuilder, Keys, Kind, Tag

from consensus.nip90 import NostrEvent
from sidecar import nostr_client
from sidecar.nostr_client import Published, Received, RelayPool, event_id_of, signature_valid
from sidecar.relay import EmbeddedRelay, free_port

KIND = 25090


def note(keys: Keys, text: str, to: Keys) -> dict[str, Any]:
    event = EventBuilder(Kind(KIND), text).tags([Tag.parse(["p", to.public_key().to_hex()])]).finalize(keys)
    return dict(json.loads(event.as_json()))


class Sink:
    def __init__(self) -> None:
        self.events: list[Received] = []
        self.rejected: list[str] = []
        self.arrived = asyncio.Event()

    async def __call__(self, batch: list[Received]) -> None:
        self.events += batch
        self.arrived.set()

    async def wait(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def relay() -> AsyncIterator[EmbeddedRelay]:
    async with EmbeddedRelay() as embedded:
        yield embedded


def addressed_to(keys: Keys) -> list[dict[str, Any]]:
    return [{"kinds": [KIND], "#p": [keys.public_key().to_hex()]}]


async def test_publish_subscribe_and_verify(relay: EmbeddedRelay) -> None:
    alice, bob = Keys.generate(), Keys.generate()
    sink = Sink()
    reader = RelayPool([relay.url], sink)
    reader.subscribe("inbox", lambda: addressed_to(bob))
    writer = RelayPool([relay.url], Sink())
    try:
        assert await reader.start() == 1 and await writer.start() == 1
        events = [note(alice, f"hello {n}", bob) for n in range(50)]
        answers = await asyncio.gather(*(writer.publish(e, e["id"]) for e in events))
        assert all(a == {relay.url: Published(True, "")} for a in answers)
        await sink.wait(50)
        assert sorted(e["id"] for e, _ in sink.events) == sorted(e["id"] for e in events)
        assert all(signature_valid(NostrEvent.from_dict(e)) for e, _ in sink.events)
        forged = NostrEvent.from_dict({**events[0], "sig": events[1]["sig"]})
        assert not signature_valid(forged)
    finally:
        await reader.stop()
        await writer.stop()


async def test_one_connection_reads_what_it_publishes_to_others(relay: EmbeddedRelay) -> None:
    """Unlike nostr-sdk's Client, one connection may both send and receive (the DVM side relies on it)."""
    alice = Keys.generate()
    sink = Sink()
    pool = RelayPool([relay.url], sink)
    pool.subscribe("all", lambda: [{"kinds": [KIND]}])
    try:
        await pool.start()
        event = note(alice, "to myself", alice)
        assert (await pool.publish(event, event["id"]))[relay.url].accepted
        await sink.wait(1)
    finally:
        await pool.stop()


async def test_reconnects_and_subscribes_again_after_the_relay_restarts() -> None:
    port = free_port()
    alice, bob = Keys.generate(), Keys.generate()
    sink = Sink()
    first = EmbeddedRelay(port=port)
    url = await first.start()
    reader = RelayPool([url], sink, retry=0.2)
    reader.subscribe("inbox", lambda: addressed_to(bob))
    writer = RelayPool([url], Sink(), retry=0.2)
    try:
        await reader.start()
        await writer.start()
        await first.stop()
        down = await writer.publish(note(alice, "lost", bob), "00" * 32, timeout=0.3)
        assert not down.popitem()[1].accepted
        second = EmbeddedRelay(port=port)
        await second.start()
        try:
            event = note(alice, "after the restart", bob)
            answer = await writer.publish(event, event["id"], timeout=10.0)  # waits for the connection
            assert answer[url].accepted
            await sink.wait(1)
            assert sink.events[0][0]["id"] == event["id"]
        finally:
            await second.stop()
    finally:
        await reader.stop()
        await writer.stop()


async def test_the_same_event_from_two_relays_is_passed_on_once() -> None:
    alice, bob = Keys.generate(), Keys.generate()
    sink = Sink()
    async with EmbeddedRelay() as one, EmbeddedRelay() as two:
        reader = RelayPool([one.url, two.url], sink)
        reader.subscribe("inbox", lambda: addressed_to(bob))
        writer = RelayPool([one.url, two.url], Sink())
        try:
            assert await reader.start() == 2 and await writer.start() == 2
            event = note(alice, "twice", bob)
            answers = await writer.publish(event, event["id"])
            assert set(answers) == {one.url, two.url} and all(a.accepted for a in answers.values())
            later = note(alice, "marker", bob)
            await writer.publish(later, later["id"])
            await sink.wait(2)
            await asyncio.sleep(0.2)
            assert sorted(e["id"] for e, _ in sink.events) == sorted([event["id"], later["id"]])
        finally:
            await reader.stop()
            await writer.stop()


# -- a relay that misbehaves


class HostileRelay:
    """Answers REQs with what the test scripts; records what it received; never answers EVENTs unless told."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.received: list[Any] = []
        self.connections = 0
        self.answer_ok = False
        self.deaf = asyncio.Event()  # set: stop reading (a close frame then goes unanswered) until ``hear``
        self.hear = asyncio.Event()

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.connections += 1
        async for frame in ws:
            if self.deaf.is_set():
                await self.hear.wait()
            message = json.loads(frame.data)
            self.received.append(message)
            if message[0] == "REQ":
                for text in self.script:
                    await ws.send_str(text.replace("SUB", message[1]))
            elif message[0] == "EVENT" and self.answer_ok:
                await ws.send_str(json.dumps(["OK", message[1]["id"], True, ""]))
        return ws

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_get("/", self.handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return f"ws://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


async def test_junk_and_oversize_are_counted_without_dropping_the_connection() -> None:
    alice, bob = Keys.generate(), Keys.generate()
    good = note(alice, "good", bob)
    script = [
        "not json", "[]", '{"a":1}', '["WHAT"]', "[" * 100 + "]" * 100,
        json.dumps(["EVENT", "SUB", {"content": "x" * 5000}]),  # over the 2,000-byte cap set below
        json.dumps(["EVENT", "someone-else", good]),  # not our subscription: ignored
        json.dumps(["NOTICE", "hello"]), json.dumps(["EOSE", "SUB"]),
        json.dumps(["EVENT", "SUB", good]),
    ]
    hostile = HostileRelay(script)
    async with hostile as url:
        sink, rejected = Sink(), []
        pool = RelayPool([url], sink, on_rejected=rejected.append, max_message_bytes=2000)
        pool.subscribe("inbox", lambda: addressed_to(bob))
        try:
            await pool.start()
            await sink.wait(1)
            assert [e["id"] for e, _ in sink.events] == [good["id"]]
            assert sorted(rejected) == sorted(["malformed"] * 5 + ["oversize"])
            assert hostile.connections == 1 and pool.connected() == 1
        finally:
            await pool.stop()


async def test_a_closed_subscription_is_placed_again_once_per_close_however_often_it_is_said() -> None:
    hostile = HostileRelay([json.dumps(["CLOSED", "SUB", "error: shutting down idle subscription"])] * 50)
    async with hostile as url:
        pool = RelayPool([url], Sink(), retry=0.1)
        pool.subscribe("inbox", lambda: [{"kinds": [KIND]}])

        def requests() -> int:
            return sum(1 for m in hostile.received if m[0] == "REQ")

        try:
            await pool.start()
            async with asyncio.timeout(5):
                while requests() < 3:
                    await asyncio.sleep(0.05)
            placed = requests()
            await asyncio.sleep(0.25)  # about two more rounds at retry 0.1 s; 50 renewals each would show
            assert requests() - placed <= 4
            assert hostile.connections == 1 and len(pool.relays[0]._renewals) <= 1
        finally:
            await pool.stop()


async def test_a_relay_that_never_answers_times_out_and_leaves_nothing_pending() -> None:
    hostile = HostileRelay([])
    async with hostile as url:
        pool = RelayPool([url], Sink())
        try:
            await pool.start()
            event = note(Keys.generate(), "unanswered", Keys.generate())
            answer = await pool.publish(event, event["id"], timeout=0.3)
            assert answer[url] == Published(False, "no answer from the relay in time", answered=False)
            assert not pool.relays[0]._pending
            hostile.answer_ok = True
            assert (await pool.publish(event, event["id"]))[url].accepted
        finally:
            await pool.stop()


async def test_a_relay_that_is_down_fails_a_publish_within_its_timeout() -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    pool = RelayPool([url], Sink(), retry=0.1)
    try:
        assert await pool.start(timeout=0.2) == 0
        event = note(Keys.generate(), "nowhere", Keys.generate())
        answer = await pool.publish(event, event["id"], timeout=0.3)
        assert not answer[url].accepted
    finally:
        await pool.stop()


@pytest.mark.parametrize("urls", [[], ["http://example.invalid"], ["ws://"], ["relay.example"]])
def test_refuses_urls_that_are_not_relays(urls: list[str]) -> None:
    with pytest.raises(ValueError, match="relay URL"):
        RelayPool(urls, Sink())


async def test_aiohttp_session_is_closed_on_stop(relay: EmbeddedRelay) -> None:
    pool = RelayPool([relay.url], Sink())
    await pool.start()
    session = pool._session
    assert isinstance(session, aiohttp.ClientSession)
    await pool.stop()
    assert session.closed


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
async def test_connections_that_end_leave_no_socket_open() -> None:
    """Each connection's reader holds a duplicate of its socket (to acknowledge reads at once): it is closed
    with the connection, through relay restarts and the pool's stop."""
    port = free_port()
    relay = EmbeddedRelay(port=port)
    url = await relay.start()
    try:
        await asyncio.sleep(0.2)
        before = _open_sockets()
        pool = RelayPool([url], Sink(), retry=0.1)
        await pool.start()
        for _ in range(3):  # the relay goes away and comes back: the pool connects again each time
            await relay.stop()
            relay = EmbeddedRelay(port=port)
            await relay.start()
            event = note(Keys.generate(), "after a restart", Keys.generate())
            async with asyncio.timeout(10):  # the first try may still meet the connection that just ended
                while not (await pool.publish(event, event["id"]))[url].accepted:
                    await asyncio.sleep(0.05)
        await pool.stop()
        async with asyncio.timeout(10):
            while _open_sockets() > before:
                await asyncio.sleep(0.05)
    finally:
        await relay.stop()


def test_event_id_of_reads_the_id_with_or_without_parsing() -> None:
    event = note(Keys.generate(), "x", Keys.generate())
    sdk_text = EventBuilder(Kind(KIND), "y").finalize(Keys.generate()).as_json()
    assert event_id_of(sdk_text) == json.loads(sdk_text)["id"]  # nostr-sdk writes the id first
    reordered = json.dumps({k: event[k] for k in reversed(list(event))})
    assert event_id_of(reordered) == event["id"]
    with pytest.raises(ValueError):
        event_id_of('{"content":"no id"}')


async def test_events_past_the_buffer_of_a_stalled_consumer_are_counted_as_overflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reader never waits for the consumer: what does not fit the buffer is dropped and counted, and the
    connection (and its OKs) keeps being read."""
    monkeypatch.setattr(nostr_client, "EVENT_BUFFER", 5)
    events = [note(Keys.generate(), f"e{n}", Keys.generate()) for n in range(20)]
    hostile = HostileRelay([json.dumps(["EVENT", "SUB", e]) for e in events])
    hostile.answer_ok = True
    release = asyncio.Event()

    async def stalled(batch: list[Received]) -> None:
        await release.wait()

    async with hostile as url:
        rejected: list[str] = []
        pool = RelayPool([url], stalled, on_rejected=rejected.append)
        pool.subscribe("inbox", lambda: [{"kinds": [KIND]}])
        try:
            await pool.start()
            async with asyncio.timeout(5):
                while len(rejected) < 20 - 5 - 1:  # the buffer, and one batch already handed over
                    await asyncio.sleep(0.02)
            assert set(rejected) == {"overflow"}
            answer = await pool.publish(events[0], events[0]["id"])
            assert answer[url].accepted  # OKs are still read while the consumer is stuck
        finally:
            release.set()
            await pool.stop()


async def test_a_relay_that_never_answers_the_close_does_not_hold_the_stop() -> None:
    """Stopping sends a close frame; a relay that never answers it costs a short wait (not aiohttp's 10 s,
    longer than the sidecar gives a part to stop) and the session is closed all the same."""
    hostile = HostileRelay([])
    async with hostile as url:
        pool = RelayPool([url], Sink())
        pool.subscribe("inbox", lambda: [{"kinds": [KIND]}])
        await pool.start()
        session = pool._session
        assert session is not None
        hostile.deaf.set()
        await pool.relays[0]._ws.send_str("[]")  # type: ignore[union-attr]  # the relay stops reading here
        try:
            async with asyncio.timeout(5):
                await pool.stop()
        finally:
            hostile.hear.set()
        assert session.closed
