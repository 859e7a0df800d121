"""sidecar.store on a real Redis: dedupe, jobs, atomic finish, outbox, evidence, expiry (a server restart and a
stopped server: ``test_store_restart.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from sidecar.resp import RespClient
from sidecar.store import MAX_DETAIL_CHARS, Claim, OutboxItem, RecentJob, Store, StoreKeys

RELAY_A = "wss://relay-a.example.org"
RELAY_B = "wss://relay-b.example.org"


@pytest.fixture(params=["redis-py", "lean"])
async def store(redis_client: aioredis.Redis, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A store on redis-py alone, and one whose busy operations go through the lean client."""
    fast = RespClient.from_client(redis_client) if request.param == "lean" else None
    yield Store(redis_client, namespace="fed", member=1, fast=fast)
    if fast is not None:
        await fast.aclose()


async def until(check: Callable[[], Awaitable[bool]], *, tries: int = 500) -> bool:
    """Poll ``check`` a bounded number of times (for server-side expiry); never asserts a duration."""
    for _ in range(tries):
        if await check():
            return True
        await asyncio.sleep(0.01)
    return False


# -- keys


def test_every_key_is_under_the_member_prefix() -> None:
    k = StoreKeys("fed", 2)
    assert k.prefix == "dvm-sidecar:fed:2:"
    names = [
        k.job("j"),
        k.jobs_in_flight,
        k.jobs_recent,
        k.outbox_due,
        k.outbox_event("e"),
        k.outbox_relays("e"),
        k.seen_request("r"),
        k.seen_messages,
        k.evidence,
        k.inbox(2),
    ]
    assert all(name.startswith(k.prefix) for name in names)
    assert len(set(names)) == len(names)
    assert k.inbox(3) == StoreKeys("fed", 3).inbox(3) == "dvm-sidecar:fed:3:inbox"


@pytest.mark.parametrize(
    "namespace, member", [("", 1), ("a:b", 1), ("x" * 65, 1), ("fed", -1), ("fed", True)]
)
def test_bad_namespace_or_member_is_refused(namespace: str, member: int) -> None:
    with pytest.raises(ValueError):
        StoreKeys(namespace, member)


async def test_bad_ids_and_ttls_are_refused(store: Store, redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="request_id"):
        await store.claim_request("")
    with pytest.raises(ValueError, match="job_id"):
        await store.save_job("j" * 257, b"{}", phase="dvm", updated_at=1.0)
    with pytest.raises(ValueError, match="ttl"):
        await store.claim_request("r", ttl=0)
    with pytest.raises(ValueError, match="job_ttl"):
        Store(redis_client, namespace="fed", member=1, job_ttl=0)
    assert await redis_client.dbsize() == 0


# -- dedupe


async def test_a_request_is_claimed_once_and_the_claim_expires(store: Store, redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, namespace="fed", member=1, dedupe_ttl=600, fast=store.fast)
    assert await store.claim_request("req1") is True
    assert await store.claim_request("req1") is False
    assert await store.claim_request("req2") is True
    assert await store.claim_request("req2", token="mine") is False
    assert await store.claim_request("req3", token="mine") is True
    assert await store.claim_request("req3", token="mine") is True  # a retry of one's own claim
    assert 0 < await redis_client.ttl(store.keys.seen_request("req1")) <= 600


async def test_a_claim_says_whether_a_job_was_saved_under_the_request(store: Store) -> None:
    claims = [("a", 60, "one"), ("b", 60, "one"), ("c", 60, "one")]
    assert await store.claim_requests(claims) == [Claim.FIRST] * 3
    await store.save_job("b", b"{}", phase="running", updated_at=1.0)
    await store.save_job("c", b"{}", phase="pending", updated_at=1.0)  # known from peers only
    again = [("a", 60, "two"), ("b", 60, "two"), ("c", 60, "two"), ("a", 60, "one")]  # the last: a retry
    assert await store.claim_requests(again) == [Claim.UNSAVED, Claim.DUPLICATE, Claim.UNSAVED, Claim.FIRST]


# -- jobs


