"""Every Prometheus metric of one sidecar, on the sidecar's own registry.

Rules this module keeps (https://prometheus.io/docs/practices/naming):
- one prefix, ``dvm_sidecar_``; base units (``_seconds``); counters end in ``_total``; metadata in a
  ``*_info`` gauge set to 1.
- labels only from bounded sets fixed at start: the closed vocabularies below, the configured job kinds and
  relay URLs, and member indices (``peer``). Never a job id, event id or pubkey. The helpers raise
  ``ValueError`` for a label value outside its set, so a typo fails in a test instead of growing a new series.
- every known label value is initialised to 0 at start, so a rate over a series that never moved still exists
  ("avoid missing metrics").
- the ``*_created`` series (each counter's start time) are left out; they double the exposition for no use.
- nothing secret is ever a label or a value.

One ``Metrics`` per sidecar: each instance has its own ``CollectorRegistry``, so several sidecars (the demo,
the tests) live in one process without clashing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

Outcome = Literal["cosigned", "no_quorum", "dvm_error", "timeout"]
Phase = Literal["dvm", "agreement", "signing", "publishing"]
RequestRejectReason = Literal[
    "malformed", "oversize", "encrypted", "duplicate", "wrong_kind", "stale", "unaddressed", "overflow"
]
PeerMessageType = Literal["announce", "give_up", "sign_request", "share", "done"]
PeerRejectReason = Literal[
    "unknown_author", "bad_signature", "stale", "replay", "malformed", "oversize", "overflow"
]
PublishResult = Literal["accepted", "rejected", "error"]
CanaryResult = Literal["ok", "wrong", "timeout", "error"]

OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
PHASES: tuple[Phase, ...] = get_args(Phase)
REQUEST_REJECT_REASONS: tuple[RequestRejectReason, ...] = get_args(RequestRejectReason)
PEER_MESSAGE_TYPES: tuple[PeerMessageType, ...] = get_args(PeerMessageType)
PEER_REJECT_REASONS: tuple[PeerRejectReason, ...] = get_args(PeerRejectReason)
PUBLISH_RESULTS: tuple[PublishResult, ...] = get_args(PublishResult)
CANARY_RESULTS: tuple[CanaryResult, ...] = get_args(CanaryResult)

# Phases wait on a DVM, on relays and on co-signers: tens of milliseconds on loopback, seconds to minutes
# across public relays. The default buckets (5 ms .. 10 s) would put every slow round in +Inf.
PHASE_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Sessions per signature: 1 when every chosen signer answers; ROAST allows up to n - t + 1.
SESSION_BUCKETS: tuple[float, ...] = (1, 2, 3, 4, 5, 8, 13, 21, 34)


class _Registry(CollectorRegistry):
    """A registry that leaves out the ``*_created`` samples.

    prometheus-client can only switch them off process-wide (``disable_created_metrics()``); filtering here
    keeps that choice local to the sidecar's own registry.
    """

    def collect(self) -> Iterable[Metric]:
        for metric in super().collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


def _check(value: str, allowed: Iterable[str], label: str) -> str:
    if value not in allowed:
        raise ValueError(f"{label}={value!r} is not a known {label} (known: {', '.join(sorted(allowed))})")
    return value


class Metrics:
    """The sidecar's metrics. ``members`` are the federation's member indices (the ``peer`` label), ``relays``
    the configured public relay URLs, ``kinds`` the job request kinds served."""

    def __init__(
        self, *, members: Sequence[int], relays: Sequence[str], kinds: Sequence[int], version: str
    ) -> None:
        self.members: tuple[str, ...] = tuple(str(int(m)) for m in members)
        self.relays: tuple[str, ...] = tuple(relays)
        self.kinds: tuple[str, ...] = tuple(str(int(k)) for k in kinds)
        for name, values in (("members", self.members), ("relays", self.relays), ("kinds", self.kinds)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has duplicates: {list(values)}")
        self.registry: CollectorRegistry = _Registry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}  # labelled series, looked up once
        reg = self.registry

        self.build_info = Gauge(
            "dvm_sidecar_build_info", "Always 1; the version label says what is running.", ["version"],
            registry=reg,
        )
        self.build_info.labels(version).set(1)

        # Public side: job requests.
        self.requests_seen = Counter(
            "dvm_sidecar_requests_seen_total",
            "Job requests received for a served kind, by kind (those then dropped also count as rejected).",
            ["kind"], registry=reg,
        )
        self.requests_rejected = Counter(
            "dvm_sidecar_requests_rejected_total", "Job requests ignored, by reason.", ["reason"],
            registry=reg,
        )
        self.jobs = Counter(
            "dvm_sidecar_jobs_total", "Jobs finished, by outcome.", ["outcome"], registry=reg
        )
        self.jobs_in_flight = Gauge(
            "dvm_sidecar_jobs_in_flight", "Jobs accepted and not yet finished.", registry=reg
        )
        self.phase_duration = Histogram(
            "dvm_sidecar_phase_duration_seconds",
            "Time a job spent in each phase: dvm (request to own result), agreement (own result to quorum), "
            "signing (quorum to signature), publishing (signature to first relay acceptance).",
            ["phase"], buckets=PHASE_BUCKETS, registry=reg,
        )
        self.signing_sessions = Histogram(
            "dvm_sidecar_signing_sessions",
            "Signing sessions needed for one group signature (1 when every chosen signer answered).",
            buckets=SESSION_BUCKETS, registry=reg,
        )

        # Peers, by member index.
        self.invalid_contributions = Counter(
            "dvm_sidecar_invalid_contributions_total",
            "Invalid commitments or signature shares received, by member.", ["peer"], registry=reg,
        )
        self.divergent_results = Counter(
            "dvm_sidecar_divergent_results_total",
            "Jobs where a member's result differed from the agreed one, by member.", ["peer"], registry=reg,
        )
        self.equivocations = Counter(
            "dvm_sidecar_equivocations_total",
            "Conflicting announcements for one job from the same member, by member.", ["peer"], registry=reg,
        )
        self.peer_last_seen = Gauge(
            "dvm_sidecar_peer_last_seen_timestamp_seconds",
            "Unix time of the last valid message from each member (0 = never).", ["peer"], registry=reg,
        )
        self.peer_messages = Counter(
            "dvm_sidecar_peer_messages_total", "Valid peer messages received, by type.", ["type"],
            registry=reg,
        )
        self.peer_messages_rejected = Counter(
            "dvm_sidecar_peer_messages_rejected_total", "Peer messages dropped, by reason.", ["reason"],
            registry=reg,
        )

        # Relays, Redis, outbox, canary.
        self.relay_publish = Counter(
            "dvm_sidecar_relay_publish_total", "Event publications to public relays, by relay and result.",
            ["relay", "result"], registry=reg,
        )
        self.relay_connected = Gauge(
            "dvm_sidecar_relay_connected", "1 while connected to the public relay, else 0.", ["relay"],
            registry=reg,
        )
        self.outbox_depth = Gauge(
            "dvm_sidecar_outbox_depth", "Co-signed events waiting to be published.", registry=reg
        )
        self.redis_errors = Counter(
            "dvm_sidecar_redis_errors_total", "Redis commands that failed.", registry=reg
        )
        self.canary = Counter(
            "dvm_sidecar_canary_total", "Canary jobs sent to the own DVM, by result.", ["result"],
            registry=reg,
        )
        self.canary_last_success = Gauge(
            "dvm_sidecar_canary_last_success_timestamp_seconds",
            "Unix time of the last canary job answered correctly (0 = never).", registry=reg,
        )
        self._initialise()

    def _initialise(self) -> None:
        """Create every known series at 0 (labels() on a labelled metric creates the child)."""
        for kind in self.kinds:
            self.requests_seen.labels(kind)
        for reason in REQUEST_REJECT_REASONS:
            self.requests_rejected.labels(reason)
        for outcome in OUTCOMES:
            self.jobs.labels(outcome)
        for phase in PHASES:
            self.phase_duration.labels(phase)
        for peer in self.members:
            self.invalid_contributions.labels(peer)
            self.divergent_results.labels(peer)
            self.equivocations.labels(peer)
            self.peer_last_seen.labels(peer)
        for message_type in PEER_MESSAGE_TYPES:
            self.peer_messages.labels(message_type)
        for peer_reason in PEER_REJECT_REASONS:
            self.peer_messages_rejected.labels(peer_reason)
        for relay in self.relays:
            self.relay_connected.labels(relay)
            for result in PUBLISH_RESULTS:
                self.relay_publish.labels(relay, result)
        for canary_result in CANARY_RESULTS:
            self.canary.labels(canary_result)

    def _peer(self, member: int) -> str:
        return _check(str(member), self.members, "peer")

    def _series(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, kept: prometheus-client's lookup costs more than the increment, and the
        busy paths count several things per job. The values are checked by the caller, as for ``labels``."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # Public side.
    def request_seen(self, kind: int) -> None:
        self._series(self.requests_seen, _check(str(kind), self.kinds, "kind")).inc()

    def request_rejected(self, reason: RequestRejectReason) -> None:
        self.requests_rejected.labels(_check(reason, REQUEST_REJECT_REASONS, "reason")).inc()

    def job_finished(self, outcome: Outcome) -> None:
        self._series(self.jobs, _check(outcome, OUTCOMES, "outcome")).inc()

    def set_jobs_in_flight(self, count: int) -> None:
        self.jobs_in_flight.set(count)

    def observe_phase(self, phase: Phase, seconds: float) -> None:
        self._series(self.phase_duration, _check(phase, PHASES, "phase")).observe(seconds)

    def observe_signing_sessions(self, sessions: int) -> None:
        self.signing_sessions.observe(sessions)

    # Peers.
    def invalid_contribution(self, member: int) -> None:
        self.invalid_contributions.labels(self._peer(member)).inc()

    def divergent_result(self, member: int) -> None:
        self.divergent_results.labels(self._peer(member)).inc()

    def equivocation(self, member: int) -> None:
        self.equivocations.labels(self._peer(member)).inc()

    def peer_seen(self, member: int, at: float | None = None) -> None:
        self._series(self.peer_last_seen, self._peer(member)).set(time.time() if at is None else at)

    def peer_message(self, message_type: PeerMessageType) -> None:
        self._series(self.peer_messages, _check(message_type, PEER_MESSAGE_TYPES, "type")).inc()

    def peer_message_rejected(self, reason: PeerRejectReason) -> None:
        self.peer_messages_rejected.labels(_check(reason, PEER_REJECT_REASONS, "reason")).inc()

    # Relays, Redis, outbox, canary.
    def relay_published(self, relay: str, result: PublishResult) -> None:
        self._series(
            self.relay_publish, _check(relay, self.relays, "relay"), _check(result, PUBLISH_RESULTS, "result")
        ).inc()

    def set_relay_connected(self, relay: str, connected: bool) -> None:
        self.relay_connected.labels(_check(relay, self.relays, "relay")).set(1 if connected else 0)

    def set_outbox_depth(self, depth: int) -> None:
        self.outbox_depth.set(depth)

    def redis_error(self) -> None:
        self.redis_errors.inc()

    def canary_finished(self, result: CanaryResult, at: float | None = None) -> None:
        self.canary.labels(_check(result, CANARY_RESULTS, "result")).inc()
        if result == "ok":
            self.canary_last_success.set(time.time() if at is None else at)

    def exposed_names(self) -> frozenset[str]:
        """Every series name this registry exposes (histograms as ``_bucket``/``_sum``/``_count``): what a
        dashboard or alert rule may query."""
        return frozenset(s.name for metric in self.registry.collect() for s in metric.samples)
