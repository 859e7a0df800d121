"""Load: a burst of jobs on a 2-of-3 federation of processes. Every job ends co-signed with the honest result
(one result event each), Redis comes back to the keys it held before the burst once what the burst left has
expired, and each sidecar's resident memory grows by a bounded amount. Throughput and latency percentiles are
recorded for the report.

The members run with short expiries (``[redis] job_ttl_seconds``, ``[public] max_request_age_seconds``,
``[peers] replay_window_seconds``) so the return to the baseline happens within the test. The burst is
``RELIABILITY_BURST`` jobs (200 by default; the report's run is 2,000):

    RELIABILITY_BURST=2000 .venv/bin/python -m pytest tests/reliability/test_load.py -s

Latency is from the request's send to the first final event the relay passes on (a separate listener client
notes arrival times); throughput is jobs over the time from the first request to the last result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from nostr_sdk import Event, Filter, Kind, ReqTarget

from consensus.nip90 import FEEDBACK_KIND
from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay, EventFeed, connect_client
from tests.e2e.customer import RESULT_KIND, Customer, Job, is_final, references
from tests.e2e.processes import ProcessFederation
from tests.reliability.record import record
from tests.reliability.watch import cpu_seconds, group_pubkey, keys_of, rss_bytes, set_option, start, until

BURST = int(os.environ.get("RELIABILITY_BURST", "200"))
pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(300 + 2 * BURST)]

TRANSPORT = os.environ.get("RELIABILITY_LOAD_TRANSPORT", "nostr")
# A burst is a queue: jobs wait their turn in every sidecar, so the protocol's time limits, how long a request
# may wait for intake and how late a peer message may arrive are scaled to the time the whole queue takes to
# drain (at 4 jobs/s at least), else the tail of a large burst would rightly end in co-signed errors.
DRAIN = BURST / 4
TIMEOUTS = (max(60.0, DRAIN), 2 * max(60.0, DRAIN), 30.0, 5.0)  # dvm, deadline, coordinator, session
JOB_TTL, REQUEST_AGE, REPLAY_WINDOW = 5, int(max(30, DRAIN)), int(max(15, DRAIN / 5))  # seconds to expiry
RSS_GROWTH_BOUND = 96 << 20  # bytes a sidecar's resident memory may grow over the burst
RSS_AGAIN_BOUND = 16 << 20  # and then over a second burst half as large


class Stopwatch:
    """A second client on the relay that keeps, per job, the first final event and when it arrived."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.first: dict[str, tuple[float, Event]] = {}
        self.arrival = asyncio.Event()

    async def __aenter__(self) -> Stopwatch:
        self.client = await connect_client(self.url)
        feed = EventFeed(self.client)
        await self.client.subscribe(ReqTarget.auto([Filter().kinds([Kind(RESULT_KIND), Kind(FEEDBACK_KIND)])]))
        self.task = asyncio.create_task(self._watch(feed))
        return self

    async def _watch(self, feed: EventFeed) -> None:
        async for event in feed:
            if is_final(event):
                for ref in references(event):
                    self.first.setdefault(ref, (time.monotonic(), event))
                self.arrival.set()

    async def wait(self, job_ids: set[str], timeout: float) -> None:
        """Until every job in ``job_ids`` has a final event (AssertionError naming how many lack one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting = set(job_ids)
        for _ in range(int(timeout / 0.5) + 2):
            waiting -= self.first.keys()
            if not waiting or loop.time() >= deadline:
                break
            self.arrival.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.arrival.wait()
        assert not waiting, f"no final event for {len(waiting)} of {len(job_ids)} jobs within {timeout:g} s"

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.shutdown()


@dataclass(frozen=True)
class Burst:
    jobs: int
    seconds: float  # first request sent to last final event
    sending: float
    latencies: list[float]
    duplicates: int


async def burst(customer: Customer, stopwatch: Stopwatch, label: str, count: int) -> Burst:
    """Send ``count`` requests at once, wait for every final event, and check each is the honest result."""
    jobs: list[Job] = []
    sent_at: dict[str, float] = {}
    first = time.monotonic()
    for i in range(count):
        job = await customer.request(f"{label} {i}")
        sent_at[job.id] = time.monotonic()
        jobs.append(job)
    sending = time.monotonic() - first
    await stopwatch.wait(set(sent_at), timeout=120 + count * 0.5)
    await asyncio.sleep(1.5)  # room for a second, different publication to show up
    finals: dict[str, set[str]] = {}  # job id -> ids of the final events referencing it (one pass)
    for event in customer.seen:
        if is_final(event):
            for ref in references(event):
                finals.setdefault(ref, set()).add(event.id().to_hex())
    wrong = [job.id for job in jobs if stopwatch.first[job.id][1].kind().as_u16() != RESULT_KIND
             or stopwatch.first[job.id][1].content() != job.expected]
    duplicates = sum(max(0, len(finals.get(job_id, ())) - 1) for job_id in sent_at)
    assert not wrong and not duplicates, f"{len(wrong)} jobs not co-signed right, {duplicates} duplicates"
    last = max(stopwatch.first[job_id][0] for job_id in sent_at)
    latencies = [stopwatch.first[job_id][0] - at for job_id, at in sent_at.items()]
    return Burst(count, last - first, sending, latencies, duplicates)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def persistent_keys(redis: aioredis.Redis) -> set[str]:
    """The keys that never expire (indexes, capped streams): what Redis holds between bursts."""
    keys = [k async for k in redis.scan_iter(count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.ttl(key)
        ttls = await pipe.execute()
    return {k.decode() for k, ttl in zip(keys, ttls) if ttl == -1}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def test_a_burst_of_jobs_ends_cosigned_and_leaves_nothing_behind(
    process_federation: Callable[..., ProcessFederation],
    public_relay: EmbeddedRelay,
    redis_server: RedisServer,
    redis: aioredis.Redis,
) -> None:
    fed = process_federation(transport=TRANSPORT, timeouts=TIMEOUTS)
    for member in fed.members:
        set_option(fed, member, "redis", "job_ttl_seconds", str(JOB_TTL))
        set_option(fed, member, "public", "max_request_age_seconds", str(REQUEST_AGE))
        set_option(fed, member, "peers", "replay_window_seconds", str(REPLAY_WINDOW))
    await asyncio.to_thread(start, fed)
    group = group_pubkey(fed)
    async with Customer(public_relay.url, group) as customer, Stopwatch(public_relay.url) as stopwatch:
        warm = [await customer.request(f"warm-up {i}") for i in range(3)]
        await stopwatch.wait({job.id for job in warm}, timeout=60)
        assert await until(lambda: _quiet(redis, fed), timeout=30, every=0.2)
        baseline = await persistent_keys(redis)
        pids = {m: fed.members[m].sidecar.pid for m in fed.members}  # type: ignore[union-attr]
        rss_before = {m: rss_bytes(pid) for m, pid in pids.items()}
        processes = {f"sidecar {m}": pid for m, pid in pids.items()}
        processes |= {f"dvm {m}": fed.members[m].dvm.pid for m in fed.members}  # type: ignore[union-attr]
        processes |= {"redis": redis_server.pid, "test (relay, customer)": os.getpid()}  # type: ignore[dict-item]
        cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}

        main = await burst(customer, stopwatch, "burst", BURST)
        cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 1) for name, pid in processes.items()}
        rss_peak = {m: rss_bytes(pid) for m, pid in pids.items()}
        peak_keys = await redis.dbsize()

        async def back_to_baseline() -> bool:
            return await persistent_keys(redis) == baseline and await redis.dbsize() == len(baseline)

        expiry = max(JOB_TTL, REQUEST_AGE, 2 * REPLAY_WINDOW) + 30
        returned = await until(back_to_baseline, timeout=expiry, every=1.0)
        left = sorted(await persistent_keys(redis) ^ baseline)[:5]
        assert returned, f"Redis holds {await redis.dbsize()} keys, {len(baseline)} before the burst: {left}"
        rss_after = {m: rss_bytes(pid) for m, pid in pids.items()}

        # Half as many again: memory stays where the first burst's peak left it (no growth per job).
        again = await burst(customer, stopwatch, "second burst", BURST // 2)
        rss_again = {m: rss_bytes(pid) for m, pid in pids.items()}
        customer.check_all_federation()

    record(
        "load", transport=TRANSPORT, jobs=BURST, lost=0, duplicates=main.duplicates, cosigned=BURST,
        seconds=round(main.seconds, 2), sending_seconds=round(main.sending, 2),
        jobs_per_second=round(BURST / main.seconds, 1), p50_seconds=round(statistics.median(main.latencies), 3),
        p99_seconds=round(percentile(main.latencies, 0.99), 3), max_seconds=round(max(main.latencies), 3),
        redis_keys_before=len(baseline), redis_keys_peak=peak_keys, redis_keys_after=len(baseline),
        rss_mib_before={m: rss_before[m] >> 20 for m in pids}, rss_mib_peak={m: rss_peak[m] >> 20 for m in pids},
        rss_mib_after_expiry={m: rss_after[m] >> 20 for m in pids},
        rss_mib_after_second_burst={m: rss_again[m] >> 20 for m in pids},
        second_burst_jobs=again.jobs, second_burst_jobs_per_second=round(again.jobs / again.seconds, 1),
        cpu_seconds=cpu,
    )
    for member in pids:
        assert rss_after[member] - rss_before[member] < RSS_GROWTH_BOUND, (member, rss_before, rss_after)
        assert rss_again[member] - rss_after[member] < RSS_AGAIN_BOUND, (member, rss_after, rss_again)


async def _quiet(redis: aioredis.Redis, fed: ProcessFederation) -> bool:
    """No member has a job in flight or an event still to publish."""
    for member in fed.members:
        keys = keys_of(fed, member)
        if await redis.exists(keys.jobs_in_flight, keys.outbox_due):
            return False
    return True
