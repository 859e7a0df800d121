"""The job state machine driven by hand, one input at a time: the safety rules of a signer, evidence and blame,
and bounded memory when a peer floods a job."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest

from consensus import frost
from consensus.effects import (
    Effect,
    Evidence,
    Finished,
    Input,
    LocalResult,
    PeerMessage,
    Publish,
    RequestSeen,
    Send,
    TimerFired,
)
from consensus.federation import Federation, Timeouts
from consensus.jobstate import NO_QUORUM_DIGEST, JobState
from consensus.messages import Announce, Done, GiveUp, Message, Share, SignRequest, Target
from consensus.nip90 import DvmResult, build_feedback_event, build_result_event, parse_job_request
from consensus.policies import ResultPayload
from consensus.quorum import NO_QUORUM_INFO, Member, step
from consensus.simulator import make_request

SUITE = frost.SECP256K1_TR
N, T = 5, 3


def _keys() -> tuple[frost.PublicKeyPackage, dict[int, frost.KeyPackage]]:
    rng = random.Random("test_quorum keys")
    shares, public = frost.trusted_dealer_keygen(SUITE, T, N, rng=rng.randbytes)
    return public, {i: frost.vss_verify(SUITE, s) for i, s in shares.items()}


PUBLIC, KEY_PACKAGES = _keys()
FED = Federation(PUBLIC, timeouts=Timeouts(dvm=10, deadline=20, coordinator=8, session=1))
REQUEST = parse_job_request(make_request(4242))
JOB = REQUEST.id
ROTATION = FED.rotation(JOB)
GOOD = ResultPayload("the answer", ())
OTHER = ResultPayload("another answer", ())


def result_event_id(payload: ResultPayload) -> bytes:
    return build_result_event(REQUEST, payload, FED.pubkey, created_at=REQUEST.event.created_at).event_id()


def no_quorum_event_id() -> bytes:
    return build_feedback_event(
        REQUEST, "error", NO_QUORUM_INFO, FED.pubkey, created_at=REQUEST.event.created_at
    ).event_id()


class Node:
    """One member and its job state, fed inputs by the test."""

    def __init__(self, me: int) -> None:
        self.member = Member(FED, KEY_PACKAGES[me], random.Random(f"node {me}").randbytes)
        self.me = me
        self.state: JobState | None = None
        self.now = 0.0

    def feed(self, event: Input, at: float | None = None) -> list[Effect]:
        if at is not None:
            self.now = at
        self.state, effects = step(self.member, self.state, event, self.now)
        return effects

    def hear(self, sender: int, message: Message) -> list[Effect]:
        return self.feed(PeerMessage(sender, message))

    def answer(self, payload: ResultPayload) -> Announce:
        """See the request, get the DVM's result; returns the announcement it sent."""
        self.feed(RequestSeen(REQUEST))
        effects = self.feed(LocalResult(JOB, DvmResult(payload.content, payload.tags)))
        return only(sent(effects, Announce))

    @property
    def s(self) -> JobState:
        assert self.state is not None
        return self.state


def sent(effects: Sequence[Effect], kind: type) -> list:  # type: ignore[type-arg]
    return [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, kind)]


def only(items: list):  # type: ignore[no-untyped-def,type-arg]
    assert len(items) == 1, items
    return items[0]


def evidence(effects: Sequence[Effect]) -> set[tuple[int, str]]:
    return {(e.member, e.kind) for e in effects if isinstance(e, Evidence)}


def foreign_commitment(me: int) -> frost.SigningCommitments:
    """A valid commitment under ``me``'s identifier that this member never issued (another process's)."""
    return frost.commit(SUITE, KEY_PACKAGES[me], random.Random(f"elsewhere {me}").randbytes)[1]


def request_for(signer: Node, payload: ResultPayload, *, session: int = 0,
                commitment: frost.SigningCommitments | None = None) -> SignRequest:
    """A SIGN-REQUEST from a hand-made coordinator including ``signer`` with its current commitment."""
    others = [m for m in FED.members if m != signer.me][: T - 1]
    commitments = {m: foreign_commitment(m) for m in others}
    commitments[signer.me] = commitment or signer.s.fresh[signer.me]
    ordered = tuple(commitments[m] for m in sorted(commitments))
    return SignRequest(JOB, session, Target.RESULT, payload.digest(), result_event_id(payload), ordered)