async def test_save_load_and_in_flight(store: Store, redis_client: aioredis.Redis) -> None:
    assert await store.load_job("a") is None
    await store.save_job("a", b'{"v":1}', phase="dvm", updated_at=10.0)
    await store.save_job("b", b'{"v":1}', phase="dvm", updated_at=11.0)
    await store.save_job("a", b'{"v":2}', phase="agreement", updated_at=12.0)
    assert await store.load_job("a") == b'{"v":2}'
    assert await store.in_flight() == ["a", "b"]  # oldest first: a re-save keeps a job's place
    assert await redis_client.ttl(store.keys.job("a")) == -1  # in-flight jobs never expire


async def test_finish_job_moves_the_job_to_the_outbox_and_expires_it(redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, namespace="fed", member=1, job_ttl=900)
    await store.save_job("a", b"s1", phase="signing", updated_at=1.0)
    await store.save_job("b", b"s1", phase="dvm", updated_at=2.0)
    events = [("e1", '{"id":"e1"}'), ("e2", '{"id":"e2"}')]
    await store.finish_job(
        "a", b"final", phase="publishing", outcome="cosigned", events=events, finished_at=5.0
    )

    assert await store.in_flight() == ["b"]
    assert await store.load_job("a") == b"final"
    assert 0 < await redis_client.ttl(store.keys.job("a")) <= 900
    assert await store.due(5.0) == [
        OutboxItem("e1", '{"id":"e1"}', 0, 5.0),
        OutboxItem("e2", '{"id":"e2"}', 0, 5.0),
    ]
    assert await store.recent_jobs() == [RecentJob("a", "publishing", "cosigned", 5.0)]


async def test_a_finished_job_cannot_be_saved_back_into_flight(store: Store) -> None:
    await store.save_job("a", b"s1", phase="signing", updated_at=1.0)
    await store.finish_job("a", b"final", phase="publishing", outcome="cosigned", finished_at=2.0)
    with pytest.raises(ValueError, match="finished"):
        await store.save_job("a", b"late", phase="signing", updated_at=3.0)
    assert await store.in_flight() == []
    assert await store.load_job("a") == b"final"


async def test_recent_jobs_are_capped_and_skip_expired_records(redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, namespace="fed", member=1, recent_cap=3, job_ttl=0.2)
    for i in range(5):
        await store.finish_job(f"j{i}", b"s", phase="publishing", outcome="cosigned", finished_at=i / 100)
    assert [job.job_id for job in await store.recent_jobs()] == ["j4", "j3", "j2"]
    assert await redis_client.zcard(store.keys.jobs_recent) == 3
    assert await until(lambda: _recent_is_empty(store))
    # A finish also drops index entries older than job_ttl, whose records are gone anyway.
    await store.finish_job("late", b"s", phase="publishing", outcome="cosigned", finished_at=10.0)
    assert await redis_client.zrange(store.keys.jobs_recent, 0, -1) == [b"late"]


async def _recent_is_empty(store: Store) -> bool:
    return await store.recent_jobs() == []


async def test_keys_return_to_baseline_after_a_job_ends(redis_client: aioredis.Redis) -> None:
    """A whole job's sequence leaves behind only the capped recent-jobs index once its records expired."""
    store = Store(redis_client, namespace="fed", member=1, job_ttl=0.2, dedupe_ttl=0.2)
    assert await store.claim_request("req")
    await store.save_job("job", b"s", phase="dvm", updated_at=1.0)
    await store.finish_job(
        "job", b"f", phase="publishing", outcome="cosigned", events=[("e", "{}")], finished_at=2.0
    )
    await store.record_publish("e", RELAY_A, True, now=2.0, next_attempt=None)

    async def only_the_index_left() -> bool:
        return [k.decode() async for k in redis_client.scan_iter()] == [store.keys.jobs_recent]

    assert await until(only_the_index_left)


# -- atomicity


