"""Benchmark of sidecar.store: one job's Redis work against a bare SET round trip, measured side by side.

A job's sequence is what the service does for a co-signed job: claim the request, save the state three times
(dvm, agreement, signing), finish with one event, fetch the due outbox, record the publish. It is timed
alternately with the same number of bare ``SET`` calls on the same client, so a busy machine slows both alike;
the ratio (sequence time / SET time) is the cost of a job in bare round trips. Both are run one at a time
(latency) and with many jobs at once (throughput).

    .venv/bin/python bench/store.py [--jobs N] [--rounds R] [--concurrency C] [--url redis://...]

Without ``--url`` it starts an embedded server (``sidecar.redis_server``, AOF on) in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import count, islice

import redis.asyncio as aioredis

from sidecar.redis_server import RedisServer
from sidecar.store import Store

STATE = json.dumps(
    {"phase": "signing", "digests": ["ab" * 32] * 3, "commitments": ["02" + "cd" * 32] * 6}
).encode()
EVENT = json.dumps({"id": "ef" * 32, "kind": 6050, "content": "x" * 512, "tags": [["e", "01" * 32]]})


async def job_sequence(store: Store, n: int) -> None:
    job = f"job-{n}"
    now = time.time()
    await store.claim_request(f"req-{n}")
    for phase in ("dvm", "agreement", "signing"):
        await store.save_job(job, STATE, phase=phase, updated_at=now)
    await store.finish_job(
        job, STATE, phase="publishing", outcome="cosigned", events=[(f"ev-{n}", EVENT)], finished_at=now
    )
    await store.due(now, limit=1)
    await store.record_publish(f"ev-{n}", "wss://relay.example.org", True, now=now, next_attempt=None)


async def bare_set(client: aioredis.Redis, n: int) -> None:
    await client.set(f"bench:set:{n}", STATE)


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    client_cpu: float  # seconds of this process's CPU
    server_cpu: float  # seconds of the server's CPU (INFO cpu)


async def server_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def timed(
    client: aioredis.Redis,
    step: Callable[[int], Awaitable[None]],
    times: int,
    concurrency: int,
    ids: Iterator[int],
) -> Run:
    """Run ``step`` ``times`` times, ``concurrency`` at a time, each on a fresh number from ``ids``."""
    queue = islice(ids, times)

    async def worker() -> None:
        for n in queue:
            await step(n)

    server0, cpu0, start = await server_cpu(client), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return Run(wall, cpu, await server_cpu(client) - server0)


async def measure(url: str, jobs: int, rounds: int, concurrency: int) -> None:
    client = aioredis.Redis.from_url(url, max_connections=max(concurrency, 1) + 2)
    try:
        await client.flushall()
        # Default TTLs: nothing expires during the run, as for jobs finished in the last hour.
        store = Store(client, namespace="bench", member=1)
        print(f"server: {(await client.info('server')).get('redis_version')} at {url}")
        print(f"jobs per round: {jobs}, rounds: {rounds} (median shown)")
        print(
            f"{'mode':<16}{'SET/s':>8}{'jobs/s':>8}{'ratio':>7}"
            f"{'client CPU/job':>16}{'server CPU/job':>16}{'client CPU/SET':>16}"
        )
        ids = count()  # every job of the run has its own id
        for label, conc in (("one at a time", 1), (f"{concurrency} at once", concurrency)):
            await timed(client, lambda n: job_sequence(store, n), min(jobs, 200), conc, ids)  # warm-up
            sets: list[Run] = []
            seqs: list[Run] = []
            for _ in range(rounds):
                sets.append(await timed(client, lambda n: bare_set(client, n), jobs, conc, ids))
                seqs.append(await timed(client, lambda n: job_sequence(store, n), jobs, conc, ids))

            def med(runs: list[Run], field: str) -> float:
                return statistics.median(getattr(r, field) for r in runs) / jobs

            set_s, seq_s = med(sets, "wall"), med(seqs, "wall")
            print(
                f"{label:<16}{1 / set_s:>8.0f}{1 / seq_s:>8.0f}{seq_s / set_s:>6.1f}x"
                f"{med(seqs, 'client_cpu') * 1e6:>13.0f} us{med(seqs, 'server_cpu') * 1e6:>13.0f} us"
                f"{med(sets, 'client_cpu') * 1e6:>13.0f} us"
            )
        print("jobs/s: one job's store calls in sequence (claim, save x3, finish, due, record_publish)")
        print("ratio = time of one job's sequence / time of one bare SET; 7 round trips per job")
        print(f"keys in Redis after the run: {await client.dbsize()}")
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--url", help="an existing Redis (it is FLUSHED); default: an embedded server")
    args = parser.parse_args()
    if args.url:
        asyncio.run(measure(args.url, args.jobs, args.rounds, args.concurrency))
        return
    with tempfile.TemporaryDirectory() as tmp, RedisServer(tmp) as server:
        asyncio.run(measure(server.url, args.jobs, args.rounds, args.concurrency))


if __name__ == "__main__":
    main()
