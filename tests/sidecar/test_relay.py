"""The embedded relay and the nostr-sdk helpers: limits raised, restart on the same port, events across."""

from __future__ import annotations

import asyncio

import pytest
from nostr_sdk import EventBuilder, Filter, Keys, Kind, ReqTarget

from consensus.nip90 import NostrEvent, UnsignedEvent
from sidecar.nostr_client import Received, RelayPool
from sidecar.relay import (
    LOOPBACK,
    EmbeddedRelay,
    EventFeed,
    RelayLimits,
    _port_is_free,
    connect_client,
    free_port,
    from_sdk_event,
    to_sdk_event,
    verify,
)
from sidecar.schnorr import Signer

BURST = 200  # well over nostr-sdk's default of 60 events a minute per connection


async def test_burst_is_not_rate_limited_and_reaches_a_second_client() -> None:
    keys = Keys.generate()
    async with EmbeddedRelay() as relay:
        assert relay.url.startswith("ws://127.0.0.1:")
        sender, listener = await connect_client(relay.url), await connect_client(relay.url)
        feed = EventFeed(listener)
        await listener.subscribe(ReqTarget.auto([Filter().kind(Kind(5050))]))
        sent = set()
        for index in range(BURST):
            event = Signer(keys).sign_event(UnsignedEvent(keys.public_key().to_hex(), 1, 5050, (), str(index)))
            output = await sender.send_event(to_sdk_event(event))
            assert output.success and not output.failed, output.failed
            sent.add(event.id)
        received = set()
        while len(received) < BURST and (got := await feed.next(10.0)) is not None:
            assert verify(got)
            received.add(from_sdk_event(got).id)
        assert received == sent
        await sender.shutdown()
        await listener.shutdown()


async def test_default_limit_would_refuse_the_burst() -> None:
    """The reason for the raised limits: with nostr-sdk's defaults the same burst is refused."""
    keys = Keys.generate()
    async with EmbeddedRelay(limits=RelayLimits(max_subscriptions=20, events_per_minute=60)) as relay:
        sender = await connect_client(relay.url)
        refused = []
        for index in range(BURST // 2):
            output = await sender.send_event(EventBuilder(Kind(1), str(index)).finalize(keys))
            refused.extend(output.failed.values())
        await sender.shutdown()
    assert refused and all("rate-limited" in reason for reason in refused)


async def test_restart_on_the_same_port() -> None:
    relay = EmbeddedRelay()
    url = await relay.start()
    client = await connect_client(url)
    await relay.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = relay.url
    assert await relay.start() == url  # the port was released by stop()
    await client.shutdown()
    await relay.stop()
    await relay.stop()  # stopping twice is harmless


async def test_a_relay_stopped_right_after_it_started_releases_its_port() -> None:
    """nostr-sdk's relay can miss a shutdown sent just after it started (about one start/stop in eight here,
    and it then kept serving): ``stop()`` sends it again until the port is released."""
    for _ in range(16):
        relay = EmbeddedRelay()
        await relay.start()
        port = relay.port
        assert port is not None
        await relay.stop()
        assert _port_is_free(LOOPBACK, port)


async def test_given_port_and_unreachable_relay() -> None:
    port = free_port()
    async with EmbeddedRelay(port=port) as relay:
        assert relay.url == f"ws://127.0.0.1:{port}"
        with pytest.raises(OSError, match="cannot start"):
            await EmbeddedRelay(port=port).start()
    with pytest.raises(ConnectionError, match="did not answer"):
        await connect_client(f"ws://127.0.0.1:{port}", timeout=0.5)
    with pytest.raises(ValueError, match="not a relay URL"):
        await connect_client("not a url")
    with pytest.raises(ValueError):
        EmbeddedRelay(port=70000)
    with pytest.raises(ValueError):
        RelayLimits(events_per_minute=2**32)


def test_events_cross_the_boundary() -> None:
    keys, other = Keys.generate(), Keys.generate()
    sdk_event = EventBuilder(Kind(6050), 'é\n"x"').finalize(keys)
    ours = from_sdk_event(sdk_event)
    assert verify(ours) and verify(sdk_event)
    assert to_sdk_event(ours).as_json() == sdk_event.as_json()
    forged = NostrEvent.from_dict({**ours.to_dict(), "sig": "00" * 64})
    assert not verify(forged)
    with pytest.raises(ValueError, match="pubkey"):
        Signer(other).sign_event(ours.unsigned())
    with pytest.raises(ValueError, match="limit"):
        from_sdk_event(EventBuilder(Kind(1), "x" * 100).finalize(keys), max_bytes=100)


async def test_the_relay_refuses_a_forged_event_and_passes_on_only_the_real_one() -> None:
    """The DVM side does not verify again what its private relay delivers: this is what it relies on."""
    keys = Keys.generate()
    real = Signer(keys).sign_event(UnsignedEvent(keys.public_key().to_hex(), 1, 6050, (), "the answer")).to_dict()
    bad_sig = {**real, "sig": ("1" if real["sig"][0] == "0" else "0") + real["sig"][1:]}
    bad_id = {**real, "content": "another answer"}  # id and signature of the real one
    received: list[Received] = []

    async def sink(batch: list[Received]) -> None:
        received.extend(batch)

    async with EmbeddedRelay() as relay:
        listener, sender = RelayPool([relay.url], sink), RelayPool([relay.url], sink)
        listener.subscribe("all", lambda: [{"kinds": [6050]}])
        assert await listener.start() and await sender.start()
        try:
            for forged, why in ((bad_sig, "signature"), (bad_id, "ID")):
                (answer,) = (await sender.publish(forged, forged["id"])).values()
                assert not answer.accepted and why in answer.message, answer
            (answer,) = (await sender.publish(real, real["id"])).values()
            assert answer.accepted
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # anything forged would have arrived by now too
        finally:
            await listener.stop()
            await sender.stop()
    assert [data for data, _ in received] == [real]
