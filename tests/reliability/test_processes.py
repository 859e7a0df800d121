"""The smallest whole-process check: an operator's setup (CLI ceremony, config files, `dvm-sidecar run`)
co-signs a job, and a member killed with SIGKILL after the job started is restarted and catches up."""

from __future__ import annotations

import tomllib
from collections.abc import Callable

from sidecar.config import load_federation
from tests.e2e.customer import Customer
from tests.e2e.processes import ProcessFederation


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
    assert tomllib.loads(fed.members[1].config.read_text())["member"]["index"] == 1