async def _watch_finishes(
    redis_url: str, store: Store, finish: Callable[[str, asyncio.Event], Awaitable[None]], jobs: int
) -> tuple[int, int]:
    """Finish ``jobs`` jobs with ``finish`` while another connection reads, in one MULTI/EXEC, the three
    places a finish touches. Returns (observations, half-done observations)."""
    k = store.keys
    for i in range(jobs):
        await store.save_job(f"j{i}", b"s", phase="signing", updated_at=float(i))
    reader = aioredis.Redis.from_url(redis_url)
    current: list[str] = []
    observed = asyncio.Event()
    done = False
    seen = half = 0

    async def read() -> None:
        nonlocal seen, half
        while not done:
            if current:
                job = current[-1]
                pipe = reader.pipeline(transaction=True)
                pipe.zscore(k.jobs_in_flight, job)
                pipe.exists(k.outbox_event(f"ev-{job}"))
                pipe.hexists(k.job(job), "outcome")
                in_flight, queued, finished = await pipe.execute()
                state = (in_flight is not None, bool(queued), bool(finished))
                seen += 1
                half += state not in {(True, False, False), (False, True, True)}
                observed.set()
            await asyncio.sleep(0)

    async def write() -> None:
        nonlocal done
        for i in range(jobs):
            current.append(f"j{i}")
            observed.clear()
            await observed.wait()  # the reader has seen the job before its finish
            await finish(f"j{i}", observed)
        done = True

    try:
        await asyncio.wait_for(asyncio.gather(read(), write()), timeout=60)
    finally:
        await reader.aclose()
    return seen, half


async def test_a_concurrent_reader_never_sees_a_half_finished_job(store: Store, redis_url: str) -> None:
    async def finish(job: str, _: asyncio.Event) -> None:
        events = [(f"ev-{job}", "{}")]
        await store.finish_job(
            job, b"f", phase="publishing", outcome="cosigned", events=events, finished_at=9.0
        )

    seen, half = await _watch_finishes(redis_url, store, finish, jobs=200)
    assert seen >= 200
    assert half == 0


async def test_the_reader_does_catch_a_non_atomic_finish(
    store: Store, redis_client: aioredis.Redis, redis_url: str
) -> None:
    """Control for the test above: the same reader sees the gap of a finish done in separate steps."""

    async def finish_in_steps(job: str, observed: asyncio.Event) -> None:
        await redis_client.zrem(store.keys.jobs_in_flight, job)
        observed.clear()
        await observed.wait()  # the reader looks between the two steps
        await store.enqueue([(f"ev-{job}", "{}")], now=9.0)

    _, half = await _watch_finishes(redis_url, store, finish_in_steps, jobs=5)
    assert half >= 5


# -- outbox


async def test_enqueue_is_idempotent_per_event_id(store: Store) -> None:
    await store.enqueue([("e1", '{"first":1}')], now=1.0)
    await store.enqueue([("e1", '{"second":1}'), ("e2", "{}")], now=2.0)
    await store.finish_job(
        "j", b"f", phase="publishing", outcome="cosigned", events=[("e1", "{}")], finished_at=3.0
    )
    assert await store.outbox_depth() == 2
    assert await store.due(10.0) == [OutboxItem("e1", '{"first":1}', 0, 1.0), OutboxItem("e2", "{}", 0, 2.0)]


async def test_due_returns_the_earliest_first_up_to_the_limit(store: Store) -> None:
    await store.enqueue([("late", "{}")], now=30.0)
    await store.enqueue([("early", "{}")], now=10.0)
    await store.enqueue([("middle", "{}")], now=20.0)
    assert [item.event_id for item in await store.due(25.0)] == ["early", "middle"]
    assert [item.event_id for item in await store.due(100.0, limit=2)] == ["early", "middle"]
    assert await store.due(5.0) == []


async def test_a_rejected_publish_is_rescheduled_once_per_round(store: Store) -> None:
    await store.enqueue([("e", "{}")], now=1.0)
    # One round reported relay by relay: one attempt.
    await store.record_publish("e", RELAY_A, True, now=2.0, next_attempt=5.0)
    await store.record_publish("e", RELAY_B, False, now=2.0, next_attempt=5.0)
    assert await store.due(4.0) == []
    assert await store.due(5.0) == [OutboxItem("e", "{}", 1, 1.0)]
    await store.record_publish("e", RELAY_B, False, now=5.0, next_attempt=9.0)
    assert await store.due(9.0) == [OutboxItem("e", "{}", 2, 1.0)]
    assert await store.accepted_relays("e") == {RELAY_A}
    assert await store.outbox_depth() == 1