# --- a signer's safety rules ----------------------------------------------------------------------------


def test_signs_the_event_its_result_supports_once() -> None:
    signer = Node(2)
    signer.answer(GOOD)
    request = request_for(signer, GOOD)
    share = only(sent(signer.hear(1, request), Share))
    assert share.share.identifier == 2 and share.session == 0
    frost.verify_signature_share(SUITE, share.share, request.event_id, request.commitments, PUBLIC)
    assert share.next_commitment == signer.s.fresh[2]
    assert signer.hear(1, request) == []  # the same session again: nothing, not a second share


def test_refuses_an_event_its_result_does_not_support() -> None:
    signer = Node(2)
    signer.answer(GOOD)
    held = signer.member.nonces_held(JOB)
    effects = signer.hear(1, request_for(signer, OTHER))
    assert sent(effects, Share) == []
    assert signer.member.nonces_held(JOB) == held  # the nonce was not touched


def test_refuses_an_event_id_that_is_not_the_agreed_event_and_blames_the_coordinator() -> None:
    signer = Node(2)
    signer.answer(GOOD)
    request = replace(request_for(signer, GOOD), event_id=result_event_id(OTHER))
    effects = signer.hear(1, request)
    assert sent(effects, Share) == []
    assert evidence(effects) == {(1, "invalid_message")}


def test_refuses_an_error_target_for_a_result() -> None:
    signer = Node(2)
    signer.answer(GOOD)
    request = replace(request_for(signer, GOOD), target=Target.ERROR)
    assert sent(signer.hear(1, request), Share) == []


def test_a_commitment_it_does_not_hold_gets_a_refresh_not_a_share() -> None:
    signer = Node(2)
    signer.answer(GOOD)
    effects = signer.hear(1, request_for(signer, GOOD, commitment=foreign_commitment(2)))
    assert sent(effects, Share) == []
    refresh = only([e for e in effects if isinstance(e, Send)])
    assert refresh.recipients == (1,)
    assert isinstance(refresh.message, Announce) and refresh.message.digest == GOOD.digest()
    assert refresh.message.commitment == signer.s.fresh[2]


def test_a_used_commitment_in_a_new_session_gets_a_refresh_not_a_second_share() -> None:
    signer = Node(2)
    signer.answer(GOOD)
    first = request_for(signer, GOOD, session=0)
    assert len(sent(signer.hear(1, first), Share)) == 1
    again = replace(first, session=1)  # another session with the commitment already used
    effects = signer.hear(1, again)
    assert sent(effects, Share) == []
    assert len(sent(effects, Announce)) == 1


def test_a_commitment_from_before_a_restart_is_dead() -> None:
    signer = Node(2)
    old = signer.answer(GOOD).commitment
    signer.member = Member(FED, KEY_PACKAGES[2], random.Random("restarted").randbytes)  # same state, new process
    effects = signer.hear(1, request_for(signer, GOOD, commitment=old))
    assert sent(effects, Share) == [] and len(sent(effects, Announce)) == 1


def gave_up_signer() -> Node:
    signer = Node(2)
    signer.answer(GOOD)
    effects = signer.feed(TimerFired(JOB, "deadline"), at=FED.timeouts.deadline)
    only(sent(effects, GiveUp))
    return signer


def no_quorum_request(signer: Node) -> SignRequest:
    commitments = {m: foreign_commitment(m) for m in (1, 3)}
    commitments[2] = signer.s.fresh[2]
    return SignRequest(JOB, 0, Target.NO_QUORUM, NO_QUORUM_DIGEST, no_quorum_event_id(),
                       tuple(commitments[m] for m in sorted(commitments)))


def test_never_signs_a_result_after_signing_the_give_up() -> None:
    signer = gave_up_signer()
    assert len(sent(signer.hear(1, no_quorum_request(signer)), Share)) == 1
    effects = signer.hear(3, request_for(signer, GOOD))  # its own result, but it co-signed the error already
    assert sent(effects, Share) == []


def test_never_signs_the_give_up_after_signing_a_result() -> None:
    signer = gave_up_signer()
    assert len(sent(signer.hear(3, request_for(signer, GOOD)), Share)) == 1
    assert sent(signer.hear(1, no_quorum_request(signer)), Share) == []


