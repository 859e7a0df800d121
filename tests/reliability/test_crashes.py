"""Crashes: a member's sidecar process is killed with SIGKILL at each phase of a job, on a 2-of-3 federation of
real processes on the ``redis`` peer transport (so every peer message stays readable on the wire).

Each phase is reached by arranging the job, not by luck. The request is built so that member 1 comes first in
the job's coordinator rotation (member 1 coordinates, member 2 is the victim, member 3 the other signer); DVM
processes are frozen (SIGSTOP) and thawed (SIGCONT) so that a member sits in a phase exactly as long as needed;
and the test watches the victim's job record in Redis or the messages in the inbox streams:

- before announcing: every DVM frozen; killed while its job record says ``running``;
- after announcing: the other DVMs frozen; killed once its record says ``announced``;
- after receiving a sign request: member 3's DVM frozen; the victim is stopped (SIGSTOP) as soon as its
  announcement reaches the coordinator, so the coordinator's SIGN-REQUEST lands in its inbox unread, and is
  killed once the request is there;
- after sending its share: member 3's DVM frozen; killed as soon as its SHARE is in the coordinator's inbox;
- while publishing: the victim is the coordinator; the public relay is stopped once every member has the
  request, so the co-signed event stays in its outbox; killed there, then the relay starts again on its port.

Then, every time: the job is published (by the t members still up, or with the share the victim sent before it
died), one event id on the relay; the restarted victim catches up (its job record ends ``cosigned``); and, over
every SHARE on the wire, no member ever sent two shares under one commitment.

All phases run on one federation, one job each (a federation of processes takes half a minute to set up);
``RELIABILITY_REPEAT`` (default 1) runs the whole sequence that many times.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from consensus.messages import Announce, Share, SignRequest
from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay
from tests.e2e.customer import RESULT_KIND, Customer, Job, assert_result, references
from tests.e2e.processes import ProcessFederation
from tests.reliability.record import record
from tests.reliability.watch import (
    WireMessage,
    build_job,
    group_pubkey,
    job_record,
    keys_of,
    pause_dvm,
    read_wire,
    share_reuse,
    start,
    until,
    wait_for_message,
)

pytestmark = pytest.mark.reliability

REPEAT = int(os.environ.get("RELIABILITY_REPEAT", "1"))
PHASES = ("before_announcing", "after_announcing", "after_sign_request", "after_share", "while_publishing")
COORDINATOR, VICTIM, OTHER = 1, 2, 3
FROZEN = {  # DVMs frozen while the victim is brought to its phase, thawed once it is dead
    "before_announcing": (COORDINATOR, VICTIM, OTHER),
    "after_announcing": (COORDINATOR, OTHER),
    "after_sign_request": (OTHER,),
    "after_share": (OTHER,),
    "while_publishing": (COORDINATOR, VICTIM, OTHER),
}


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_a_member_killed_at_each_phase_of_a_job(
    process_federation: Callable[..., ProcessFederation], public_relay: EmbeddedRelay, redis: aioredis.Redis
) -> None:
    fed = process_federation(transport="redis")
    await asyncio.to_thread(start, fed)
    results: set[str] = set()
    async with Customer(public_relay.url, group_pubkey(fed)) as customer:
        for round_ in range(REPEAT):
            for phase in PHASES:
                job = build_job(customer, fed, f"crash {phase} {round_}", first=COORDINATOR)
                results |= await crash_and_recover(phase, fed, customer, job, public_relay, redis)
        customer.check_all_federation()
    audit = share_reuse(await read_wire(redis, fed))
    assert not audit.reused, audit.reused
    record(
        "crash", phases=len(PHASES), kills=REPEAT * len(PHASES), jobs=REPEAT * len(PHASES), lost=0,
        duplicates=len(results) - REPEAT * len(PHASES), shares_on_wire=audit.shares,
        sign_requests_on_wire=audit.requests, reused_commitments=len(audit.reused),
    )


async def crash_and_recover(
    phase: str, fed: ProcessFederation, customer: Customer, job: Job, relay: EmbeddedRelay, redis: aioredis.Redis
) -> set[str]:
    """One job, its victim killed at ``phase`` and restarted; the job's result event ids seen (one)."""
    victim = COORDINATOR if phase == "while_publishing" else VICTIM
    for member in FROZEN[phase]:
        pause_dvm(fed, member)
    await customer.send(job.request)
    await kill_at(phase, fed, job, victim, relay, redis)
    fed.kill(victim)  # its DVM too: a restart starts both again
    for member in FROZEN[phase]:
        if member != victim:
            pause_dvm(fed, member, paused=False)
    if phase == "while_publishing":
        await relay.start()  # the same port: the members reconnect
    else:  # published by the t members still up (or with the share the victim sent before it died)
        assert_result(await customer.outcome(job, timeout=60), job, group_pubkey(fed))
    await asyncio.to_thread(start, fed, victim)

    async def caught_up() -> bool:
        return (await job_record(redis, fed, victim, job.id)).get("outcome") == "cosigned"

    assert await until(caught_up, timeout=60, every=0.2), (phase, await job_record(redis, fed, victim, job.id))
    if phase == "while_publishing":
        event = await customer.outcome(job, timeout=60)
        assert_result(event, job, group_pubkey(fed))
        await delivered_by(redis, fed, victim, event.id().to_hex(), relay.url)
    await asyncio.sleep(1.0)  # room for a second, different publication to show up
    stored = await customer.stored(job)
    assert len(stored) == 1, (phase, [e.id().to_hex() for e in stored])
    seen = {e.id().to_hex() for e in customer.seen if e.kind().as_u16() == RESULT_KIND and job.id in references(e)}
    assert seen == {stored[0].id().to_hex()}, phase
    record("crash_phase", phase=phase, victim=victim, lost=0, duplicates=len(seen) - 1)
    return seen