async def test_a_delivered_event_leaves_the_outbox_and_is_not_enqueued_again(
    redis_client: aioredis.Redis,
) -> None:
    store = Store(redis_client, namespace="fed", member=1, job_ttl=900)
    await store.enqueue([("e", "{}")], now=1.0)
    await store.record_publish("e", RELAY_A, True, now=2.0, next_attempt=None)
    await store.record_publish("e", RELAY_B, True, now=3.0, next_attempt=None)  # a late answer
    await store.record_publish("e", RELAY_B, True, now=3.0, next_attempt=7.0)  # cannot resurrect it
    assert await store.outbox_depth() == 0
    assert await store.due(100.0) == []
    assert await store.accepted_relays("e") == {RELAY_A, RELAY_B}
    assert 0 < await redis_client.ttl(store.keys.outbox_event("e")) <= 900
    assert 0 < await redis_client.ttl(store.keys.outbox_relays("e")) <= 900
    await store.enqueue([("e", "{}")], now=4.0)
    assert await store.outbox_depth() == 0


async def test_a_report_for_an_unknown_event_stores_nothing(
    store: Store, redis_client: aioredis.Redis
) -> None:
    await store.record_publish("nope", RELAY_A, True, now=1.0, next_attempt=None)
    await store.record_publish("nope", RELAY_A, True, now=1.0, next_attempt=2.0)
    assert await redis_client.dbsize() == 0
    assert await store.accepted_relays("nope") == set()


# -- evidence


async def test_evidence_is_capped_and_newest_first(redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, namespace="fed", member=1, evidence_cap=10)
    for i in range(300):
        await store.record_evidence(2, "invalid_share", f"j{i}", "bad z", at=float(i))
    await store.record_evidence(3, "divergent", "j300", "x" * 10_000, at=300.0)
    # MAXLEN ~ trims whole stream nodes only, so the length stays within one node of the cap.
    node = int((await redis_client.config_get("stream-node-max-entries"))["stream-node-max-entries"])
    assert 10 <= await redis_client.xlen(store.keys.evidence) <= 10 + node
    newest = await store.evidence(3)
    assert [(e.member, e.kind, e.job_id, e.at) for e in newest] == [
        (3, "divergent", "j300", 300.0),
        (2, "invalid_share", "j299", 299.0),
        (2, "invalid_share", "j298", 298.0),
    ]
    assert len(newest[0].detail) == MAX_DETAIL_CHARS


# -- isolation, clients


async def test_two_members_on_one_redis_do_not_collide(redis_client: aioredis.Redis) -> None:
    one = Store(redis_client, namespace="fed", member=1)
    two = Store(redis_client, namespace="fed", member=2)
    other = Store(redis_client, namespace="fed2", member=1)
    for n, s in enumerate((one, two, other)):
        assert await s.claim_request("req") is True
        await s.save_job("job", f"state-{n}".encode(), phase="dvm", updated_at=1.0)
        await s.enqueue([("ev", f"{{{n}}}")], now=1.0)
        await s.record_evidence(9, "divergent", "job", f"by {n}", at=1.0)
    for n, s in enumerate((one, two, other)):
        assert await s.load_job("job") == f"state-{n}".encode()
        assert [item.event_json for item in await s.due(2.0)] == [f"{{{n}}}"]
        assert [e.detail for e in await s.evidence()] == [f"by {n}"]
    await one.finish_job("job", b"f", phase="publishing", outcome="cosigned", finished_at=2.0)
    assert (
        await one.in_flight() == []
        and await two.in_flight() == ["job"]
        and await other.in_flight() == ["job"]
    )


async def test_a_decoding_client_works_too(redis_url: str, redis_client: aioredis.Redis) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = Store(client, namespace="fed", member=1)
        await store.save_job("a", b'{"v":1}', phase="dvm", updated_at=1.0)
        assert await store.load_job("a") == b'{"v":1}'
        await store.finish_job(
            "a", b"f", phase="publishing", outcome="cosigned", events=[("e", "{}")], finished_at=2.0
        )
        assert await store.due(2.0) == [OutboxItem("e", "{}", 0, 2.0)]
        assert await store.recent_jobs() == [RecentJob("a", "publishing", "cosigned", 2.0)]
        assert await store.ping() is True
    finally:
        await client.aclose()
