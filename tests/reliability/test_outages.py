"""Outages of the parts a federation of real processes depends on: Redis (killed in the middle of a run and
started again, its AOF replaying the state; then stopped for a while), the public relay (stopped and started again on its
port), and one member's DVM (killed, then started again).

For each: jobs are sent before, during (when a customer can reach the relay) and after the outage, ``/readyz``
of every member reports the part down and then up again, and at the end every job has exactly one result on
the relay (by the federation's key, verified by nostr-sdk): none lost, none with two different results.
The members run with a canary (every few seconds) so that readiness can see a DVM that is gone.

``RELIABILITY_OUTAGE_JOBS`` (default 6) jobs are sent at each step; ``RELIABILITY_OUTAGE_SECONDS`` (default 5)
is how long Redis and the relay stay down; ``RELIABILITY_TRANSPORTS`` (default ``nostr``; ``nostr,redis`` for
both) the peer transports it runs on. Each scenario's jobs settle before the next scenario starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

import pytest

from consensus.nip90 import parse_job_request
from sidecar.example_dvm import honest_answer
from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay, from_sdk_event
from tests.e2e.customer import RESULT_KIND, Customer, Job, is_final, references, status
from tests.e2e.processes import ProcessFederation
from tests.reliability.record import record
from tests.reliability.watch import group_pubkey, readiness, restart_dvm, set_option, start, until

pytestmark = pytest.mark.reliability

JOBS = int(os.environ.get("RELIABILITY_OUTAGE_JOBS", "6"))
DOWN = float(os.environ.get("RELIABILITY_OUTAGE_SECONDS", "5"))
CANARY_INPUT = "reliability canary"
CANARY_EVERY = 2.0  # seconds between canaries (and each one's timeout)
TRANSPORTS = os.environ.get("RELIABILITY_TRANSPORTS", "nostr").split(",")


def configure_canary(fed: ProcessFederation, customer: Customer) -> None:
    expected = honest_answer(parse_job_request(from_sdk_event(customer.build(CANARY_INPUT))))
    for member in fed.members:
        for key, value in (("input", f'"{CANARY_INPUT}"'), ("expected", f'"{expected}"'),
                           ("interval_seconds", str(CANARY_EVERY)), ("timeout_seconds", str(CANARY_EVERY))):
            set_option(fed, member, "canary", key, value)


async def ready_is(fed: ProcessFederation, check: str, up: bool, members: tuple[int, ...] | None = None) -> None:
    """Wait until ``/readyz`` of every member (or of ``members``) reports ``check`` as ``up``."""

    last: dict[int, object] = {}

    async def reported() -> bool:
        for member in members or tuple(fed.members):
            body = last[member] = await readiness(fed, member)
            if body.get("checks", {}).get(check) is not up or (up and body.get("ready") is not True):
                return False
        return True

    assert await until(reported, timeout=60, every=0.25), f"/readyz never reported {check} {up}: {last}"


class Ledger:
    """The jobs of one scenario, and the check that each ends with exactly one final event: the honest result,
    or for jobs marked ``error_allowed`` possibly the federation's co-signed error instead."""

    def __init__(self, customer: Customer, group: str) -> None:
        self.customer = customer
        self.group = group
        self.jobs: list[Job] = []
        self.labels: dict[str, str] = {}
        self.error_allowed: set[str] = set()

    async def send(self, label: str, count: int = JOBS, *, error_allowed: bool = False) -> list[Job]:
        sent = []
        for i in range(count):
            job = await self.customer.request(f"{label} {i}")
            self.labels[job.id] = f"{label} {i}"
            if error_allowed:
                self.error_allowed.add(job.id)
            sent.append(job)
        self.jobs += sent
        return sent

    async def settle(self, scenario: str, timeout: float = 120.0, **figures: object) -> None:
        """Wait for every job's outcome, check it, and record the scenario's figures."""
        with contextlib.suppress(AssertionError):  # what is missing is counted below
            await self.customer.outcomes(self.jobs, timeout)
        await asyncio.sleep(1.5)  # room for a second, different publication to show up
        lost, duplicates, wrong, errors = [], 0, [], 0
        for job in self.jobs:
            finals = [e for e in self.customer.seen if is_final(e) and job.id in references(e)]
            ids = {e.id().to_hex() for e in finals}
            duplicates += max(0, len(ids) - 1)
            if not finals:
                lost.append(self.labels[job.id])
                continue
            first = finals[0]
            if first.kind().as_u16() == RESULT_KIND and first.content() == job.expected:
                continue
            if job.id in self.error_allowed and status(first) == "error":
                errors += 1
                continue
            wrong.append(f"{self.labels[job.id]}: kind {first.kind().as_u16()} {status(first) or ''}")
        self.customer.check_all_federation()
        record(scenario, jobs=len(self.jobs), lost=len(lost), duplicates=duplicates, cosigned_errors=errors,
               **figures)
        assert not lost and not duplicates and not wrong, (
            f"{scenario}, {len(self.jobs)} jobs: lost {lost}, {duplicates} with two final events, wrong {wrong}"
        )


