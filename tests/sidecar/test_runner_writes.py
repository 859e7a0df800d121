"""When the runner writes a job's state: before anything leaves the process, not for a step from which nothing
leaves (that state waits for the next write), and at a stop for what only memory holds. A real Redis."""

from __future__ import annotations

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