def test_signs_no_give_up_it_did_not_vote_for() -> None:
    signer = Node(2)
    signer.answer(GOOD)
    assert sent(signer.hear(1, no_quorum_request(signer)), Share) == []


def test_a_result_after_the_deadline_is_not_announced() -> None:
    signer = Node(2)
    signer.feed(RequestSeen(REQUEST))
    effects = signer.feed(TimerFired(JOB, "deadline"), at=FED.timeouts.deadline)
    assert only(sent(effects, Announce)).payload is None  # a timeout is announced, then the vote to give up
    only(sent(effects, GiveUp))
    late = signer.feed(LocalResult(JOB, DvmResult(GOOD.content, ())))
    assert sent(late, Announce) == [] and signer.s.own is not None and signer.s.own.payload is None


# --- evidence and blame ---------------------------------------------------------------------------------


def test_two_different_announcements_are_equivocation() -> None:
    node = Node(1)
    node.answer(GOOD)
    node.hear(3, Announce(JOB, GOOD.digest(), GOOD, foreign_commitment(3)))
    effects = node.hear(3, Announce(JOB, OTHER.digest(), OTHER, foreign_commitment(3)))
    assert evidence(effects) == {(3, "equivocation")}
    assert node.s.announcements[3].digest == GOOD.digest()  # the first word stands


def test_announcement_that_lies_about_its_digest_or_identifier_is_an_invalid_message() -> None:
    node = Node(1)
    node.answer(GOOD)
    assert evidence(node.hear(3, Announce(JOB, OTHER.digest(), GOOD, foreign_commitment(3)))) == {
        (3, "invalid_message")}
    assert evidence(node.hear(4, Announce(JOB, GOOD.digest(), GOOD, foreign_commitment(5)))) == {
        (4, "invalid_message")}
    assert 3 not in node.s.announcements and 4 not in node.s.announcements


def federation_agreeing(payloads: dict[int, ResultPayload]) -> tuple[dict[int, Node], dict[int, Announce]]:
    """Every member answers and hears every announcement (in member order)."""
    nodes = {m: Node(m) for m in FED.members}
    announces = {m: nodes[m].answer(payloads[m]) for m in FED.members}
    return nodes, announces


def coordinator_with_session(nodes: dict[int, Node], announces: dict[int, Announce]) -> tuple[Node, SignRequest]:
    coordinator = nodes[ROTATION[0]]
    for m in FED.members:
        if m != coordinator.me:
            effects = coordinator.hear(m, announces[m])
            requests = sent(effects, SignRequest)
            if requests:
                return coordinator, only(requests)
    raise AssertionError("no session started")


def shares_for(nodes: dict[int, Node], coordinator: Node, request: SignRequest) -> dict[int, Share]:
    shares = {}
    for c in request.commitments:
        if c.identifier != coordinator.me:
            shares[c.identifier] = only(sent(nodes[c.identifier].hear(coordinator.me, request), Share))
    return shares


@pytest.mark.parametrize("cheaters", [1, 2], ids=["one invalid share", "two invalid shares"])
def test_invalid_shares_are_blamed_on_their_senders_and_left_out(cheaters: int) -> None:
    nodes, announces = federation_agreeing(dict.fromkeys(FED.members, GOOD))
    # a 3-of-5 session has the coordinator and two others: with two cheaters every other share is bad
    coordinator, request = coordinator_with_session(nodes, announces)
    shares = shares_for(nodes, coordinator, request)
    bad = sorted(shares)[:cheaters]
    effects: list[Effect] = []
    for member, share in sorted(shares.items()):
        if member in bad:
            share = replace(share, share=frost.SignatureShare(member, (share.share.z + 1) % frost.N))
        effects += coordinator.hear(member, share)
    assert {(m, "invalid_share") for m in bad} == evidence(effects)
    assert coordinator.s.bad == frozenset(bad)
    assert not [e for e in effects if isinstance(e, Publish)]
    following = [r for r in sent(effects, SignRequest) if r.session == 1]
    if following:  # the next session, started at once, leaves the culprits out
        assert not {c.identifier for c in only(following).commitments} & set(bad)


