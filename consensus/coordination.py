"""Coordination of one job's signing, ROAST-style: sessions, aggregation, blame, and the end of the job.

The coordinator is the first member of the job's rotation among those that support the agreed target (for a
short while after agreement also those not heard from yet); the takeover timer moves the role on. It puts t
supporting members with unused commitments into a signing session and asks them to sign; when every share is
in, it aggregates. Invalid shares name their senders, who are left out for good; a session that does not
finish in time is left behind, and the next one starts without the members that did not answer. ``_finish``
ends the job on every path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from consensus import frost
from consensus.effects import Finished, Publish
from consensus.errors import InvalidContribution
from consensus.jobstate import Phase, Session
from consensus.messages import Done, Share, SignRequest, Target
from consensus.nip90 import NostrEvent
from consensus.signer import _build_event, _on_sign_request

if TYPE_CHECKING:
    from consensus.quorum import _Step


def _own_commitment(sender: int, commitment: frost.SigningCommitments) -> None:
    if commitment.identifier != sender:
        raise InvalidContribution(sender, "a commitment under another member's identifier")


def _offer(st: _Step, member: int, commitment: frost.SigningCommitments) -> None:
    """A member's new usable commitment, unless it was used already or the member is left out."""
    if member in st.s.bad or commitment.to_bytes() in st.s.used:
        return
    st.update(fresh={**st.s.fresh, member: commitment})


def _on_share(st: _Step, sender: int, msg: Share) -> None:
    if msg.share.identifier != sender:
        raise InvalidContribution(sender, "a share under another member's identifier")
    _own_commitment(sender, msg.next_commitment)
    sessions = list(st.s.sessions)
    index = next((i for i, x in enumerate(sessions) if x.number == msg.session), None)
    if index is None:
        return
    session = sessions[index]
    if sender not in session.signers or session.has_share(sender):
        return
    session = replace(session, shares=session.shares + (msg.share,))
    sessions[index] = session
    st.update(sessions=tuple(sessions))
    _offer(st, sender, msg.next_commitment)
    if len(session.shares) == len(session.commitments):
        _complete(st, session)
    else:
        _coordinate(st)


def _eligible(st: _Step) -> list[int]:
    """Members that support the agreed target, in the job's rotation order."""
    s = st.s
    if s.target is Target.NO_QUORUM:
        support = set(s.gave_up)
    else:
        support = {m for m, a in s.announcements.items() if a.digest == s.digest}
    return [m for m in st.m.rotation(s.job_id) if m in support]


def _coordinators(st: _Step, eligible: list[int]) -> list[int]:
    """Who may coordinate, in rotation order: the supporting members, and for a short while after agreement
    also the members not heard from yet. Waiting that long for the earlier members of the rotation makes all
    members settle on the same coordinator (two coordinators would each spend a signing session), while a
    member that is down is passed over after one session timeout instead of a coordinator timeout."""
    s = st.s
    assert s.agreed_at is not None
    if st.now >= s.agreed_at + st.fed.timeouts.session:
        return eligible
    heard = s.gave_up if s.target is Target.NO_QUORUM else frozenset(s.announcements)
    support = set(eligible)
    return [m for m in st.m.rotation(s.job_id) if m in support or m not in heard]


def _coordinate(st: _Step) -> None:
    """If this member coordinates the job now, start a signing session when none is under way and t
    supporting members have unused commitments."""
    s = st.s
    if s.target is None or s.digest is None or s.phase is Phase.DONE:
        return
    eligible = _eligible(st)
    coordinators = _coordinators(st, eligible)
    if len(eligible) < st.fed.threshold or coordinators[s.attempt % len(coordinators)] != st.m.me:
        return
    if len(s.sessions) >= st.fed.max_sessions:
        return
    patience = st.fed.timeouts.session
    if any(st.now < x.started_at + patience and not (x.signers & s.bad) for x in s.sessions):
        return  # a session is still under way
    available = [m for m in eligible if m in s.fresh and m not in s.bad]
    if len(available) < st.fed.threshold:
        return
    if st.m.me in available:  # the coordinator answers at once, so it goes first
        available.remove(st.m.me)
        available.insert(0, st.m.me)
    chosen = sorted(available[: st.fed.threshold])
    event = _build_event(st, s.target, s.digest)
    if event is None:
        return
    commitments = tuple(s.fresh[m] for m in chosen)
    event_id = event.event_id()
    # A coordinator that signs too makes the session's binding factors and R once, for its share and the aggregate
    context = frost.signing_context(st.fed.suite, event_id, commitments, st.fed.keys) if st.m.me in chosen else None
    session = Session(len(s.sessions), s.target, s.digest, event_id, commitments, st.now, context=context)
    st.update(
        sessions=s.sessions + (session,),
        fresh={m: c for m, c in s.fresh.items() if m not in chosen},
        used=s.used | {c.to_bytes() for c in commitments},
    )
    st.timer("session", st.now + patience)
    request = SignRequest(s.job_id, session.number, s.target, s.digest, session.event_id, commitments)
    st.send(tuple(m for m in chosen if m != st.m.me), request)
    if st.m.me in chosen:
        share = _on_sign_request(st, st.m.me, request, context)
        if share is not None:
            _on_share(st, st.m.me, share)


def _complete(st: _Step, session: Session) -> None:
    fed = st.fed
    try:
        signature = frost.aggregate(fed.suite, session.event_id, session.commitments, session.shares, fed.keys,
                                    context=session.context)
    except InvalidContribution as exc:
        # aggregate checks every share with the R it computed and names all the bad ones; any other failure
        # (R the identity, an inconsistent key package) is no single member's fault
        culprits = set(exc.signers) if isinstance(exc, frost.InvalidShares) else set()
        for member in sorted(culprits):
            st.evidence(member, "invalid_share", f"an invalid signature share in session {session.number}")
        st.update(bad=st.s.bad | culprits, fresh={m: c for m, c in st.s.fresh.items() if m not in culprits})
        _coordinate(st)
        return
    event = _build_event(st, session.target, session.digest)
    assert event is not None  # the session was started with this event
    signers = tuple(sorted(session.signers))
    done = Done(st.s.job_id, session.target, session.digest, session.event_id, signature, signers)
    st.send(st.others(), done)
    _finish(st, outcome=_outcome(st, session.target), event=event.with_signature(signature), signers=signers)


def _outcome(st: _Step, target: Target) -> str:
    if target is Target.RESULT:
        return "cosigned"
    if target is Target.NO_QUORUM:
        return "no_quorum"
    return "timeout" if st.s.own_reason == "timeout" else "dvm_error"


def _finish(
    st: _Step, *, outcome: str, event: NostrEvent | None, signers: tuple[int, ...], publish: bool = True
) -> None:
    done_event = event
    st.update(phase=Phase.DONE, outcome=outcome, done_event=done_event, done_signers=signers, finished_at=st.now)
    st.m.forget(st.s.job_id)
    if done_event is not None and publish:
        st.fx.append(Publish(st.s.job_id, done_event))
    st.fx.append(Finished(st.s.job_id, outcome, done_event, len(st.s.sessions)))
