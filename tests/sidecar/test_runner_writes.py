"""When the runner writes a job's state: before anything leaves the process, not for a step from which nothing
leaves (that state waits for the next write), and at a stop for what only memory holds. A real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from consensus import frost
from consensus.effects import LocalResult, PeerMessage, RequestSeen, Send
from consensus.federation import Federation
from consensus.jobstate import JobState, Phase
from consensus.messages import Announce
from consensus.nip90 import DvmResult, UnsignedEvent, parse_job_request
from consensus.quorum import Member, step
from sidecar.metrics import Metrics
from sidecar.runner import JobRunner, Outlets
from sidecar.store import Store

SUITE = frost.SECP256K1_TR


async def test_a_step_that_sends_nothing_is_written_with_the_next_or_at_stop(redis_client: aioredis.Redis) -> None:
    shares, public = frost.trusted_dealer_keygen(SUITE, 2, 3)
    federation = Federation(public)
    members = {m: Member(federation, frost.vss_verify(SUITE, shares[m])) for m in federation.members}
    request = parse_job_request(UnsignedEvent(
        "ab" * 32, 1000, 5050, (("i", "hello", "text"), ("p", federation.pubkey)), "",
    ).with_signature(bytes(64)))
    answer = LocalResult(request.id, DvmResult("the answer", ()))
    rotation = federation.rotation(request.id)
    me, peer = rotation[1], rotation[2]  # neither coordinates: agreement sends nothing from here
    state, _ = step(members[peer], None, RequestSeen(request), 1.0)
    _, effects = step(members[peer], state, answer, 1.0)
    (announce,) = [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, Announce)]

    sent: list[object] = []

    async def send(to: tuple[int, ...], message: object) -> None:
        sent.append(message)

    async def run_dvm(request: object) -> None:
        pass

    store = Store(redis_client, namespace="writes", member=me)
    metrics = Metrics(members=federation.members, relays=(), kinds=(5050,), version="test")
    runner = JobRunner(members[me], store, metrics, Outlets(send=send, run_dvm=run_dvm, published=lambda *_: None))
    await runner.resume_all()

    async def stored() -> JobState:
        raw = await store.load_job(request.id)
        assert raw is not None
        return JobState.from_json(raw)

    try:
        await runner.feed(RequestSeen(request))
        await runner.feed(answer)  # announces: written first
        assert len(sent) == 1 and (await stored()).phase is Phase.ANNOUNCED
        await runner.feed(PeerMessage(peer, announce))  # agreed, and nothing to send
        assert len(sent) == 1
        assert runner.state(request.id).phase is Phase.SIGNING  # type: ignore[union-attr]
        assert (await stored()).phase is Phase.ANNOUNCED  # not written yet
    finally:
        await runner.close()
    after_stop = await stored()
    assert after_stop.phase is Phase.SIGNING and set(after_stop.announcements) == {me, peer}


class Restarts:
    """One member of a 2-of-3 federation on a Redis namespace, started afresh as many times as a test likes:
    each process reads its key again (no nonce of the last one) and notes the requests it forwards."""

    def __init__(self, redis_client: aioredis.Redis, namespace: str, request_id_byte: str) -> None:
        self.shares, public = frost.trusted_dealer_keygen(SUITE, 2, 3)
        self.federation = Federation(public)
        self.request = parse_job_request(UnsignedEvent(
            request_id_byte * 32, 1000, 5050, (("i", "hello", "text"), ("p", self.federation.pubkey)), "",
        ).with_signature(bytes(64)))
        self.me, self.peer = self.federation.rotation(self.request.id)[1:3]
        self.store = Store(redis_client, namespace=namespace, member=self.me)
        self.forwarded: list[object] = []

    def member(self, index: int) -> Member:
        return Member(self.federation, frost.vss_verify(SUITE, self.shares[index]))

    def new_process(self) -> JobRunner:
        async def send(to: tuple[int, ...], message: object) -> None:
            pass

        async def run_dvm(request: object) -> None:
            self.forwarded.append(request)

        metrics = Metrics(members=self.federation.members, relays=(), kinds=(5050,), version="test")
        return JobRunner(self.member(self.me), self.store, metrics, Outlets(send, run_dvm, lambda *_: None))


async def test_a_request_arriving_during_a_restart_waits_for_the_jobs_saved_before(
    redis_client: aioredis.Redis,
) -> None:
    """A job known from a peer's announce (its request not seen yet) is saved; the process stops. The next
    one is handed the request before it resumed: the request goes on from the saved job, the peer's
    announce kept, instead of starting it afresh over it."""
    world = Restarts(redis_client, "restart", "cd")
    request, peer = world.request, world.peer
    state, _ = step(world.member(peer), None, RequestSeen(request), 1.0)
    _, effects = step(world.member(peer), state, LocalResult(request.id, DvmResult("the answer", ())), 1.0)
    (announce,) = [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, Announce)]

    before = world.new_process()
    await before.resume_all()
    await before.feed(PeerMessage(peer, announce))
    await before.close()
    saved = await world.store.load_job(request.id)
    assert saved is not None and JobState.from_json(saved).phase is Phase.PENDING

    after = world.new_process()
    try:
        early = asyncio.create_task(after.feed(RequestSeen(request)))
        await asyncio.sleep(0.2)
        assert not early.done() and world.forwarded == []  # held until the saved jobs are back in memory
        await after.resume_all()
        async with asyncio.timeout(10):
            await early
        state = after.state(request.id)
        assert state is not None and set(state.announcements) == {peer} and state.request is not None
        assert len(world.forwarded) == 1
    finally:
        await after.close()


async def test_a_job_whose_dvm_had_not_answered_is_forwarded_again_after_a_restart(
    redis_client: aioredis.Redis,
) -> None:
    """Resuming changes nothing in such a job's state (no commitment of its own to renew), yet its DVM run
    and its timers must be set going again, and the job be in memory."""
    world = Restarts(redis_client, "rerun", "ef")
    before = world.new_process()
    await before.resume_all()
    await before.feed(RequestSeen(world.request))
    await before.close()
    assert len(world.forwarded) == 1

    after = world.new_process()
    try:
        assert await after.resume_all() == 1
        assert len(world.forwarded) == 2 and world.forwarded[1] == world.request
        state = after.state(world.request.id)
        assert state is not None and state.phase is Phase.RUNNING
        assert set(after._timers.get(world.request.id, {})) >= {"dvm", "deadline", "expire"}
    finally:
        await after.close()