async def kill_at(
    phase: str, fed: ProcessFederation, job: Job, victim: int, relay: EmbeddedRelay, redis: aioredis.Redis
) -> None:
    """Bring ``victim`` to ``phase`` of ``job`` and kill its sidecar with SIGKILL there."""
    pid = fed.members[victim].sidecar.pid  # type: ignore[union-attr]

    async def phase_is(wanted: str, member: int = victim) -> bool:
        return (await job_record(redis, fed, member, job.id)).get("phase") == wanted

    def sent_by(sender: int, kind: type) -> Callable[[WireMessage], bool]:
        return lambda w: w.sender == sender and isinstance(w.message, kind) and w.message.job_id == job.id

    if phase == "before_announcing":
        assert await until(lambda: phase_is("running"), timeout=20), phase
    elif phase == "after_announcing":
        assert await until(lambda: phase_is("announced"), timeout=20), phase
    elif phase == "after_sign_request":
        await wait_for_message(redis, fed, COORDINATOR, sent_by(victim, Announce), timeout=20)
        os.kill(pid, signal.SIGSTOP)  # it reads nothing more: the sign request will wait in its inbox
        await wait_for_message(redis, fed, victim, sent_by(COORDINATOR, SignRequest), timeout=20)
    elif phase == "after_share":
        await wait_for_message(redis, fed, COORDINATOR, sent_by(victim, Share), timeout=20)
    else:
        assert await until(lambda: _all_have(redis, fed, job), timeout=20), phase
        await relay.stop()
        for member in fed.members:
            pause_dvm(fed, member, paused=False)
        due = keys_of(fed, victim).outbox_due

        async def pending() -> bool:
            return await phase_is("done") and await redis.zcard(due) > 0

        assert await until(pending, timeout=30), phase
    os.kill(pid, signal.SIGKILL)


async def _all_have(redis: aioredis.Redis, fed: ProcessFederation, job: Job) -> bool:
    """Every member has seen the request (its job is under way)."""
    for member in fed.members:
        if (await job_record(redis, fed, member, job.id)).get("phase") not in ("running", "announced", "signing"):
            return False
    return True


async def delivered_by(redis: aioredis.Redis, fed: ProcessFederation, member: int, event_id: str, relay: str) -> None:
    """The restarted member's own outbox delivered the event to the relay and has nothing left to publish."""
    keys = keys_of(fed, member)

    async def delivered() -> bool:
        accepted = {r.decode() for r in await redis.smembers(keys.outbox_relays(event_id))}
        return relay in accepted and await redis.zcard(keys.outbox_due) == 0

    assert await until(delivered, timeout=60, every=0.2), "the restarted coordinator's outbox kept its event"
