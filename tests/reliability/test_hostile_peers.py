"""Hostile peers: one member of a 2-of-3 federation of real processes is built to misbehave
(``tests.reliability.hostile``: the real ``dvm-sidecar run`` with that member's real keys and transport, whose
sidecar lies). It sends wrong results, equivocating announcements, invalid shares and forged messages, then
floods its peers with junk, forgeries, replays and thousands of announcements for jobs nobody asked for.

What must hold: every result published is the honest one, co-signed by the group key (checked with
nostr-sdk); the culprit, and only the culprit, is named in each honest member's evidence (Redis) and metrics
(``/metrics``); every flooded envelope is refused under its reason; a job sent during the flood still gets
co-signed; and honest members' memory (RSS) and Redis use (keys, ``used_memory``) stay bounded, the jobs the
flood made up leaving nothing behind once they expire.

Each lie is arranged, not left to luck: requests are built so that the job's coordinator rotation is
(honest, hostile, honest), and the honest DVMs answer a moment after the hostile one, so the hostile member is
always among the first signers an honest coordinator picks.

The first tests are the regressions for what the flood found: a job known only from a peer's messages never
expired, a peer could fill the runner's whole job table (after which customers' requests were refused), and a
burst of peer messages lost some of them to "Too many connections" errors from the Redis client's pool.

``RELIABILITY_TRANSPORTS=redis,nostr`` runs the federation on each peer transport (CI: redis); figures are
recorded with ``tests.reliability.record`` (``RELIABILITY_RECORD=file``; ``-s`` prints them).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from consensus import frost
from consensus.effects import PeerMessage, RequestSeen, SetTimer, TimerFired
from consensus.federation import Federation
from consensus.jobstate import Phase
from consensus.messages import Announce
from consensus.nip90 import UnsignedEvent, parse_job_request
from consensus.policies import ResultPayload
from consensus.quorum import Member, step
from sidecar.config import load_federation
from sidecar.example_dvm import honest_answer
from sidecar.metrics import Metrics
from sidecar.peers import REJECTION_REASONS
from sidecar.redis_client import MAX_CONNECTIONS, connect
from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay, from_sdk_event
from sidecar.runner import MAX_PENDING_JOBS, JobRunner, Outlets
from sidecar.store import Store
from tests.e2e.customer import Customer, Job, assert_result
from tests.e2e.processes import ProcessFederation
from tests.reliability.hostile import EXPECTED_REASON, RELAY_CARRIES
from tests.reliability.record import record
from tests.reliability.watch import group_pubkey, keys_of, metric_sum, metrics, rss_bytes, start, until

pytestmark = pytest.mark.reliability

HOSTILE, HONEST = 3, (1, 2)
# The redis transport in CI: nothing sits between the hostile writer and an honest reader there. The nostr
# transport (RELIABILITY_TRANSPORTS=redis,nostr) floods with what a relay carries: valid events only.
TRANSPORTS = os.environ.get("RELIABILITY_TRANSPORTS", "redis").split(",")
LIES = ("wrong", "equivocate", "bad-share", "forge-share", "forge-commitment", "forge-done")
# (who records it: "both" honest members or the job's "coordinator", evidence kind, words in its detail)
EXPECTED_EVIDENCE = {
    "wrong": ("both", "divergent", "differs from the agreed one"),
    "equivocate": ("both", "equivocation", "two different digests"),
    "bad-share": ("coordinator", "invalid_share", "invalid signature share"),
    "forge-share": ("both", "invalid_message", "share under another member's identifier"),
    "forge-commitment": ("both", "invalid_message", "commitment under another member's identifier"),
    "forge-done": ("both", "invalid_message", "signature does not verify"),
}
FLOOD = {  # envelopes of each kind to each honest member
    "garbage": 400, "not_an_event": 120, "oversize": 20, "stranger": 300, "impersonation": 300,
    "bad_signature": 300, "stale": 300, "undecryptable": 300, "replay_own": 300, "replay_peers": 40,
    "junk_payload": 600, "orphan_announce": 3000,
}
TIMEOUTS = (4, 6, 3, 1)  # dvm, deadline, coordinator, session: made-up jobs expire 6 + 3 * 4 = 18 s after
FLOOD_ROUNDS = 2
JOBS_DURING_FLOOD = 3
RSS_GROWTH_BOUND = 64 << 20  # what all the flooding may add to an honest member's resident memory
RSS_ROUND_BOUND = 16 << 20  # what a second round may add to it
REDIS_GROWTH_BOUND = 16 << 20  # what it may add to Redis's memory, the hostile member's own inbox writes aside


# --- regressions, in one process ----------------------------------------------------------------------------

SUITE = frost.SECP256K1_TR


def _keys() -> tuple[Federation, dict[int, frost.KeyPackage]]:
    shares, public = frost.trusted_dealer_keygen(SUITE, 2, 3)
    return Federation(public), {m: frost.vss_verify(SUITE, s) for m, s in shares.items()}


def _made_up(member: Member, count: int) -> list[PeerMessage]:
    """Announcements from ``member`` for ``count`` jobs no customer asked for."""
    payload = ResultPayload("an answer to nothing", ())
    _, commitment = frost.commit(SUITE, member.key_package)
    return [PeerMessage(member.me, Announce(secrets.token_hex(32), payload.digest(), payload, commitment))
            for _ in range(count)]


def test_a_job_known_only_from_a_peer_expires_on_its_own() -> None:
    federation, packages = _keys()
    member = Member(federation, packages[1])
    (message,) = _made_up(Member(federation, packages[3]), 1)
    state, effects = step(member, None, message, 1000.0)
    t = federation.timeouts
    assert SetTimer(message.job_id, "expire", 1000.0 + t.deadline + t.coordinator * (federation.n + 1)) in effects
    state, effects = step(member, state, TimerFired(message.job_id, "expire"), 2000.0)
    assert state.phase is Phase.DONE and state.done_event is None


async def test_a_flood_of_made_up_jobs_from_one_peer_is_capped_and_leaves_nothing(
    redis_client: aioredis.Redis,
) -> None:
    federation, packages = _keys()
    store = Store(redis_client, namespace="flood", member=1)
    metrics_ = Metrics(members=federation.members, relays=(), kinds=(5050,), version="test")
    ran: list[str] = []

    async def send(to: tuple[int, ...], message: object) -> None:
        pass

    async def run_dvm(request: object) -> None:
        ran.append("dvm")

    runner = JobRunner(Member(federation, packages[1]), store, metrics_,
                       Outlets(send=send, run_dvm=run_dvm, published=lambda *_: None), clock=lambda: 1000.0)
    await runner.resume_all()
    try:
        flood = _made_up(Member(federation, packages[3]), runner.orphan_cap + 100)
        for message in flood:
            await runner.feed(message)
        assert runner.in_flight() == runner.orphan_cap  # the peer's share, not the whole table
        assert await redis_client.zcard(store.keys.jobs_in_flight) == runner.orphan_cap
        (other,) = _made_up(Member(federation, packages[2]), 1)
        await runner.feed(other)  # another peer's early announcement still counts
        request = parse_job_request(UnsignedEvent(
            "ab" * 32, 1000, 5050, (("i", "hello", "text"), ("p", federation.pubkey)), "",
        ).with_signature(bytes(64)))
        await runner.feed(RequestSeen(request))  # and a customer's request is never kept out
        assert runner.state(request.id) is not None and ran == ["dvm"]
        assert runner.in_flight() == runner.orphan_cap + 2
        for message in flood:
            await runner.feed(TimerFired(message.job_id, "expire"))
        assert runner.in_flight() == 2
        assert set(await store.in_flight()) == {other.job_id, request.id}
        job_keys = {k.decode() for k in await redis_client.keys(store.keys.job("*"))}
        assert job_keys == {store.keys.job(other.job_id), store.keys.job(request.id)}  # nothing left of them
        assert metrics_.registry.get_sample_value("dvm_sidecar_jobs_total", {"outcome": "timeout"}) == 0
        (again,) = _made_up(Member(federation, packages[3]), 1)
        await runner.feed(again)  # the cap is free again once they are gone
        assert runner.state(again.job_id) is not None
    finally:
        await runner.close()


async def test_a_burst_of_redis_calls_waits_for_connections_instead_of_failing(redis_url: str) -> None:
    """Regression: redis-py's default pool raises "Too many connections" past 100, and the sidecar handles up
    to 256 peer messages at once: under the flood, messages were lost to Redis errors. Each call here holds
    its connection for a while, so more than ``MAX_CONNECTIONS`` of them must queue."""
    client = connect(redis_url)
    try:
        calls = [client.blpop([f"hostile-test:empty:{i}"], timeout=0.2) for i in range(MAX_CONNECTIONS + 100)]
        assert await asyncio.gather(*calls) == [None] * (MAX_CONNECTIONS + 100)
    finally:
        await client.aclose()


# --- a hostile member among processes -----------------------------------------------------------------------


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def _hostile_federation(make: Callable[..., ProcessFederation], transport: str) -> ProcessFederation:
    fed = make(transport=transport, timeouts=TIMEOUTS)
    fed.members[HOSTILE].program = [sys.executable, "-m", "tests.reliability.hostile"]
    for member in HONEST:  # the hostile member's DVM answers first: it is always among the chosen signers
        fed.members[member].dvm_flags = ["--delay", "1"]
    (fed.root / "hostile.json").write_text(json.dumps(FLOOD))
    start(fed)
    return fed


def _job(customer: Customer, fed: ProcessFederation, text: str) -> tuple[Job, int]:
    """A request for ``text`` whose rotation is (honest, hostile, honest), and the honest coordinator."""
    federation = load_federation(fed.root / "federation.toml").federation()
    for attempt in range(200):
        event = customer.build(f"{text} ({attempt})")
        rotation = federation.rotation(event.id().to_hex())
        if rotation[1] == HOSTILE:
            return Job(event, honest_answer(parse_job_request(from_sdk_event(event)))), rotation[0]
    raise AssertionError("no request with the hostile member second in its rotation in 200 tries")


async def _evidence(redis: aioredis.Redis, fed: ProcessFederation, member: int) -> list[tuple[int, str, str, str]]:
    keys = keys_of(fed, member)
    store = Store(redis, namespace=keys.namespace, member=member)
    return [(e.member, e.kind, e.job_id, e.detail) for e in await store.evidence(1000)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_hostile_member_is_outvoted_and_named(
    process_federation: Callable[..., ProcessFederation], public_relay: EmbeddedRelay, redis: aioredis.Redis,
    transport: str,
) -> None:
    marks = {"start": time.monotonic()}
    fed = _hostile_federation(process_federation, transport)
    marks["federation up"] = time.monotonic()
    group = group_pubkey(fed)
    async with Customer(public_relay.url, group) as customer:
        jobs = {lie: _job(customer, fed, f"{lie} please") for lie in LIES}
        for job, _ in jobs.values():
            await customer.send(job.request)
        outcomes = await customer.outcomes([job for job, _ in jobs.values()], timeout=60)
        for job, _ in jobs.values():
            assert_result(outcomes[job.id], job, group)  # the honest answer, co-signed
            assert len(await customer.stored(job)) == 1
        customer.check_all_federation()

        wanted = {(m, lie) for lie, (who, _, _) in EXPECTED_EVIDENCE.items()
                  for m in (HONEST if who == "both" else (jobs[lie][1],))}

        async def named() -> bool:
            found = {m: await _evidence(redis, fed, m) for m in HONEST}
            return all(any(e[0] == HOSTILE and e[1] == EXPECTED_EVIDENCE[lie][1] and e[2] == jobs[lie][0].id
                           and EXPECTED_EVIDENCE[lie][2] in e[3] for e in found[m]) for m, lie in wanted)

        assert await until(named, timeout=30, every=0.2), {m: await _evidence(redis, fed, m) for m in HONEST}
        for member in HONEST:
            blamed = {e[0] for e in await _evidence(redis, fed, member)}
            assert blamed == {HOSTILE}, f"member {member} blamed {blamed}: only the hostile member misbehaved"
            samples = await metrics(fed, member)
            forged = sum(1 for lie in LIES if lie.startswith("forge")) + (member == jobs["bad-share"][1])
            for name, least in (("invalid_contributions", forged), ("divergent_results", 1), ("equivocations", 1)):
                assert metric_sum(samples, f"dvm_sidecar_{name}_total", peer=str(HOSTILE)) >= least, (member, name)
                for honest in HONEST:
                    assert metric_sum(samples, f"dvm_sidecar_{name}_total", peer=str(honest)) == 0, (member, name)
        marks["lies caught"] = time.monotonic()
        await _floods(fed, customer, redis, group, marks)


async def _floods(
    fed: ProcessFederation, customer: Customer, redis: aioredis.Redis, group: str, marks: dict[str, float]
) -> None:
    """Flood rounds, each until every flooded message is accounted for and every made-up job is gone; the
    second round must not cost more memory than the first already did (bounded, not growing)."""
    before = {m: await _usage(fed, redis, m) for m in HONEST}
    rounds = []
    for number in range(1, FLOOD_ROUNDS + 1):
        rounds.append(await _flood(fed, customer, redis, group, before))
        marks[f"flood {number} over"] = time.monotonic()
    first, last = rounds[0]["after"], rounds[-1]["after"]
    for m in HONEST:
        assert last[m]["rss"] - before[m]["rss"] < RSS_GROWTH_BOUND, (m, before[m], rounds)
        assert last[m]["rss"] - first[m]["rss"] < RSS_ROUND_BOUND, (m, first[m], last[m])  # no growth per round
        assert last[m]["jobs"] == before[m]["jobs"] + FLOOD_ROUNDS * JOBS_DURING_FLOOD, (m, before[m], last[m])
        redis_growth = last[m]["redis_used_memory_without_inboxes"] - before[m]["redis_used_memory_without_inboxes"]
        assert redis_growth < REDIS_GROWTH_BOUND, (m, before[m], last[m])
    seconds = {name: round(at - marks["start"], 1) for name, at in marks.items()}
    record("hostile_flood", transport=_transport(fed), before=before, rounds=rounds, seconds=seconds)


async def _flood(
    fed: ProcessFederation, customer: Customer, redis: aioredis.Redis, group: str,
    before: dict[int, dict[str, int]],
) -> dict[str, object]:
    """One round: the hostile member floods, honest jobs are sent meanwhile; every flooded message is counted
    under its reason, the honest jobs are co-signed, the made-up jobs fill no more than the hostile member's
    cap and are gone once they expire. What was sent and what it cost."""
    baseline = {m: await metrics(fed, m) for m in HONEST}
    report = fed.root / "flood-report.json"
    report.unlink(missing_ok=True)
    process = fed.members[HOSTILE].sidecar
    assert process is not None
    os.kill(process.pid, signal.SIGUSR1)
    during = [_job(customer, fed, f"honest during the flood {secrets.token_hex(4)}")[0]
              for _ in range(JOBS_DURING_FLOOD)]
    for job in during:
        await customer.send(job.request)

    async def reported() -> bool:
        return report.exists()

    assert await until(reported, timeout=120, every=0.2), "the hostile member did not finish its flood"
    sent = json.loads(report.read_text())
    if _transport(fed) == "nostr":
        assert set(sent) == set(RELAY_CARRIES), sent  # what a relay takes: valid events
    else:
        assert set(sent) == set(FLOOD) | {"replay_originals"}, sent
        assert all(sent["replay_peers"][str(m)] >= 5 for m in HONEST), sent  # there were honest ones to replay
    expected = {m: {reason: sum(sent[kind][str(m)] for kind, why in EXPECTED_REASON.items()
                                if why == reason and kind in sent) for reason in REJECTION_REASONS} for m in HONEST}
    announced = {m: FLOOD["orphan_announce"] + _announces(baseline[m]) for m in HONEST}

    async def counts() -> dict[int, dict[str, float]]:
        name = "dvm_sidecar_peer_messages_rejected_total"
        now = {m: await metrics(fed, m) for m in HONEST}
        return {m: {reason: metric_sum(now[m], name, reason=reason) - metric_sum(baseline[m], name, reason=reason)
                    for reason in REJECTION_REASONS} | {"announced": _announces(now[m])} for m in HONEST}

    async def all_handled() -> bool:
        seen = await counts()
        return all(seen[m]["announced"] >= announced[m]
                   and all(seen[m][reason] >= expected[m][reason] for reason in REJECTION_REASONS) for m in HONEST)

    assert await until(all_handled, timeout=120, every=0.5), json.dumps([expected, await counts()])
    await asyncio.sleep(1)  # and nothing more: each flooded message was counted once, under its reason
    final = await counts()
    for m in HONEST:
        assert {r: final[m][r] for r in REJECTION_REASONS} == expected[m], (m, final[m], expected[m])
    outcomes = await customer.outcomes(during, timeout=60)
    for job in during:
        assert_result(outcomes[job.id], job, group)
    peak = {m: await _usage(fed, redis, m) for m in HONEST}
    cap = MAX_PENDING_JOBS // (2 * (fed.n - 1))
    for m in HONEST:
        samples = await metrics(fed, m)
        junk = metric_sum(samples, "dvm_sidecar_invalid_contributions_total", peer=str(HOSTILE))
        assert junk >= sent["junk_payload"][str(m)], f"member {m} counted {junk} junk messages from member 3"
        made_up = peak[m]["in_flight"] - before[m]["in_flight"]
        assert cap <= made_up <= cap + len(during), (m, cap, peak[m])  # the cap, not the flood, decided
        assert peak[m]["rss"] - before[m]["rss"] < RSS_GROWTH_BOUND, (m, before[m], peak[m])

    async def forgotten() -> bool:  # the made-up jobs expire and leave nothing behind
        in_flight = {m: (await _usage(fed, redis, m))["in_flight"] for m in HONEST}
        return all(in_flight[m] <= before[m]["in_flight"] for m in HONEST)

    assert await until(forgotten, timeout=90, every=1.0), {m: await _usage(fed, redis, m) for m in HONEST}
    return {"sent": sent, "peak": peak, "after": {m: await _usage(fed, redis, m) for m in HONEST}}


def _transport(fed: ProcessFederation) -> str:
    return str(tomllib.loads(fed.members[1].config.read_text())["peers"]["transport"])


def _announces(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return metric_sum(samples, "dvm_sidecar_peer_messages_total", type="announce")


async def _usage(fed: ProcessFederation, redis: aioredis.Redis, member: int) -> dict[str, int]:
    """An honest member's footprint: its process's RSS; its job records and in-flight jobs in Redis and its
    replay records (each expires after two replay windows); and Redis's memory as a whole, less the inbox
    streams, which the hostile member writes itself (up to the readers' cap) on a shared Redis."""
    keys = keys_of(fed, member)
    process = fed.members[member].sidecar
    assert process is not None
    jobs = [k async for k in redis.scan_iter(match=keys.job("*"), count=1000)]
    streams = sum([await redis.memory_usage(keys_of(fed, m).inbox(m), samples=0) or 0 for m in fed.members])
    memory = await redis.info("memory")
    return {
        "rss": rss_bytes(process.pid),
        "jobs": len(jobs),
        "in_flight": int(await redis.zcard(keys.jobs_in_flight)),
        "seen_records": int(await redis.zcard(keys.seen_messages)),
        "redis_used_memory_without_inboxes": int(memory["used_memory"]) - streams,
        "inbox_streams_memory": streams,
        "redis_clients_memory": int(memory.get("mem_clients_normal", 0)),
    }
