"""Operations against running sidecars of a local federation (real Redis, relays, example DVMs, HTTP):

- the canary end to end: sent by the operator's identity key to its own DVM, right, wrong and unanswered;
- ``/healthz`` and ``/readyz`` flipping as Redis, the public relay and the canary come and go;
- a co-signed job seen by ``promtool check metrics`` on a live scrape, by a real Prometheus running every
  dashboard and alert expression, and on the status page; no secret on any page.

Every wait is a bounded poll; every server listens on 127.0.0.1 and is stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio
from nostr_sdk import EventBuilder, Filter, Keys, Kind, PublicKey, ReqTarget, Tag
from prometheus_client.parser import text_string_to_metric_families

from consensus.nip90 import parse_job_request, result_kind
from sidecar.dvm import CanarySpec
from sidecar.example_dvm import ExampleDvm, honest_answer
from sidecar.local import KIND, LocalFederation, LocalOptions
from sidecar.relay import EventFeed, connect_client, from_sdk_event, verify
from tests.deploy.prometheus_server import PrometheusServer
from tests.deploy.promql import alert_expressions, dashboard_expressions, load_dashboard, metric_names
from tests.deploy.test_prometheus import ALERTS, promtool
from tests.deploy.tools import DASHBOARD

pytestmark = pytest.mark.asyncio(loop_scope="module")

CANARY_INPUT = "dvm-sidecar canary"
T = TypeVar("T")


def canary(expected: str | None = None, interval: float = 1.0) -> CanarySpec:
    """A canary every ``interval`` seconds (1 s timeout); by default expecting what an honest example DVM
    answers."""
    if expected is None:
        tags = [Tag.parse(["i", CANARY_INPUT, "text"])]
        event = EventBuilder(Kind(KIND), "").tags(tags).finalize(Keys.generate())
        expected = honest_answer(parse_job_request(from_sdk_event(event)))
    return CanarySpec(kind=KIND, input=CANARY_INPUT, expected=expected, interval=interval, timeout=1.0)


async def start_observed(local: LocalFederation, member: int, spec: CanarySpec | None) -> str:
    """Start ``member`` with HTTP on a free port and the given canary; its base URL."""
    setup = dataclasses.replace(local.setup(member), http_port=0, canary=spec)
    sidecar = await local.start_member(member, setup)
    assert sidecar.http is not None and sidecar.http.host == "127.0.0.1"
    return sidecar.http.url


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def readyz(session: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    status, body = await get(session, f"{base}/readyz")
    return status, json.loads(body)


async def until(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, timeout: float = 20) -> T:
    """Poll ``probe`` every 0.2 s until ``done`` holds; after ``timeout`` fail naming ``what`` and the last
    value."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not done(value):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s; last {value!r}")
        await asyncio.sleep(0.2)
        value = await probe()
    return value


def sample(exposition: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"{name}{labels} not in the exposition")


# ----------------------------------------------------------------------------------------------------
# The canary


async def test_canary_against_the_example_dvm() -> None:
    """Member 1: honest DVM, right expectation. Member 2: a --wrong DVM. Member 3: honest DVM, wrong
    expectation. Only member 1 is ready; the others count ``wrong`` and say ``canary`` on /readyz."""
    local = LocalFederation(LocalOptions(wrong=frozenset({2})))
    await local.start(set())
    try:
        dvm_key = local.dvm_keys[1].public_key().to_hex()
        urls: dict[int, str] = {}
        urls[1] = await start_observed(local, 1, canary())
        urls[2] = await start_observed(local, 2, canary())
        urls[3] = await start_observed(local, 3, canary(expected="not what the DVM says"))
        requests = await connect_client(local.sidecars[1].private_relay_url)
        try:
            feed = EventFeed(requests)
            await requests.subscribe(ReqTarget.auto([Filter().kinds([Kind(KIND)])]))
            async with aiohttp.ClientSession() as session:

                async def canaries(m: int, result: str, count: int) -> str:
                    async def scrape() -> str:
                        return (await get(session, f"{urls[m]}/metrics"))[1]

                    def enough(text: str) -> bool:
                        return sample(text, "dvm_sidecar_canary_total", result=result) >= count

                    return await until(scrape, enough, f"{count} {result} canaries at member {m}")

                await canaries(1, "ok", 2)
                assert (await readyz(session, urls[1]))[0] == 200
                for m in (2, 3):
                    text = await canaries(m, "wrong", 2)
                    assert sample(text, "dvm_sidecar_canary_total", result="ok") == 0
                    assert sample(text, "dvm_sidecar_canary_last_success_timestamp_seconds") == 0
                    status, body = await readyz(session, urls[m])
                    assert status == 503
                    assert body["checks"] == {"redis": True, "public_relay": True, "canary": False}
                    assert (await get(session, f"{urls[m]}/healthz"))[0] == 200
            # What member 1 sent its DVM: signed by the operator's identity key, addressed to the DVM.
            canary_request = await feed.next(timeout=5)
            assert canary_request is not None and verify(canary_request)
            assert canary_request.author().to_hex() == local.identities[1].public_key().to_hex()
            tags = [t.to_vec() for t in canary_request.tags()]
            assert ["i", CANARY_INPUT, "text"] in tags and [t for t in tags if t[0] == "p"] == [["p", dvm_key]]
            assert local.dvms[1].counts.served >= 2 and local.dvms[2].counts.served >= 2
        finally:
            await requests.shutdown()
    finally:
        await local.stop()


