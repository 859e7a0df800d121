"""Announces and agreement: what each member's DVM answered, and when t of them agree.

This member announces its own answer (its DVM's result, error or timeout, or its copy of an event to co-sign)
with a fresh nonce commitment; peers' announcements and give-up votes are checked and recorded, and a member
that announces two digests is flagged. A digest announced by t members is agreed, as is the no-quorum error
once t members (this one among them) gave up; agreement starts coordination. A member whose answer differs
from the agreed one is recorded as divergent, also after the job is done. A verified DONE finishes the job
here, and a member that announces on a finished job is sent the DONE it missed.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from consensus import frost
from consensus.coordination import _coordinate, _finish, _offer, _outcome, _own_commitment
from consensus.effects import LocalResult
from consensus.errors import InvalidContribution
from consensus.jobstate import ERROR_DIGEST, NO_QUORUM_DIGEST, Announcement, Phase
from consensus.messages import Announce, Done, GiveUp, Target
from consensus.signer import _build_event

if TYPE_CHECKING:
    from consensus.quorum import _Step


def _on_local_result(st: _Step, event: LocalResult) -> None:
    if st.s.own is not None or st.s.request is None:
        return
    try:
        payload = st.fed.policy.canonical(event.result)
    except ValueError as exc:
        _on_local_error(st, f"error: the result does not fit the digest policy: {exc}")
        return
    if st.s.phase is Phase.DONE:  # too late to matter, but a different answer is still divergence
        st.update(own=Announcement(payload.digest(), payload))
        _record_divergence(st, st.m.me, st.s.own)
        return
    if len(payload.to_json().encode()) > st.fed.max_payload:
        _on_local_error(st, "error: the result exceeds the payload limit")
        return
    _announce(st, Announcement(payload.digest(), payload), reason="")


def _on_local_error(st: _Step, reason: str) -> None:
    if st.s.own is not None or st.s.request is None:
        return
    _announce(st, Announcement(ERROR_DIGEST, None), reason="timeout" if reason == "timeout" else "error")


def _announce(st: _Step, own: Announcement, *, reason: str) -> None:
    commitment = st.m.new_commitment(st.s.job_id)
    me = st.m.me
    st.update(
        own=own,
        own_reason=reason,
        announced_at=st.now,
        phase=Phase.ANNOUNCED if st.s.target is None else st.s.phase,
        announcements={**st.s.announcements, me: own},
        fresh={**st.s.fresh, me: commitment},
    )
    st.send(st.others(), Announce(st.s.job_id, own.digest, own.payload, commitment))
    _record_divergence(st, me)
    _check_agreement(st)
    _coordinate(st)


def _on_announce(st: _Step, sender: int, msg: Announce) -> None:
    _own_commitment(sender, msg.commitment)
    if (msg.digest == ERROR_DIGEST) != (msg.payload is None):
        raise InvalidContribution(sender, "an error announcement with a payload, or a result without one")
    if msg.payload is not None and msg.payload.digest() != msg.digest:
        raise InvalidContribution(sender, "the announced digest is not the payload's")
    if msg.digest == NO_QUORUM_DIGEST:
        raise InvalidContribution(sender, "announced the no-quorum digest")
    previous = st.s.announcements.get(sender)
    if previous is not None and previous.digest != msg.digest:
        st.evidence(sender, "equivocation", "announced two different digests for one job")
        return
    if previous is None:
        st.update(announcements={**st.s.announcements, sender: Announcement(msg.digest, msg.payload)})
        _record_divergence(st, sender)
    if st.s.phase is Phase.DONE:
        _tell_done(st, sender)
        return  # a late announcement is only evidence: it must not reopen agreement on a finished job
    _offer(st, sender, msg.commitment)
    _check_agreement(st)
    _coordinate(st)


def _tell_done(st: _Step, member: int) -> None:
    """A member announcing on a finished job missed its DONE (it restarted, or the message was lost): tell it,
    once, so it finishes now instead of waiting for the job to expire."""
    s = st.s
    event = s.done_event
    if event is None or s.target is None or s.digest is None or (member, "told_done") in s.flagged:
        return
    st.update(flagged=s.flagged | {(member, "told_done")})
    done = Done(s.job_id, s.target, s.digest, bytes.fromhex(event.id), bytes.fromhex(event.sig), s.done_signers)
    st.send((member,), done)


def _on_give_up(st: _Step, sender: int, msg: GiveUp) -> None:
    _own_commitment(sender, msg.commitment)
    st.update(gave_up=st.s.gave_up | {sender})
    _offer(st, sender, msg.commitment)
    _check_give_up(st)
    _coordinate(st)


def _on_done(st: _Step, sender: int, msg: Done) -> None:
    event = _build_event(st, msg.target, msg.digest)
    if event is None or event.event_id() != msg.event_id:
        return  # cannot check it (request or payload unknown here): the job expires on its own
    if not frost.verify(st.fed.suite, msg.event_id, msg.signature, st.fed.keys.group_public_key):
        raise InvalidContribution(sender, "a done message whose signature does not verify")
    for signer in msg.signers:
        told = st.s.announcements.get(signer)
        if msg.target is not Target.NO_QUORUM and told is not None and told.digest != msg.digest:
            st.evidence(signer, "equivocation", "signed a digest other than the one it announced here")
    if st.s.target is None:  # agreement seen only through DONE: what divergence is measured against
        st.update(target=msg.target, digest=msg.digest)
        for member in sorted(st.s.announcements):
            _record_divergence(st, member)
    # Only the coordinator publishes: its outbox held the event (atomically with its finished state) before
    # this DONE left it, so the event is not lost if it crashes now, and relays see one publisher, not n.
    _finish(st, outcome=_outcome(st, msg.target), event=event.with_signature(msg.signature), signers=msg.signers,
            publish=False)


def _record_divergence(st: _Step, member: int, told: Announcement | None = None) -> None:
    s = st.s
    told = told or s.announcements.get(member)
    if s.target in (Target.RESULT, Target.ERROR) and told is not None and told.digest != s.digest:
        st.evidence(member, "divergent", "its DVM's answer differs from the agreed one")


def _check_agreement(st: _Step) -> None:
    s = st.s
    if s.target is not None or (s.request is None and s.fixed_event is None):
        return
    counts = Counter(a.digest for a in s.announcements.values())
    reached = [d for d, c in counts.items() if c >= st.fed.threshold]
    if not reached:
        return
    digest = min(reached, key=lambda d: (-counts[d], d))  # deterministic if n >= 2t lets two digests reach t
    target = Target.ERROR if digest == ERROR_DIGEST else Target.RESULT
    _agree(st, target, digest)
    for member in sorted(s.announcements):
        _record_divergence(st, member)


def _check_give_up(st: _Step) -> None:
    s = st.s
    if s.target is None and st.m.me in s.gave_up and len(s.gave_up) >= st.fed.threshold:
        _agree(st, Target.NO_QUORUM, NO_QUORUM_DIGEST)


def _agree(st: _Step, target: Target, digest: bytes) -> None:
    st.update(target=target, digest=digest, agreed_at=st.now, phase=Phase.SIGNING)
    st.timer("takeover", st.now + st.fed.takeover_after)
    st.timer("session", st.now + st.fed.timeouts.session)  # stop waiting for members not heard from
    _coordinate(st)