async def send_when_reachable(ledger: Ledger, label: str) -> list[Job]:
    """Send once the customer's client is connected again (it reconnects on its own after a relay restart)."""
    for _ in range(120):
        try:
            return await ledger.send(label)
        except AssertionError:  # the relay refused or was not connected yet
            await asyncio.sleep(0.5)
    raise AssertionError("the customer could not reach the relay again within a minute")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_outages_of_redis_the_public_relay_and_a_dvm(
    transport: str,
    process_federation: Callable[..., ProcessFederation],
    public_relay: EmbeddedRelay,
    redis_server: RedisServer,
) -> None:
    fed = process_federation(transport=transport, log_level=os.environ.get("RELIABILITY_LOG_LEVEL", "INFO"))
    group = group_pubkey(fed)
    async with Customer(public_relay.url, group) as customer:
        configure_canary(fed, customer)
        await asyncio.to_thread(start, fed)
        await ready_is(fed, "canary", True)

        # Redis killed (SIGKILL) in the middle of a run and started again on its AOF, then stopped for a while.
        ledger = Ledger(customer, group)
        await ledger.send("before the redis restart")
        await asyncio.to_thread(redis_server.stop, kill=True)
        await asyncio.to_thread(redis_server.start)
        await ledger.send("after the redis restart")
        await asyncio.to_thread(redis_server.stop)
        await ready_is(fed, "redis", False)
        await ledger.send("while redis is down")
        await asyncio.sleep(DOWN)
        await asyncio.to_thread(redis_server.start)
        await ready_is(fed, "redis", True)
        await ledger.send("after redis came back")
        await ledger.settle(f"outage_redis_{transport}", restarts=2, down_seconds=DOWN)

        # The public relay stopped and started again on the same port. On the nostr transport the peer
        # messages of the jobs then in flight are lost with it: those may end in the co-signed error.
        ledger = Ledger(customer, group)
        await ledger.send("before the relay restart", error_allowed=transport == "nostr")
        await public_relay.stop()
        await ready_is(fed, "public_relay", False)
        await asyncio.sleep(DOWN)
        await public_relay.start()
        await ready_is(fed, "public_relay", True)
        await send_when_reachable(ledger, "after the relay restart")
        await ledger.settle(f"outage_public_relay_{transport}", restarts=1, down_seconds=DOWN)

        # One member's DVM killed, then started again.
        ledger = Ledger(customer, group)
        dvm = fed.members[3].dvm
        assert dvm is not None
        dvm.kill()
        dvm.wait(30)
        await ready_is(fed, "canary", False, members=(3,))
        await ledger.send("while a dvm is gone")
        await asyncio.to_thread(restart_dvm, fed, 3)
        await ready_is(fed, "canary", True, members=(3,))
        await ledger.send("after the dvm came back")
        await ledger.settle(f"outage_dvm_{transport}", restarts=1)