async def test_canary_in_passthrough_mode() -> None:
    """A passthrough DVM answers only requests addressed to the group key: so is the canary addressed."""
    local = LocalFederation(LocalOptions(mode="passthrough"))
    await local.start(set())
    try:
        url = await start_observed(local, 1, canary())
        async with aiohttp.ClientSession() as session:
            await until(lambda: readyz(session, url), lambda r: r[0] == 200, "member 1 ready")
            text = (await get(session, f"{url}/metrics"))[1]
            assert sample(text, "dvm_sidecar_canary_total", result="ok") >= 1
    finally:
        await local.stop()


async def test_canary_retries_a_failing_dvm_soon_and_notices_one_gone() -> None:
    """A DVM answering errors fails the canary; once a healthy DVM replaces it the member is ready again long
    before the 30 s interval, because a failed canary is retried one timeout later. A DVM gone: timeout."""
    local = LocalFederation(LocalOptions(failing=frozenset({1})))
    await local.start(set())
    try:
        url = await start_observed(local, 1, canary(interval=30.0))
        async with aiohttp.ClientSession() as session:
            await until(lambda: get(session, f"{url}/metrics"),
                        lambda r: sample(r[1], "dvm_sidecar_canary_total", result="error") >= 1,
                        "a canary answered with an error")
            assert (await readyz(session, url))[0] == 503
            await local.dvms[1].stop()
            local.dvms[1] = ExampleDvm(local.dvm_keys[1], local.sidecars[1].private_relay_url, kinds=(KIND,))
            await local.dvms[1].start()
            await until(lambda: readyz(session, url), lambda r: r[0] == 200, "ready with a healthy DVM",
                        timeout=10)

            await local.dvms[1].stop()
            spec = local.sidecars[1].setup.canary
            assert spec is not None and not await local.sidecars[1].dvm.run_canary(spec)
            status, body = await readyz(session, url)
            assert status == 503 and body["checks"]["canary"] is False
            text = (await get(session, f"{url}/metrics"))[1]
            assert sample(text, "dvm_sidecar_canary_total", result="timeout") == 1
    finally:
        await local.stop()


# ----------------------------------------------------------------------------------------------------
# Health and readiness


async def test_readiness_follows_redis_and_the_public_relay() -> None:
    local = LocalFederation(LocalOptions())
    await local.start(set())
    try:
        url = await start_observed(local, 1, canary())
        assert local.relay is not None
        async with aiohttp.ClientSession() as session:

            async def becomes(status: int, failing: str | None, what: str, timeout: float = 20) -> None:
                want = {"redis": True, "public_relay": True, "canary": True}
                if failing is not None:
                    want[failing] = False
                expected = (status, {"ready": status == 200, "checks": want})
                await until(lambda: readyz(session, url), lambda r: r == expected, what, timeout)
                assert await get(session, f"{url}/healthz") == (200, "ok\n")  # the process is up throughout

            await becomes(200, None, "ready at start")
            local.redis_server.stop()
            await becomes(503, "redis", "not ready without Redis")
            local.redis_server.start()
            await becomes(200, None, "ready with Redis back")
            await local.relay.stop()
            await becomes(503, "public_relay", "not ready without the public relay")
            await local.relay.start()  # same port: nostr-sdk reconnects by itself
            await becomes(200, None, "ready with the public relay back", timeout=30)
    finally:
        await local.stop()


# ----------------------------------------------------------------------------------------------------
# A federation that co-signed a job, seen through /metrics, Prometheus and the status page


@dataclasses.dataclass(frozen=True)
class Served:
    local: LocalFederation
    urls: dict[int, str]  # member -> base URL of its HTTP side
    request_id: str


async def cosign_one_job(local: LocalFederation) -> str:
    """Send one job addressed to the federation as a customer would; its request id once the co-signed result
    arrived and verified."""
    sender = await connect_client(local.public_url)
    listener = await connect_client(local.public_url)
    try:
        feed = EventFeed(listener)
        group = PublicKey.parse(local.group_pubkey)
        await listener.subscribe(ReqTarget.auto([Filter().kinds([Kind(result_kind(KIND))]).author(group)]))
        tags = [Tag.parse(["i", "operations", "text"]), Tag.parse(["p", local.group_pubkey])]
        request = EventBuilder(Kind(KIND), "").tags(tags).finalize(Keys.generate())
        await sender.send_event(request)
        result = await feed.next(timeout=30)
        assert result is not None, "no co-signed result within 30 s"
        assert verify(result) and result.author().to_hex() == local.group_pubkey
        assert ["e", request.id().to_hex()] in [t.to_vec()[:2] for t in result.tags()]
        assert result.content() == honest_answer(parse_job_request(from_sdk_event(request)))
        return str(request.id().to_hex())
    finally:
        await sender.shutdown()
        await listener.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[Served]:
    local = LocalFederation(LocalOptions())
    await local.start(set())
    try:
        urls = {m: await start_observed(local, m, canary()) for m in local.federation.members}
        request_id = await cosign_one_job(local)
        async with aiohttp.ClientSession() as session:
            for m, url in urls.items():  # every member counted the job (some learn of it from the others)
                await until(partial(get, session, f"{url}/metrics"),
                            lambda r: sample(r[1], "dvm_sidecar_jobs_total", outcome="cosigned") == 1,
                            f"member {m} counted the co-signed job")
        yield Served(local, urls, request_id)
    finally:
        await local.stop()


