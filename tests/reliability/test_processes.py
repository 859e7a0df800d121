"""The smallest whole-process check: an operator's setup (CLI ceremony, config files, `dvm-sidecar run`)
announces the federation (NIP-89, co-signed) and co-signs a job."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable
from datetime import timedelta

from nostr_sdk import Event, Filter, Kind, PublicKey, ReqTarget

from sidecar.config import load_federation
from sidecar.relay import connect_client
from tests.e2e.customer import Customer
from tests.e2e.processes import ProcessFederation


async def _announcements(url: str, group: str) -> list[Event]:
    client = await connect_client(url)
    try:
        found = await client.fetch_events(
            ReqTarget.auto([Filter().kind(Kind(31990)).author(PublicKey.parse(group))]), timedelta(seconds=5)
        )
        return list(found)
    finally:
        await client.shutdown()


def _group(fed: ProcessFederation) -> str:
    return load_federation(fed.root / "federation.toml").group_pubkey


async def test_a_federation_of_processes_cosigns_a_job(
    process_federation: Callable[..., ProcessFederation], public_relay
) -> None:
    fed = process_federation()
    fed.start_all()
    async with Customer(public_relay.url, _group(fed)) as customer:
        job = await customer.request("hello processes")
        event = await customer.outcome(job, timeout=30)
        assert event.verify() and event.author().to_hex() == _group(fed)
        assert event.content() == job.expected
        assert len(await customer.stored(job)) == 1
        customer.check_all_federation()
    announcements: list[Event] = []
    for _ in range(15):  # co-signed at start-up, beside the job: allow it a while on a loaded machine
        announcements = await _announcements(public_relay.url, _group(fed))
        if announcements:
            break
        await asyncio.sleep(2)
    assert len(announcements) == 1  # co-signed once, whoever coordinated; the same event id from everyone
    (event,) = announcements
    assert event.verify() and event.kind().as_u16() == 31990
    assert ["k", "5050"] in [t.to_vec() for t in event.tags()]
    assert tomllib.loads(fed.members[1].config.read_text())["member"]["index"] == 1
