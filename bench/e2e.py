"""Benchmark of whole jobs: a 2-of-3 federation beside the bare path, in one run.

The bare path is what a customer gets without a federation: one example DVM on one relay, requests addressed
to it, its own result taken. The federated path is the same customer against a 2-of-3 federation with instant
example DVMs (each behind its sidecar and private relay), on the ``nostr`` and on the ``redis`` peer
transport, results co-signed by the group key. Every result the customer takes is checked with nostr-sdk's
``Event.verify()`` and its author (the DVM's key, or the group key), on both paths alike.

Two measures per path, rounds alternating between the paths so a busy machine slows all alike:
- latency: jobs one at a time (send, wait for the result), p50 and p99;
- throughput: a burst of ``--jobs`` requests with at most ``--concurrency`` waiting at once, jobs per second
  from the first request to the last result (with the p50 latency under that load), and the CPU time each
  role used per job.

Targets on a 2-core machine: >= 100 co-signed jobs/s on nostr and >= 200 on redis; p50 latency <= 5x the bare
path's.

By default every part runs as deployed, a process of its own (``bench/deployed.py``): per member a
``dvm-sidecar run --config`` process and an ``example-dvm`` process, set up through the CLI; one relay process
per path; the real Redis server; the customer in this process. CPU per job is reported per role: the sidecars
(the three processes together), the DVMs, the relay, this process (the customer) and Redis.

``--in-process`` runs the old way instead: sidecars, DVMs and customer on this process's event loop
(``sidecar.local.LocalFederation``, relays on nostr-sdk's threads), CPU split into the event loop's thread,
nostr-sdk's threads and Redis. ``--profile FILE`` (with ``--in-process``) also writes a cProfile of one extra
co-signed burst per transport (``FILE.nostr``, ``FILE.redis``) and prints its top functions by own time.

    .venv/bin/python bench/e2e.py [--jobs N] [--concurrency C] [--latency-jobs L] [--rounds R]
                                  [--transports nostr,redis] [--in-process [--profile FILE]] [--time-limit S]

The defaults take about a minute on a 2-core machine, most of it setting up the federations through the CLI.
Everything started is stopped at the end, on errors, on Ctrl-C and after ``--time-limit`` seconds; the
processes also die with the benchmark if it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path as FilePath

import deployed
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
CPU_ROLES_ORDER = ("sidecars", "dvms", "relay", "bench", "loop", "threads", "redis")
CPU_ROLES = {
    "in-process": "loop: the event loop's thread (sidecars, DVMs, customer: Python and nostr-sdk calls); threads: "
                  "nostr-sdk's own threads (the relays and clients); redis: the Redis server",
    "processes": "sidecars: the three sidecar processes (each with its private relay); dvms: the example DVM "
                 "processes; relay: the path's public relay process; bench: this process (the customer); "
                 "redis: the Redis server",
}


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
    cpu: Callable[[], dict[str, float]]  # CPU seconds used so far, by role
    latencies: list[float] = field(default_factory=list)
    burst_rates: list[float] = field(default_factory=list)
    burst_p50s: list[float] = field(default_factory=list)
    cpu_per_job: dict[str, list[float]] = field(default_factory=dict)  # by role, one figure per burst
    machine_busy: list[float] = field(default_factory=list)  # cores the whole machine kept busy, per burst


async def customer_for(stack: contextlib.AsyncExitStack, url: str, provider: str) -> Customer:
    customer = Customer(url, provider)
    await customer.start()
    stack.push_async_callback(customer.stop)
    return customer


# --- the paths in this process (--in-process) ----------------------------------------------------------------


def in_process_cpu(redis_pid: int) -> Callable[[], dict[str, float]]:
    def cpu() -> dict[str, float]:
        main, everything = time.thread_time(), time.process_time()
        return {"loop": main, "threads": everything - main, "redis": deployed.cpu_seconds(redis_pid)}

    return cpu


async def bare_in_process(stack: contextlib.AsyncExitStack, redis_pid: int) -> Path:
    relay = EmbeddedRelay()
    url = await relay.start()
    stack.push_async_callback(relay.stop)
    dvm = ExampleDvm(Keys.generate(), url, kinds=(KIND,))
    await dvm.start()
    stack.push_async_callback(dvm.stop)
    return Path("bare", await customer_for(stack, url, dvm.pubkey), in_process_cpu(redis_pid))


async def federated_in_process(
    stack: contextlib.AsyncExitStack, transport: str, redis_url: str, redis_pid: int
) -> Path:
    local = LocalFederation(LocalOptions(transport=transport, redis_url=redis_url, timeouts=TIMEOUTS))
    stack.push_async_callback(local.stop)
    await local.start()
    customer = await customer_for(stack, local.public_url, local.group_pubkey)
    return Path(f"2-of-3 {transport}", customer, in_process_cpu(redis_pid))


# --- the paths as deployed, a process per part (the default) -------------------------------------------------


def deployed_cpu(parts: deployed.Deployed, redis_pid: int) -> Callable[[], dict[str, float]]:
    def cpu() -> dict[str, float]:
        return {**parts.cpu(), "bench": deployed.own_cpu_seconds(), "redis": deployed.cpu_seconds(redis_pid)}

    return cpu


async def bare_deployed(stack: contextlib.AsyncExitStack, root: FilePath, redis_pid: int) -> Path:
    parts = deployed.bare(root / "bare")
    stack.callback(parts.stop)
    return Path("bare", await customer_for(stack, parts.url, parts.provider), deployed_cpu(parts, redis_pid))


async def federations_deployed(
    stack: contextlib.AsyncExitStack, root: FilePath, transports: list[str], redis_url: str, redis_pid: int
) -> list[Path]:
    """The federations set up side by side (the CLI ceremonies in threads, then the members started from this
    thread), each ready and done with its start-up announcement."""
    timeouts = (TIMEOUTS.dvm, TIMEOUTS.deadline, TIMEOUTS.coordinator, TIMEOUTS.session)
    roots = [root / f"federation-{transport}" for transport in transports]
    parts: list[deployed.Deployed] = []
    for where in roots:
        parts.append(deployed.relay(where))
        stack.callback(parts[-1].stop)
    feds = await asyncio.gather(*(asyncio.to_thread(deployed.ceremony, p, where / "members", t, redis_url, timeouts)
                                  for p, where, t in zip(parts, roots, transports)))
    deployed.wait_ready([port for p, fed in zip(parts, feds) for port in deployed.launch(p, fed)])
    paths = []
    for p, transport in zip(parts, transports):
        customer = await customer_for(stack, p.url, p.provider)
        await deployed.announced(p.url, p.provider)
        paths.append(Path(f"2-of-3 {transport}", customer, deployed_cpu(p, redis_pid)))
    return paths


# --- measures ------------------------------------------------------------------------------------------------


async def latency_round(path: Path, jobs: int, tag: str) -> None:
    for n in range(jobs):
        path.latencies.append(await path.customer.job(f"{tag} latency {n}"))


async def burst_round(path: Path, jobs: int, concurrency: int, tag: str) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one(n: int) -> float:
        async with slots:
            return await path.customer.job(f"{tag} burst {n}")

    cpu, busy = path.cpu(), deployed.machine_busy_seconds()
    start = time.perf_counter()
    latencies = await asyncio.gather(*(one(n) for n in range(jobs)))
    elapsed = time.perf_counter() - start
    used, busy = path.cpu(), deployed.machine_busy_seconds() - busy
    path.machine_busy.append(busy / elapsed)
    path.burst_rates.append(jobs / elapsed)
    path.burst_p50s.append(statistics.median(latencies))
    for role, seconds in used.items():
        path.cpu_per_job.setdefault(role, []).append((seconds - cpu[role]) / jobs)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(paths: list[Path], bare: Path) -> None:
    base_p50 = pct(bare.latencies, 0.5)
    print(f"\n{'path':<14}{'jobs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p50/bare':>10}{'burst p50 ms':>14}   target")
    for path in [bare, *paths]:
        rate = statistics.median(path.burst_rates)
        p50, p99 = pct(path.latencies, 0.5), pct(path.latencies, 0.99)
        target = ""
        if path is not bare:
            transport = path.name.split()[-1]
            ok_rate = rate >= TARGET_JOBS_PER_S[transport]
            ok_p50 = p50 / base_p50 <= TARGET_P50_RATIO
            target = (f">= {TARGET_JOBS_PER_S[transport]:.0f}/s {'met' if ok_rate else 'MISSED'}, "
                      f"p50 <= {TARGET_P50_RATIO:.0f}x bare {'met' if ok_p50 else 'MISSED'}")
        print(f"{path.name:<14}{rate:>9.1f}{p50 * 1e3:>9.1f}{p99 * 1e3:>9.1f}{p50 / base_p50:>9.1f}x"
              f"{statistics.median(path.burst_p50s) * 1e3:>14.1f}   {target}")
    found = {role for path in [bare, *paths] for role in path.cpu_per_job}
    roles = [role for role in CPU_ROLES_ORDER if role in found] + sorted(found - set(CPU_ROLES_ORDER))
    print(f"\n{'CPU ms/job':<14}" + "".join(f"{role:>10}" for role in [*roles, "total"])
          + f"{'cores: path':>13}{'machine':>9}")
    for path in [bare, *paths]:
        per_job = {role: statistics.median(figures) * 1e3 for role, figures in path.cpu_per_job.items()}
        cells = [f"{per_job[role]:>10.2f}" if role in per_job else f"{'-':>10}" for role in roles]
        cores = sum(per_job.values()) / 1e3 * statistics.median(path.burst_rates)
        print(f"{path.name:<14}" + "".join(cells) + f"{sum(per_job.values()):>10.2f}{cores:>13.2f}"
              f"{statistics.median(path.machine_busy):>9.2f}")


async def profile_burst(path: Path, jobs: int, concurrency: int, out: str) -> None:
    # Own time measured as CPU time of this thread: wall time would charge to whatever call was running when
    # the OS gave the core to another process (on a shared 2-core machine, mostly socket writes to Redis).
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    await burst_round(path, jobs, concurrency, "profiled")
    profiler.disable()
    profiler.dump_stats(out)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    print(f"\nprofile of one {path.name} burst ({jobs} jobs), top functions by own time -> {out}")
    print("\n".join(line for line in text.getvalue().splitlines()[6:] if line.strip()))


async def measure(args: argparse.Namespace, stack: contextlib.AsyncExitStack, tmp: FilePath) -> None:
    server = RedisServer(tmp / "redis")
    redis_url = server.start()
    stack.callback(server.stop)
    assert server.pid is not None
    transports = args.transports.split(",")
    started = time.monotonic()
    if args.in_process:
        bare = await bare_in_process(stack, server.pid)
        paths = [await federated_in_process(stack, t, redis_url, server.pid) for t in transports]
    else:
        bare = await bare_deployed(stack, tmp, server.pid)
        paths = await federations_deployed(stack, tmp, transports, redis_url, server.pid)
    mode = "in-process" if args.in_process else "processes"
    print(f"mode: {mode}, every path ready in {time.monotonic() - started:.0f} s; jobs per burst: {args.jobs} (at most {args.concurrency} waiting), latency jobs per "
          f"round: {args.latency_jobs}, rounds: {args.rounds}; Redis at {redis_url}")
    for path in [bare, *paths]:  # warm up: connections, caches, first-use costs
        await latency_round(path, 3, "warm-up")
        path.latencies.clear()
    for r in range(args.rounds):
        for path in [bare, *paths]:
            await latency_round(path, args.latency_jobs, f"round {r}")
        for path in [bare, *paths]:
            await burst_round(path, args.jobs, args.concurrency, f"round {r}")
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{p.name} {p.burst_rates[-1]:.0f} jobs/s" for p in [bare, *paths]))
    report(paths, bare)
    print(f"jobs/s: burst throughput (median of rounds); p50/p99: one job at a time; CPU per job in the burst "
          f"(median of rounds), {CPU_ROLES[mode]}; cores: what the path used (total x jobs/s) and what the "
          f"whole machine kept busy, of {os.cpu_count()}, during the bursts (the rest of its load is other work)")
    bad = sum(p.customer.bad for p in [bare, *paths])
    print(f"results failing verification or from another author: {bad}")
    if args.profile:
        for path in paths:
            await profile_burst(path, args.jobs, args.concurrency, f"{args.profile}.{path.name.split()[-1]}")


async def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    limit = asyncio.timeout(args.time_limit)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
            # The stack stops everything started, on errors, Ctrl-C and the time limit too.
            async with contextlib.AsyncExitStack() as stack, limit:
                await measure(args, stack, FilePath(tmp))
    except TimeoutError:
        if not limit.expired():
            raise  # a job's own time limit
        sys.exit(f"gave up after --time-limit {args.time_limit:g} s; everything the benchmark started is stopped")
    print(f"total {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300, help="requests per throughput burst")
    parser.add_argument("--concurrency", type=int, default=100, help="requests waiting at once in a burst")
    parser.add_argument("--latency-jobs", type=int, default=20, help="one-at-a-time jobs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transports", default="nostr,redis", help="peer transports to run, comma-separated")
    parser.add_argument("--in-process", action="store_true",
                        help="run sidecars, DVMs and relays in this process (LocalFederation), not as processes")
    parser.add_argument("--profile", metavar="FILE", help="with --in-process: also profile one burst per transport")
    parser.add_argument("--time-limit", type=float, default=600.0, metavar="SECONDS",
                        help="give up (and stop everything) after this long")
    args = parser.parse_args()
    if args.profile and not args.in_process:
        parser.error("--profile profiles this process only: use it with --in-process")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit("interrupted; everything the benchmark started is stopped")


if __name__ == "__main__":
    main()