async def test_promtool_accepts_live_scrapes(served: Served) -> None:
    async with aiohttp.ClientSession() as session:
        scrapes = [await get(session, f"{url}/metrics") for url in served.urls.values()]
    assert all(status == 200 for status, _ in scrapes)
    texts = [text for _, text in scrapes]
    # Histograms with data, not only zeros (the coordinator alone counts sessions; any member may publish).
    for phase in ("dvm", "agreement", "signing", "publishing"):
        assert sum(sample(t, "dvm_sidecar_phase_duration_seconds_count", phase=phase) for t in texts) >= 1, phase
    assert sum(sample(t, "dvm_sidecar_signing_sessions_count") for t in texts) >= 1
    assert all(sample(t, "dvm_sidecar_requests_seen_total", kind=str(KIND)) == 1 for t in texts)
    for text in texts:
        promtool("check", "metrics", stdin=text)


@pytest.mark.timeout(120)
async def test_a_real_prometheus_scrapes_the_federation(served: Served, tmp_path: Path) -> None:
    """Every dashboard and alert expression runs on what Prometheus scraped from the running members and names
    only metrics it has; the co-signed job shows at every member."""
    targets = [url.removeprefix("http://") for url in served.urls.values()]
    async with PrometheusServer(tmp_path / "prometheus", targets) as prometheus:
        await prometheus.wait_for_scrapes(2)
        present = await prometheus.metric_names()
        expressions = [*dashboard_expressions(load_dashboard(DASHBOARD)), *alert_expressions(ALERTS)]
        for expr in expressions:
            await prometheus.query(expr)  # raises with Prometheus' own error for one it cannot run
            missing = metric_names(expr) - present - {"up"}
            assert not missing, f"{expr}: not scraped {sorted(missing)}"
        cosigned = await prometheus.query('dvm_sidecar_jobs_total{outcome="cosigned"}')
        assert sorted(r["metric"]["instance"] for r in cosigned) == sorted(targets)
        assert all(float(r["value"][1]) == 1 for r in cosigned), cosigned
        ready = await prometheus.query('dvm_sidecar_canary_total{result="ok"} > 0')
        assert len(ready) == len(targets)


async def test_status_page_shows_the_federation_its_members_and_the_job(served: Served) -> None:
    local = served.local
    async with aiohttp.ClientSession() as session:  # the page reads Redis when it is asked for
        status, page = await until(lambda: get(session, f"{served.urls[1]}/"),
                                   lambda r: served.request_id in r[1], "the job on the status page", timeout=10)
    assert status == 200
    assert local.npub in page and "2 of 3 members must agree" in page
    rows = {m: next(line for line in page.split("<tr>") if local.identities[m].public_key().to_bech32() in line)
            for m in local.federation.members}
    assert "this sidecar" in rows[1]
    for m in (2, 3):
        assert re.search(r"<td>\d+ s ago</td>", rows[m]), rows[m]  # heard from during the job, seconds ago
    job = next(line for line in page.split("<tr>") if served.request_id in line)
    assert f"<td>{KIND}</td><td>cosigned</td>" in job, job
    assert "<strong>ready</strong>" in page


async def test_no_secret_on_any_page(served: Served) -> None:
    """Every member's share scalar and identity secret, in hex (either case), decimal and bech32, searched for
    in every member's status page, /metrics and /readyz."""
    local = served.local
    secrets: dict[str, str] = {}  # what it is -> its text (the names only are shown on failure)
    for m in local.federation.members:
        share = local.key_packages[m].signing_share
        identity = local.identities[m].secret_key()
        secrets |= {f"share {m} hex": f"{share:064x}", f"share {m} short hex": f"{share:x}",
                    f"share {m} decimal": str(share), f"identity {m} hex": identity.to_hex(),
                    f"identity {m} nsec": identity.to_bech32()}
    async with aiohttp.ClientSession() as session:
        pages = {f"{url}{path}": await get(session, f"{url}{path}") for url in served.urls.values()
                 for path in ("/", "/metrics", "/readyz", "/healthz")}
    assert all(status in (200, 503) for status, _ in pages.values())
    found = [(where, name) for where, (_, text) in pages.items() for name, secret in secrets.items()
             if secret.lower() in text.lower()]
    assert not found
    # The search does find what is there: the public facts of the same keys.
    page = pages[f"{served.urls[1]}/"][1]
    assert all(local.identities[m].public_key().to_bech32() in page for m in local.federation.members)
