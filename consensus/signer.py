"""The signer's side of the quorum protocol: when this member signs, and what.

A member signs only the event its own DVM's answer supports (for the no-quorum error, only after its own
give-up vote), never two different targets for one job, and with each nonce once: the nonce is taken out of
``Member`` before the share computed with it leaves. ``_build_event`` builds the event a target stands for,
byte-identical on every member, so a signer checks the coordinator's event id against its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consensus import frost
from consensus.errors import InvalidContribution
from consensus.jobstate import ERROR_DIGEST, NO_QUORUM_DIGEST
from consensus.messages import Announce, GiveUp, Message, Share, SignRequest, Target
from consensus.nip90 import UnsignedEvent, build_feedback_event, build_result_event
from consensus.policies import ResultPayload

if TYPE_CHECKING:
    from consensus.quorum import _Step

ERROR_INFO = "the federation's DVMs reported an error or did not answer in time"
NO_QUORUM_INFO = "no quorum: the federation's DVMs did not agree on a result"


def _on_sign_request(
    st: _Step, coordinator: int, req: SignRequest, context: frost.SigningContext | None = None
) -> Share | None:
    """This member's share for a signing session, if the rules allow it; the caller hands it to the
    coordinator (itself, or the peer that asked). ``context``: the session's values, when this member is the
    coordinator and made them already."""
    s = st.s
    ids = [c.identifier for c in req.commitments]
    if ids != sorted(set(ids)) or not set(ids) <= set(st.fed.members) or len(ids) < st.fed.threshold:
        raise InvalidContribution(coordinator, "a signer list that is unsorted, repeats or names non-members")
    mine = [c for c in req.commitments if c.identifier == st.m.me]
    if not mine or (coordinator, req.session) in s.signed:
        return None  # not for this member, or a duplicate of a request already answered
    if sum(1 for c, _ in s.signed if c == coordinator) >= st.fed.max_sessions:
        return None  # an honest coordinator runs no more sessions: more would only grow this state, unbounded
    event = _may_sign(st, coordinator, req)
    if event is None:
        return None
    nonces = st.m.take_nonces(s.job_id, mine[0])
    if nonces is None:
        _refresh(st, coordinator, req.target)
        return None
    share = frost.sign(st.fed.suite, req.event_id, req.commitments, nonces, st.m.key_package,
                       context=context)
    nxt = st.m.new_commitment(s.job_id)
    st.update(
        signed=s.signed | {(coordinator, req.session)},
        signed_target=req.target,
        fresh={**s.fresh, st.m.me: nxt},
    )
    return Share(s.job_id, req.session, share, nxt)


def _may_sign(st: _Step, coordinator: int, req: SignRequest) -> UnsignedEvent | None:
    """The safety rules: the event must be exactly what this member's own DVM answer supports (or its own
    give-up vote), and a member never signs two different targets for one job."""
    s = st.s
    if s.signed_target is not None and s.signed_target is not req.target:
        return None
    if req.target is Target.NO_QUORUM:
        supported = st.m.me in s.gave_up and req.digest == NO_QUORUM_DIGEST
    else:
        supported = s.own is not None and s.own.digest == req.digest
        supported = supported and (req.target is Target.ERROR) == (req.digest == ERROR_DIGEST)
    if not supported:
        return None
    event = _build_event(st, req.target, req.digest)
    if event is None:
        return None
    if event.event_id() != req.event_id:
        raise InvalidContribution(coordinator, "asked to sign an event that is not the agreed one")
    return event


def _refresh(st: _Step, coordinator: int, target: Target) -> None:
    """Asked to sign with a commitment this member no longer holds (used, or issued before a restart):
    offer a fresh one instead. Bounded, so a hostile coordinator cannot make it mint nonces forever."""
    s = st.s
    if s.refreshes >= st.fed.max_sessions:
        return
    commitment = st.m.new_commitment(s.job_id)
    st.update(refreshes=s.refreshes + 1, fresh={**s.fresh, st.m.me: commitment})
    if target is Target.NO_QUORUM:
        message: Message = GiveUp(s.job_id, commitment)
    else:
        assert s.own is not None
        message = Announce(s.job_id, s.own.digest, s.own.payload, commitment)
    st.send((coordinator,), message)


def _build_event(st: _Step, target: Target, digest: bytes) -> UnsignedEvent | None:
    """The event for a target, byte-identical on every member: authored by the group key, dated with the
    request's created_at (a time every member knows the same)."""
    s = st.s
    if s.fixed_event is not None:
        own = ResultPayload(s.fixed_event.content, s.fixed_event.tags).digest()
        return s.fixed_event if target is Target.RESULT and digest == own else None
    request = s.request
    if request is None:
        return None
    built = st.m.built_event(s.job_id, target, digest)
    if built is not None:
        return built
    author = st.fed.pubkey
    created_at = request.event.created_at
    if target is Target.RESULT:
        payload = next((a.payload for a in s.announcements.values() if a.digest == digest and a.payload), None)
        if payload is None:
            return None
        event = build_result_event(request, payload, author, created_at=created_at)
    else:
        info = NO_QUORUM_INFO if target is Target.NO_QUORUM else ERROR_INFO
        event = build_feedback_event(request, "error", info, author, created_at=created_at)
    st.m.keep_event(s.job_id, target, digest, event)
    return event
