"""The smallest whole-process check: an operator's setup (CLI ceremony, config files, `dvm-sidecar run`)
announces the federation (NIP-89, co-signed) and co-signs a job."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from nostr_sdk import Event, Filter, Kind, PublicKey, ReqTarget

from sidecar.config import load_federation
from sidecar.redis_server import RedisServer
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


async def test_a_member_waits_for_its_redis_and_stops_at_once_while_waiting(
    tmp_path: Path, public_relay
) -> None:
    """Started before its Redis (compose may order them so; Redis may be restarting), a member waits for it
    with one log line and then works; asked to stop while it waits, it stops at once."""
    server = RedisServer(tmp_path / "late-redis")
    fed = ProcessFederation(tmp_path / "fed", public_relay=public_relay.url, redis_url=server.url)
    try:
        first = fed.members[1]
        with first.log.open("ab") as log:
            first.sidecar = subprocess.Popen([*first.program, "run", "--config", str(first.config)],
                                             stdout=log, stderr=subprocess.STDOUT)
        await _until(lambda: "not reachable; waiting for it" in first.log.read_text(), "the waiting line")
        first.sidecar.send_signal(signal.SIGTERM)
        await _until(lambda: first.sidecar is not None and first.sidecar.poll() is not None, "the stop", tries=100)
        assert first.sidecar.returncode == 0
        assert "Traceback" not in first.log.read_text()
        server.start()
        fed.start_all()
        async with Customer(public_relay.url, _group(fed)) as customer:
            job = await customer.request("after Redis came")
            assert (await customer.outcome(job, timeout=30)).content() == job.expected
    finally:
        fed.stop()
        server.stop()


async def _until(check: Callable[[], bool], what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no sign of {what}")
