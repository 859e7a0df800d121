"""Benchmark of whole jobs: a 2-of-3 federation (``sidecar.local``) beside the bare path, in one run.

The bare path is what a customer gets without a federation: one example DVM on one relay, requests addressed
to it, its own result taken. The federated path is the same customer against a 2-of-3 federation with instant
example DVMs (each behind its sidecar and private relay), on the ``nostr`` and on the ``redis`` peer
transport, results co-signed by the group key. Every result the customer takes is checked with nostr-sdk's
``Event.verify()`` and its author (the DVM's key, or the group key), on both paths alike.

Two measures per path, rounds alternating between the paths so a busy machine slows all alike:
- latency: jobs one at a time (send, wait for the result), p50 and p99;
- throughput: a burst of ``--jobs`` requests with at most ``--concurrency`` waiting at once, jobs per second
  from the first request to the last result (with the p50 latency under that load).

Targets on a 2-core machine: >= 100 co-signed jobs/s on nostr and >= 200 on redis; p50 latency <= 5x the bare
path's. Everything runs in this process (sidecars, DVMs, customer; the relays on nostr-sdk's threads) beside
one Redis server process.

    .venv/bin/python bench/e2e.py [--jobs N] [--concurrency C] [--latency-jobs L] [--rounds R]
                                  [--transports nostr,redis] [--profile FILE]

``--profile FILE`` also writes a cProfile of one extra co-signed burst per transport (``FILE.nostr``,
``FILE.redis``) and prints its top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from nostr_sdk import Client, EventBuilder, Filter, Keys, Kind, PublicKey, ReqTarget, Tag

from consensus.federation import Timeouts
from consensus.nip90 import result_kind
from sidecar.example_dvm import ExampleDvm
from sidecar.local import KIND, LocalFederation, LocalOptions
from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay, EventFeed, connect_client

TARGET_JOBS_PER_S = {"nostr": 100.0, "redis": 200.0}
TARGET_P50_RATIO = 5.0
TIMEOUTS = Timeouts(dvm=30, deadline=60, coordinator=30, session=5)  # nothing times out in a healthy run


@dataclass
class Customer:
    """Sends requests addressed to ``provider`` and waits for results authored by it, verified."""

    url: str
    provider: str  # x-only hex: the DVM's key (bare) or the group key (federated)
    keys: Keys = field(default_factory=Keys.generate)
    waiting: dict[str, tuple[float, asyncio.Future[float]]] = field(default_factory=dict)
    bad: int = 0

    async def start(self) -> None:
        self.sender: Client = await connect_client(self.url)
        self.listener: Client = await connect_client(self.url)
        feed = EventFeed(self.listener)
        query = Filter().kind(Kind(result_kind(KIND))).author(PublicKey.parse(self.provider))
        await self.listener.subscribe(ReqTarget.auto([query]))
        self._task = asyncio.create_task(self._listen(feed))

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.sender.shutdown()
        await self.listener.shutdown()

    async def _listen(self, feed: EventFeed) -> None:
        async for event in feed:
            now = time.perf_counter()
            refs = [t.to_vec()[1] for t in event.tags() if t.to_vec()[0] == "e"]
            pending = next((self.waiting.pop(r) for r in refs if r in self.waiting), None)
            if pending is None:
                continue
            sent, future = pending
            if event.author().to_hex() != self.provider or not event.verify():
                self.bad += 1
                future.set_exception(AssertionError("a result that is not the provider's"))
            else:
                future.set_result(now - sent)

    async def job(self, text: str) -> float:
        """Send one request; its latency in seconds once the result arrived."""
        tags = [Tag.parse(["i", text, "text"]), Tag.parse(["p", self.provider])]
        request = EventBuilder(Kind(KIND), "").tags(tags).finalize(self.keys)
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[request.id().to_hex()] = (time.perf_counter(), future)
        await self.sender.send_event(request)
        async with asyncio.timeout(60):
            return await future


@dataclass
class Path:
    name: str
    customer: Customer
    stop: Callable[[], Awaitable[None]]
    latencies: list[float] = field(default_factory=list)
    burst_rates: list[float] = field(default_factory=list)
    burst_p50s: list[float] = field(default_factory=list)
    cpu_main: list[float] = field(default_factory=list)  # per job: the event loop's thread (Python, FFI calls)
    cpu_threads: list[float] = field(default_factory=list)  # per job: nostr-sdk's threads (relays, clients)
    cpu_redis: list[float] = field(default_factory=list)  # per job: the Redis server process


async def bare_path() -> Path:
    relay = EmbeddedRelay()
    url = await relay.start()
    dvm = ExampleDvm(Keys.generate(), url, kinds=(KIND,))
    await dvm.start()
    customer = Customer(url, dvm.pubkey)
    await customer.start()

    async def stop() -> None:
        await customer.stop()
        await dvm.stop()
        await relay.stop()

    return Path("bare", customer, stop)


async def federated_path(transport: str, redis_url: str) -> tuple[Path, LocalFederation]:
    local = LocalFederation(LocalOptions(transport=transport, redis_url=redis_url, timeouts=TIMEOUTS))
    await local.start()
    customer = Customer(local.public_url, local.group_pubkey)
    await customer.start()

    async def stop() -> None:
        await customer.stop()
        await local.stop()

    return Path(f"2-of-3 {transport}", customer, stop), local


async def latency_round(path: Path, jobs: int, tag: str) -> None:
    for n in range(jobs):
        path.latencies.append(await path.customer.job(f"{tag} latency {n}"))


async def redis_cpu(redis: aioredis.Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def burst_round(path: Path, jobs: int, concurrency: int, tag: str, redis: aioredis.Redis) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one(n: int) -> float:
        async with slots:
            return await path.customer.job(f"{tag} burst {n}")

    cpu, main, server = time.process_time(), time.thread_time(), await redis_cpu(redis)
    start = time.perf_counter()
    latencies = await asyncio.gather(*(one(n) for n in range(jobs)))
    elapsed = time.perf_counter() - start
    cpu, main, server = time.process_time() - cpu, time.thread_time() - main, await redis_cpu(redis) - server
    path.burst_rates.append(jobs / elapsed)
    path.burst_p50s.append(statistics.median(latencies))
    path.cpu_main.append(main / jobs)
    path.cpu_threads.append((cpu - main) / jobs)
    path.cpu_redis.append(server / jobs)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(paths: list[Path], bare: Path) -> None:
    base_p50 = pct(bare.latencies, 0.5)
    print(f"\n{'path':<14}{'jobs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p50/bare':>10}"
          f"{'burst p50 ms':>14}{'CPU ms/job: loop':>18}{'threads':>9}{'redis':>7}   target")
    for path in [bare, *paths]:
        rate = statistics.median(path.burst_rates)
        p50, p99 = pct(path.latencies, 0.5), pct(path.latencies, 0.99)
        transport = path.name.split()[-1]
        target = ""
        if path is not bare:
            ok_rate = rate >= TARGET_JOBS_PER_S[transport]
            ok_p50 = p50 / base_p50 <= TARGET_P50_RATIO
            target = (f">= {TARGET_JOBS_PER_S[transport]:.0f}/s {'met' if ok_rate else 'MISSED'}, "
                      f"p50 <= {TARGET_P50_RATIO:.0f}x bare {'met' if ok_p50 else 'MISSED'}")
        print(f"{path.name:<14}{rate:>9.1f}{p50 * 1e3:>9.1f}{p99 * 1e3:>9.1f}{p50 / base_p50:>9.1f}x"
              f"{statistics.median(path.burst_p50s) * 1e3:>14.1f}{statistics.median(path.cpu_main) * 1e3:>18.2f}"
              f"{statistics.median(path.cpu_threads) * 1e3:>9.2f}{statistics.median(path.cpu_redis) * 1e3:>7.2f}"
              f"   {target}")


async def profile_burst(path: Path, jobs: int, concurrency: int, out: str, redis: aioredis.Redis) -> None:
    # Own time measured as CPU time of this thread: wall time would charge to whatever call was running when
    # the OS gave the core to another process (on a shared 2-core machine, mostly socket writes to Redis).
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    await burst_round(path, jobs, concurrency, "profiled", redis)
    profiler.disable()
    profiler.dump_stats(out)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    print(f"\nprofile of one {path.name} burst ({jobs} jobs), top functions by own time -> {out}")
    print("\n".join(line for line in text.getvalue().splitlines()[6:] if line.strip()))


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        server = RedisServer(tmp)
        redis_url = server.start()
        redis = aioredis.Redis.from_url(redis_url)
        paths: list[Path] = []
        try:
            bare = await bare_path()
            for transport in args.transports.split(","):
                path, _ = await federated_path(transport, redis_url)
                paths.append(path)
            print(f"jobs per burst: {args.jobs} (at most {args.concurrency} waiting), latency jobs per round: "
                  f"{args.latency_jobs}, rounds: {args.rounds}; Redis at {redis_url}")
            for path in [bare, *paths]:  # warm up: connections, caches, first-use costs
                await latency_round(path, 3, "warm-up")
                path.latencies.clear()
            for r in range(args.rounds):
                for path in [bare, *paths]:
                    await latency_round(path, args.latency_jobs, f"round {r}")
                for path in [bare, *paths]:
                    await burst_round(path, args.jobs, args.concurrency, f"round {r}", redis)
                print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                    f"{p.name} {p.burst_rates[-1]:.0f} jobs/s" for p in [bare, *paths]))
            report(paths, bare)
            print("jobs/s: burst throughput (median of rounds); p50/p99: one job at a time; CPU per job in the "
                  "burst: the event loop's thread (sidecars, DVMs, customer: Python and nostr-sdk calls), nostr-sdk's "
                  "own threads (the in-process relays and clients), the Redis server")
            bad = sum(p.customer.bad for p in [bare, *paths])
            print(f"results failing verification or from another author: {bad}")
            if args.profile:
                for path in paths:
                    out = f"{args.profile}.{path.name.split()[-1]}"
                    await profile_burst(path, args.jobs, args.concurrency, out, redis)
        finally:
            for path in paths:
                await path.stop()
            if "bare" in locals():
                await bare.stop()
            await redis.aclose()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300, help="requests per throughput burst")
    parser.add_argument("--concurrency", type=int, default=100, help="requests waiting at once in a burst")
    parser.add_argument("--latency-jobs", type=int, default=20, help="one-at-a-time jobs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transports", default="nostr,redis", help="peer transports to run, comma-separated")
    parser.add_argument("--profile", metavar="FILE", help="also profile one burst per transport (cProfile)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
