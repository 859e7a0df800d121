"""A sidecar stopped in the middle of a job and started again on the same Redis: the job completes, and the
public relay holds exactly one result event for it (the event id is deterministic, and the outbox and the
resumed job state never make a second, different one)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from consensus.messages import decode, message_type
from sidecar.local import KIND, LocalFederation
from tests.e2e.conftest import StartFederation, eventually, metric
from tests.e2e.customer import RESULT_KIND, Customer, Job, assert_result


def watch_sends(local: LocalFederation, wanted: str, job_id: str) -> asyncio.Queue[int]:
    """A queue of the members that send a ``wanted`` message (announce, share, ...) for ``job_id``, put
    right after the message left through the member's real transport."""
    senders: asyncio.Queue[int] = asyncio.Queue()
    for member, sidecar in local.sidecars.items():
        original = sidecar.transport.send

        async def send(recipients: Sequence[int], payload: bytes, member: int = member, original=original) -> None:
            await original(recipients, payload)
            message = decode(payload)
            if message_type(message) == wanted and message.job_id == job_id:
                senders.put_nowait(member)

        sidecar.transport.send = send  # type: ignore[method-assign]
    return senders


async def restart_after(local: LocalFederation, senders: asyncio.Queue[int]) -> int:
    """Stop the first member seen sending, at once, then start it again on the same Redis."""
    async with asyncio.timeout(30):
        member = await senders.get()
    await local.stop_member(member)
    await local.start_member(member)
    return member


async def one_result(local: LocalFederation, customer: Customer, job: Job) -> None:
    result = await customer.outcome(job, timeout=40)
    assert_result(result, job, local.group_pubkey)
    # Give a second publication (from the restarted member's outbox or a new session) time to show up.
    await asyncio.sleep(1.5)
    assert [e.id() for e in await customer.stored(job)] == [result.id()]
    seen = {e.id().to_hex() for e in customer.seen if e.kind().as_u16() == RESULT_KIND}
    assert seen == {result.id().to_hex()}
    customer.check_all_federation()


@pytest.mark.parametrize("transport", ["nostr", "redis"])
async def test_restart_right_after_announcing(start_federation: StartFederation, transport: str) -> None:
    """Members 1 and 2 up (t of 3), member 2's DVM slow: member 1 announces, is stopped and started again,
    and the job can only complete with it."""
    local = await start_federation({1, 2}, transport=transport, dvm_delays={2: 1.5})
    async with Customer(local.public_url, local.group_pubkey) as customer:
        job = await customer.request(f"restart after announcing ({transport})")
        senders = watch_sends(local, "announce", job.id)
        assert await restart_after(local, senders) == 1
        await one_result(local, customer, job)
        assert await eventually(lambda: _none_in_flight(local, 1))
        # The restarted member saw the request again on the relay: a duplicate, not a second job.
        assert metric(local, 1, "dvm_sidecar_requests_rejected_total", reason="duplicate") == 1
        assert metric(local, 1, "dvm_sidecar_requests_seen_total", kind=str(KIND)) == 0


@pytest.mark.parametrize("transport", ["nostr", "redis"])
@pytest.mark.parametrize("step", ["share", "sign_request"])
async def test_restart_right_after_signing_step(start_federation: StartFederation, transport: str, step: str) -> None:
    """The first member to send its share (a signer), or its SIGN-REQUEST (the coordinator), is stopped
    right after and started again."""
    local = await start_federation(transport=transport)
    async with Customer(local.public_url, local.group_pubkey) as customer:
        job = await customer.request(f"restart after {step} ({transport})")
        senders = watch_sends(local, step, job.id)
        await restart_after(local, senders)
        await one_result(local, customer, job)


async def _none_in_flight(local: LocalFederation, member: int) -> bool:
    return await local.sidecars[member].store.in_flight() == []
