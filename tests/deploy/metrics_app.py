"""The sidecar's real HTTP app and Metrics, standing alone, for the scrape tests (promtool, Prometheus).

``exercised_metrics()`` moves every metric at least once, so histograms have buckets with counts and rates
have something to show; ``StaticStatus`` is a StatusSource with fixed answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecar.http import HttpServer, MemberStatus, StatusSnapshot, make_app, start_http
from sidecar.metrics import (
    CANARY_RESULTS,
    OUTCOMES,
    PEER_MESSAGE_TYPES,
    PEER_REJECT_REASONS,
    PHASES,
    PUBLISH_RESULTS,
    REQUEST_REJECT_REASONS,
    Metrics,
)

MEMBERS = (1, 2, 3)
RELAYS = ("wss://relay.example.org", "wss://nos.example.net")
KINDS = (5050,)


@dataclass(frozen=True)
class StaticStatus:
    checks: Mapping[str, bool] = field(
        default_factory=lambda: {"redis": True, "public_relay": True, "canary": True}
    )

    async def readiness(self) -> Mapping[str, bool]:
        return self.checks

    def status(self) -> StatusSnapshot:
        members = tuple(MemberStatus(i, f"npub1member{i}", i == 1, None) for i in MEMBERS)
        return StatusSnapshot("npub1federation", 2, members, (), "0.1.0", 0.0)


def exercised_metrics(now: float) -> Metrics:
    m = Metrics(members=MEMBERS, relays=RELAYS, kinds=KINDS, version="0.1.0")
    m.request_seen(KINDS[0])
    for reason in REQUEST_REJECT_REASONS:
        m.request_rejected(reason)
    for outcome in OUTCOMES:
        m.job_finished(outcome)
    m.set_jobs_in_flight(2)
    for i, phase in enumerate(PHASES):
        m.observe_phase(phase, 0.2 * (i + 1))
    m.observe_signing_sessions(1)
    for peer in MEMBERS:
        m.peer_seen(peer, at=now)
    m.invalid_contribution(3)
    m.divergent_result(3)
    m.equivocation(3)
    for message_type in PEER_MESSAGE_TYPES:
        m.peer_message(message_type)
    for peer_reason in PEER_REJECT_REASONS:
        m.peer_message_rejected(peer_reason)
    for relay in RELAYS:
        m.set_relay_connected(relay, True)
        for result in PUBLISH_RESULTS:
            m.relay_published(relay, result)
    m.set_outbox_depth(1)
    m.redis_error()
    for canary_result in CANARY_RESULTS:
        m.canary_finished(canary_result, at=now)
    return m


async def serve(metrics: Metrics, status: StaticStatus | None = None) -> HttpServer:
    """The app on 127.0.0.1 and a free port; the caller stops it."""
    return await start_http(make_app(metrics, status or StaticStatus()), port=0)
