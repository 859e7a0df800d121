"""sidecar.metrics: names, initial series, helpers, label bounds, one registry per instance."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from prometheus_client import generate_latest

from sidecar.metrics import (
    CANARY_RESULTS,
    OUTCOMES,
    PEER_MESSAGE_TYPES,
    PEER_REJECT_REASONS,
    PHASE_BUCKETS,
    PHASES,
    PUBLISH_RESULTS,
    REQUEST_REJECT_REASONS,
    Metrics,
)

RELAYS = ("wss://relay.example.org", "wss://nos.example.net")


def make(version: str = "1.2.3") -> Metrics:
    return Metrics(members=[1, 2, 3], relays=RELAYS, kinds=[5050, 5100], version=version)


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_every_known_series_starts_at_zero() -> None:
    m = make()
    assert value(m, "dvm_sidecar_build_info", version="1.2.3") == 1
    expected: list[tuple[str, Mapping[str, str]]] = [
        *(("dvm_sidecar_requests_seen_total", {"kind": k}) for k in ("5050", "5100")),
        *(("dvm_sidecar_requests_rejected_total", {"reason": r}) for r in REQUEST_REJECT_REASONS),
        *(("dvm_sidecar_jobs_total", {"outcome": o}) for o in OUTCOMES),
        *(("dvm_sidecar_phase_duration_seconds_count", {"phase": p}) for p in PHASES),
        *(("dvm_sidecar_peer_messages_total", {"type": t}) for t in PEER_MESSAGE_TYPES),
        *(("dvm_sidecar_peer_messages_rejected_total", {"reason": r}) for r in PEER_REJECT_REASONS),
        *(("dvm_sidecar_canary_total", {"result": r}) for r in CANARY_RESULTS),
        *((name, {"peer": p}) for p in ("1", "2", "3") for name in (
            "dvm_sidecar_invalid_contributions_total", "dvm_sidecar_divergent_results_total",
            "dvm_sidecar_equivocations_total", "dvm_sidecar_peer_last_seen_timestamp_seconds")),
        *(("dvm_sidecar_relay_publish_total", {"relay": r, "result": res})
          for r in RELAYS for res in PUBLISH_RESULTS),
        *(("dvm_sidecar_relay_connected", {"relay": r}) for r in RELAYS),
        ("dvm_sidecar_jobs_in_flight", {}), ("dvm_sidecar_outbox_depth", {}),
        ("dvm_sidecar_redis_errors_total", {}), ("dvm_sidecar_signing_sessions_count", {}),
        ("dvm_sidecar_canary_last_success_timestamp_seconds", {}),
    ]
    for name, labels in expected:
        assert m.registry.get_sample_value(name, dict(labels)) == 0, (name, labels)


def test_exposition_has_no_created_series_and_only_the_prefix() -> None:
    text = generate_latest(make().registry).decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert names and all(n.startswith("dvm_sidecar_") for n in names)
    assert not any(n.endswith("_created") for n in names)
    assert names == make().exposed_names()


def test_helpers_move_the_right_series() -> None:
    m = make()
    m.request_seen(5050)
    m.request_rejected("oversize")
    m.job_finished("cosigned")
    m.job_finished("cosigned")
    m.set_jobs_in_flight(4)
    m.observe_phase("signing", 0.3)
    m.observe_signing_sessions(2)
    m.invalid_contribution(2)
    m.divergent_result(3)
    m.equivocation(3)
    m.peer_seen(2, at=1_700_000_000.5)
    m.peer_message("share")
    m.peer_message_rejected("replay")
    m.relay_published(RELAYS[1], "rejected")
    m.set_relay_connected(RELAYS[0], True)
    m.set_outbox_depth(7)
    m.redis_error()
    m.canary_finished("wrong", at=5.0)
    m.canary_finished("ok", at=1_700_000_100.0)

    assert value(m, "dvm_sidecar_requests_seen_total", kind="5050") == 1
    assert value(m, "dvm_sidecar_requests_seen_total", kind="5100") == 0
    assert value(m, "dvm_sidecar_requests_rejected_total", reason="oversize") == 1
    assert value(m, "dvm_sidecar_jobs_total", outcome="cosigned") == 2
    assert value(m, "dvm_sidecar_jobs_in_flight") == 4
    assert value(m, "dvm_sidecar_phase_duration_seconds_count", phase="signing") == 1
    assert value(m, "dvm_sidecar_phase_duration_seconds_bucket", phase="signing", le="0.25") == 0
    assert value(m, "dvm_sidecar_phase_duration_seconds_bucket", phase="signing", le="0.5") == 1
    assert value(m, "dvm_sidecar_signing_sessions_bucket", le="1.0") == 0
    assert value(m, "dvm_sidecar_signing_sessions_bucket", le="2.0") == 1
    assert value(m, "dvm_sidecar_invalid_contributions_total", peer="2") == 1
    assert value(m, "dvm_sidecar_divergent_results_total", peer="3") == 1
    assert value(m, "dvm_sidecar_equivocations_total", peer="3") == 1
    assert value(m, "dvm_sidecar_peer_last_seen_timestamp_seconds", peer="2") == 1_700_000_000.5
    assert value(m, "dvm_sidecar_peer_messages_total", type="share") == 1
    assert value(m, "dvm_sidecar_peer_messages_rejected_total", reason="replay") == 1
    assert value(m, "dvm_sidecar_relay_publish_total", relay=RELAYS[1], result="rejected") == 1
    assert value(m, "dvm_sidecar_relay_connected", relay=RELAYS[0]) == 1
    assert value(m, "dvm_sidecar_outbox_depth") == 7
    assert value(m, "dvm_sidecar_redis_errors_total") == 1
    assert value(m, "dvm_sidecar_canary_total", result="wrong") == 1
    # Only a good canary moves the last-success time.
    assert value(m, "dvm_sidecar_canary_last_success_timestamp_seconds") == 1_700_000_100.0
    m.set_relay_connected(RELAYS[0], False)
    assert value(m, "dvm_sidecar_relay_connected", relay=RELAYS[0]) == 0


def test_phase_buckets_span_loopback_to_public_relay_rounds() -> None:
    assert PHASE_BUCKETS[0] <= 0.05 and PHASE_BUCKETS[-1] >= 300
    m = make()
    m.observe_phase("publishing", 200.0)
    assert value(m, "dvm_sidecar_phase_duration_seconds_bucket", phase="publishing", le="120.0") == 0
    assert value(m, "dvm_sidecar_phase_duration_seconds_bucket", phase="publishing", le="300.0") == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.request_seen(6050),
        lambda m: m.request_rejected("rude"),
        lambda m: m.job_finished("done"),
        lambda m: m.observe_phase("waiting", 1.0),
        lambda m: m.invalid_contribution(4),
        lambda m: m.peer_seen(0),
        lambda m: m.peer_message("hello"),
        lambda m: m.peer_message_rejected("unknown"),
        lambda m: m.relay_published("wss://unconfigured.example", "accepted"),
        lambda m: m.relay_published(RELAYS[0], "maybe"),
        lambda m: m.set_relay_connected("wss://unconfigured.example", True),
        lambda m: m.canary_finished("late"),
    ],
)
def test_label_values_outside_their_set_are_refused(call) -> None:  # type: ignore[no-untyped-def]
    m = make()
    before = generate_latest(m.registry)
    with pytest.raises(ValueError, match="not a known"):
        call(m)
    assert generate_latest(m.registry) == before  # no new series appeared


def test_duplicate_label_sets_are_refused() -> None:
    with pytest.raises(ValueError, match="members has duplicates"):
        Metrics(members=[1, 1], relays=[], kinds=[5050], version="x")
    with pytest.raises(ValueError, match="relays has duplicates"):
        Metrics(members=[1], relays=["wss://a", "wss://a"], kinds=[5050], version="x")


def test_instances_are_independent() -> None:
    a, b = make("a"), make("b")
    a.job_finished("timeout")
    assert value(a, "dvm_sidecar_jobs_total", outcome="timeout") == 1
    assert value(b, "dvm_sidecar_jobs_total", outcome="timeout") == 0
    assert value(b, "dvm_sidecar_build_info", version="a") is None