def test_a_complete_session_publishes_and_done_finishes_everyone() -> None:
    nodes, announces = federation_agreeing(dict.fromkeys(FED.members, GOOD))
    coordinator, request = coordinator_with_session(nodes, announces)
    effects: list[Effect] = []
    for member, share in sorted(shares_for(nodes, coordinator, request).items()):
        effects += coordinator.hear(member, share)
    event = only([e.event for e in effects if isinstance(e, Publish)])
    assert event.id == result_event_id(GOOD).hex()
    assert frost.verify(SUITE, bytes.fromhex(event.id), bytes.fromhex(event.sig), PUBLIC.group_public_key)
    done = only(sent(effects, Done))
    follower = nodes[next(m for m in FED.members if m != coordinator.me)]
    finished = [e for e in follower.hear(coordinator.me, done) if isinstance(e, Finished)]
    assert only(finished).outcome == "cosigned" and follower.member.nonces_held(JOB) == 0


def test_divergent_answers_are_recorded_before_and_after_agreement() -> None:
    payloads = dict.fromkeys(FED.members, GOOD)
    early, late = ROTATION[-1], ROTATION[-2]
    payloads[early] = payloads[late] = OTHER
    node = Node(ROTATION[0])
    node.answer(GOOD)
    node.feed(RequestSeen(REQUEST))
    effects = node.hear(early, Announce(JOB, OTHER.digest(), OTHER, foreign_commitment(early)))
    for m in FED.members:
        if payloads[m] is GOOD and m != node.me:
            effects += node.hear(m, Announce(JOB, GOOD.digest(), GOOD, foreign_commitment(m)))
    assert (early, "divergent") in evidence(effects)  # seen before agreement, recorded when it came
    effects = node.hear(late, Announce(JOB, OTHER.digest(), OTHER, foreign_commitment(late)))
    assert evidence(effects) == {(late, "divergent")}


def test_a_late_announcement_after_done_does_not_reopen_the_job() -> None:
    """Regression: a member that finished through DONE and then heard t matching announcements signed on."""
    nodes, announces = federation_agreeing(dict.fromkeys(FED.members, GOOD))
    coordinator, request = coordinator_with_session(nodes, announces)
    effects: list[Effect] = []
    for member, share in sorted(shares_for(nodes, coordinator, request).items()):
        effects += coordinator.hear(member, share)
    done = only(sent(effects, Done))
    outsider = Node(next(m for m in FED.members if m not in {c.identifier for c in request.commitments}))
    outsider.answer(GOOD)
    outsider.hear(coordinator.me, done)
    for m in FED.members:
        if m != outsider.me:
            # nothing but telling the late announcer that the job is done (once)
            effects = outsider.hear(m, announces[m])
            assert all(isinstance(e, Send) and isinstance(e.message, Done) and e.recipients == (m,) for e in effects)
            assert outsider.hear(m, announces[m]) == []
    assert outsider.s.outcome == "cosigned" and outsider.s.sessions == ()


# --- bounded memory -------------------------------------------------------------------------------------


def test_memory_stays_bounded_when_a_peer_floods_the_job() -> None:
    victim = Node(2)
    victim.answer(GOOD)
    flooder = 1
    rng = random.Random("flood")

    def flood(rounds: int) -> int:
        sends = 0
        for i in range(rounds):
            messages: list[Message] = [
                Announce(JOB, GOOD.digest(), GOOD, foreign_commitment(flooder)),
                GiveUp(JOB, foreign_commitment(flooder)),
                Share(JOB, rng.randrange(2**31), frost.SignatureShare(flooder, rng.randrange(frost.N)),
                      foreign_commitment(flooder)),
                # asks to sign with its real latest commitment, in ever new sessions
                request_for(victim, GOOD, session=i),
                request_for(victim, GOOD, session=i, commitment=foreign_commitment(2)),
            ]
            for message in messages:
                sends += sum(1 for e in victim.hear(flooder, message) if isinstance(e, Send))
        return sends

    flood(20)
    size, held = len(victim.s.to_json()), victim.member.nonces_held(JOB)
    sends = flood(300)
    assert len(victim.s.to_json()) <= size
    assert victim.member.nonces_held(JOB) <= held + 1
    assert sends == 0  # past the bounds it answers nothing more
