"""A shared event (the NIP-89 announcement) is co-signed once t members' own copies match."""

from __future__ import annotations

from collections.abc import Callable

import nostr_sdk
import pytest

from consensus import frost
from consensus.effects import (
    CosignEvent,
    Effect,
    Evidence,
    Input,
    PeerMessage,
    Publish,
    Send,
    SetTimer,
    TimerFired,
)
from consensus.federation import Federation
from consensus.jobstate import JobState
from consensus.nip90 import UnsignedEvent, build_handler_info
from consensus.quorum import Member, step

Copies = Callable[[str], dict[int, UnsignedEvent]]


def _run(copies: Copies) -> tuple[Federation, list[Publish], list[Evidence], dict[tuple[int, str], JobState]]:
    """Members on an instant network; when nothing is in flight the earliest timer fires (bounded)."""
    shares, package = frost.trusted_dealer_keygen(frost.SECP256K1_TR, 2, 3)
    federation = Federation(package)
    members = {i: Member(federation, frost.vss_verify(frost.SECP256K1_TR, s)) for i, s in shares.items()}
    states: dict[tuple[int, str], JobState] = {}
    queue: list[tuple[int, Effect]] = []
    timers: list[tuple[float, int, SetTimer]] = []
    published: list[Publish] = []
    evidence: list[Evidence] = []
    now = 0.0

    def feed(member: int, event: Input) -> None:
        key = (member, event.job_id)
        states[key], effects = step(members[member], states.get(key), event, now)
        queue.extend((member, e) for e in effects)

    for i, event in copies(federation.pubkey).items():
        feed(i, CosignEvent(event))
    for _ in range(2000):  # bounded: a few dozen steps finish it
        if not queue:
            if published or not timers:
                break
            timers.sort(key=lambda x: x[0])
            now, member, timer = timers.pop(0)
            feed(member, TimerFired(timer.job_id, timer.name))
            continue
        member, effect = queue.pop(0)
        if isinstance(effect, Send):
            for r in effect.recipients:
                feed(r, PeerMessage(member, effect.message))
        elif isinstance(effect, SetTimer):
            timers.append((effect.at, member, effect))
        elif isinstance(effect, Publish):
            published.append(effect)
        elif isinstance(effect, Evidence):
            evidence.append(effect)
    return federation, published, evidence, states


def _announcement(group: str, name: str = "fed") -> UnsignedEvent:
    return build_handler_info(group, [5050], {"name": name}, "d", created_at=1_700_000_000)


def test_matching_copies_are_cosigned_by_the_group_key() -> None:
    federation, published, evidence, states = _run(lambda group: dict.fromkeys((1, 2, 3), _announcement(group)))
    assert published and len({p.event.id for p in published}) == 1
    event = published[0].event
    assert event.kind == 31990 and event.pubkey == federation.pubkey
    assert nostr_sdk.Event.from_json(event.to_json()).verify()
    assert not evidence
    assert [s.outcome for s in states.values()] == ["cosigned"] * 3


def test_a_member_with_another_copy_is_not_needed_and_signs_nothing() -> None:
    # member 3's federation file differs; its copy is another job, which never reaches t on its own
    copies: dict[int, UnsignedEvent] = {}

    def make(group: str) -> dict[int, UnsignedEvent]:
        copies.update({1: _announcement(group), 2: _announcement(group), 3: _announcement(group, "other")})
        return copies

    _, published, _, states = _run(make)
    assert {p.event.id for p in published} == {copies[1].event_id().hex()}
    # member 3 signed nothing for the others' copy, and its own copy never reached t
    assert states[(3, copies[1].event_id().hex())].signed == frozenset()
    assert states[(3, copies[3].event_id().hex())].outcome == ""


def test_an_event_by_another_author_is_refused() -> None:
    with pytest.raises(ValueError, match="federation's key"):
        _run(lambda group: {1: _announcement("ab" * 32)})
