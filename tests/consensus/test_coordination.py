"""The coordinator that also signs makes its session's FROST context once, for its own share and the aggregate:
the share, the signature and every state are the same as without it, and a restarted coordinator (its state
from JSON, no context) still aggregates."""

from __future__ import annotations

import random
from typing import Any

import pytest

from consensus import frost
from consensus.effects import Effect, Publish
from consensus.jobstate import JobState, Session
from consensus.messages import Done
from consensus.quorum import Member, resume
from tests.consensus.test_quorum import (
    FED,
    GOOD,
    JOB,
    KEY_PACKAGES,
    Node,
    coordinator_with_session,
    federation_agreeing,
    only,
    sent,
    shares_for,
)


def signed_session(*, withhold_last: bool = False) -> tuple[Node, list[Effect], Any]:
    """A 3-of-5 federation agrees; the coordinator (a signer too) starts a session and hears the other shares,
    all of them or all but the last. Returns the coordinator, its effects, and the share it did not hear."""
    nodes, announces = federation_agreeing(dict.fromkeys(FED.members, GOOD))
    coordinator, request = coordinator_with_session(nodes, announces)
    assert coordinator.me in {c.identifier for c in request.commitments}
    shares = [share for _, share in sorted(shares_for(nodes, coordinator, request).items())]
    last = shares.pop() if withhold_last else None
    effects: list[Effect] = []
    for share in shares:
        effects += coordinator.hear(share.share.identifier, share)
    return coordinator, effects, last


def own_share(coordinator: Node) -> frost.SignatureShare:
    session = only(list(coordinator.s.sessions))
    return only([s for s in session.shares if s.identifier == coordinator.me])


def test_the_coordinator_signs_and_aggregates_with_one_context(monkeypatch: pytest.MonkeyPatch) -> None:
    contexts: list[tuple[str, object]] = []
    sign, aggregate = frost.sign, frost.aggregate

    def spy(name: str, function: Any) -> Any:
        def call(*args: Any, context: frost.SigningContext | None = None) -> Any:
            contexts.append((name, context))
            return function(*args, context=context)
        return call

    monkeypatch.setattr(frost, "sign", spy("sign", sign))
    monkeypatch.setattr(frost, "aggregate", spy("aggregate", aggregate))
    coordinator, effects, _ = signed_session()
    session: Session = only(list(coordinator.s.sessions))
    context = session.context
    assert context is not None and context.message == session.event_id
    assert set(context.identifiers) == session.signers
    # the signers' own sign calls (other nodes) have no context; the coordinator's sign and aggregate share one
    assert [name for name, c in contexts if c is context] == ["sign", "aggregate"]
    assert [name for name, c in contexts if c is None] == ["sign"] * (FED.threshold - 1)
    assert only([e for e in effects if isinstance(e, Publish)])


def test_the_share_the_signature_and_the_state_are_the_same_without_the_context(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with_context, effects, _ = signed_session()
    with monkeypatch.context() as patch:
        patch.setattr(frost, "signing_context", lambda *args: None)
        without, effects_without, _ = signed_session()
    assert only(list(without.s.sessions)).context is None
    assert own_share(with_context) == own_share(without)
    assert only(sent(effects, Done)) == only(sent(effects_without, Done))
    assert [e for e in effects if isinstance(e, Publish)] == [e for e in effects_without if isinstance(e, Publish)]
    assert with_context.s == without.s and with_context.s.to_json() == without.s.to_json()


def test_a_restarted_coordinator_aggregates_without_the_context() -> None:
    _, effects, _ = signed_session()
    signature = only(sent(effects, Done)).signature
    coordinator, _, last = signed_session(withhold_last=True)
    assert last is not None and only(list(coordinator.s.sessions)).context is not None
    stored = JobState.from_json(coordinator.s.to_json())
    assert only(list(stored.sessions)).context is None and stored == coordinator.s  # the context is no state
    # a new process: no nonces, no context; the session it started before is still under way
    coordinator.member = Member(FED, KEY_PACKAGES[coordinator.me], random.Random("restarted").randbytes)
    coordinator.state, _ = resume(coordinator.member, stored, coordinator.now)
    effects = coordinator.hear(last.share.identifier, last)
    done = only(sent(effects, Done))
    assert done.signature == signature and done.job_id == JOB
    event = only([e.event for e in effects if isinstance(e, Publish)])
    assert frost.verify(FED.suite, bytes.fromhex(event.id), bytes.fromhex(event.sig), FED.keys.group_public_key)
