"""The quorum protocol for one job, as one member runs it: ``step(member, state, input, now)``.

Theory of operation. Every member sees the customer's request and runs it on its own DVM. When the DVM
answers, the member ANNOUNCEs to every peer the digest of the answer under the federation's digest policy, the
canonical payload, and a fresh nonce commitment. A digest announced by t members is AGREED; every member finds
out on its own. The coordinator is the first member of the job's rotation among the agreeing members; a timer
hands the role to the next one if the job is not done in time. The coordinator builds the event (the same bytes
on every member), puts t agreeing members with unused commitments into a signing session and sends them a
SIGN-REQUEST. Each signer signs only if the event is the one its own DVM's answer supports, only with a nonce
it issued for this job and still holds, and only once; it answers with its SHARE and a fresh commitment. When
t shares are in, the coordinator aggregates; if the signature does not verify, every share is checked, the
senders of invalid ones are left out for good, and a new session starts. A session that does not finish in
time is left behind and another starts without the members that did not answer (ROAST), so up to n - t
faulty members cannot stop t honest ones. The finished event is published and DONE tells every member.

If no digest reaches t before the deadline, members vote to GIVE UP (with a fresh commitment), and t such votes
co-sign a kind 7000 error instead. A member never signs both a result and a give-up error for one job.

Safety rules live in ``_may_sign``; what the member does next is in the ``_on_*`` handlers; coordination in
``_coordinate``. Secret nonces are held by ``Member`` (memory only) and dropped when the job ends.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from consensus import frost
from consensus.effects import (
    CosignEvent,
    Effect,
    Evidence,
    Finished,
    Input,
    LocalError,
    LocalResult,
    PeerMessage,
    Publish,
    RequestSeen,
    RunDvm,
    Send,
    SetTimer,
    TimerFired,
)
from consensus.errors import InvalidContribution
from consensus.federation import Federation
from consensus.jobstate import ERROR_DIGEST, NO_QUORUM_DIGEST, Announcement, JobState, Phase, Session
from consensus.messages import Announce, Done, GiveUp, Message, Share, SignRequest, Target
from consensus.nip90 import NostrEvent, UnsignedEvent, build_feedback_event, build_result_event
from consensus.policies import ResultPayload

ERROR_INFO = "the federation's DVMs reported an error or did not answer in time"
NO_QUORUM_INFO = "no quorum: the federation's DVMs did not agree on a result"


class Member:
    """One member's signing context: the federation, its key package, and its secret nonces.

    The nonces live only here, in memory, keyed by job; each is taken out (and so can never be used again)
    before the share computed with it leaves. After a restart this object is new and every commitment issued
    before is simply dead.
    """

    def __init__(
        self, federation: Federation, key_package: frost.KeyPackage, rng: Callable[[int], bytes] = os.urandom
    ) -> None:
        if key_package.identifier not in federation.members:
            raise ValueError(f"member {key_package.identifier} is not in the federation")
        self.federation = federation
        self.key_package = key_package
        self.me = key_package.identifier
        self._rng = rng
        self._nonces: dict[str, dict[bytes, frost.SigningNonces]] = {}
        self._rotations: dict[str, tuple[int, ...]] = {}  # per job, dropped with its nonces

    def __repr__(self) -> str:
        return f"Member({self.me} of {self.federation.n}, t={self.federation.threshold})"

    def new_commitment(self, job_id: str) -> frost.SigningCommitments:
        nonces, commitments = frost.commit(self.federation.suite, self.key_package, self._rng)
        self._nonces.setdefault(job_id, {})[commitments.to_bytes()] = nonces
        return commitments

    def take_nonces(self, job_id: str, commitment: frost.SigningCommitments) -> frost.SigningNonces | None:
        return self._nonces.get(job_id, {}).pop(commitment.to_bytes(), None)

    def forget(self, job_id: str) -> None:
        self._nonces.pop(job_id, None)
        self._rotations.pop(job_id, None)

    def rotation(self, job_id: str) -> tuple[int, ...]:
        """The job's coordinator order, computed once per job (it is asked for on every peer message)."""
        order = self._rotations.get(job_id)
        if order is None:
            order = self._rotations[job_id] = self.federation.rotation(job_id)
        return order

    def nonces_held(self, job_id: str) -> int:
        return len(self._nonces.get(job_id, {}))


def new_job(job_id: str, now: float) -> JobState:
    if len(job_id) != 64 or job_id.lower() != job_id:
        raise ValueError("job_id must be 64 lowercase hex characters")
    bytes.fromhex(job_id)
    return JobState(job_id=job_id, phase=Phase.PENDING, created_at=now)


class _Step:
    """Accumulates the new state and the effects of one input; the public functions return them."""

    def __init__(self, member: Member, state: JobState, now: float) -> None:
        self.m = member
        self.fed = member.federation
        self.s = state
        self.now = now
        self.fx: list[Effect] = []

    def others(self) -> tuple[int, ...]:
        return tuple(x for x in self.fed.members if x != self.m.me)

    def send(self, to: tuple[int, ...], message: Message) -> None:
        if to:
            self.fx.append(Send(to, message))

    def timer(self, name: str, at: float) -> None:
        self.fx.append(SetTimer(self.s.job_id, name, at))

    def evidence(self, member: int, kind: str, detail: str) -> None:
        if (member, kind) in self.s.flagged:
            return
        self.s = replace(self.s, flagged=self.s.flagged | {(member, kind)})
        self.fx.append(Evidence(self.s.job_id, member, kind, detail))

    def update(self, **changes: object) -> None:
        self.s = replace(self.s, **changes)  # type: ignore[arg-type]


def step(member: Member, state: JobState | None, event: Input, now: float) -> tuple[JobState, list[Effect]]:
    """Apply one input to a job's state; returns the new state and the effects to carry out, in order."""
    if state is not None and state.job_id != event.job_id:
        raise ValueError("the input is for another job than the state")
    st = _Step(member, state if state is not None else new_job(event.job_id, now), now)
    if st.s.phase is Phase.DONE and not _late_announce(event):
        return st.s, []
    if state is None and isinstance(event, PeerMessage):
        st.timer("expire", _expiry(st))  # known from a peer only: it ends even if its request never comes here
    if isinstance(event, RequestSeen):
        _on_request(st, event)
    elif isinstance(event, CosignEvent):
        _on_cosign(st, event)
    elif isinstance(event, LocalResult):
        _on_local_result(st, event)
    elif isinstance(event, LocalError):
        _on_local_error(st, event.reason)
    elif isinstance(event, PeerMessage):
        _on_peer(st, event.sender, event.message)
    elif isinstance(event, TimerFired):
        _on_timer(st, event.name)
    else:
        raise ValueError(f"unknown input {event!r}")
    return st.s, st.fx


def _late_announce(event: Input) -> bool:
    """After the job is done, answers still count as evidence (a divergent member's may come last)."""
    return isinstance(event, LocalResult) or (isinstance(event, PeerMessage) and isinstance(event.message, Announce))


def resume(member: Member, state: JobState, now: float) -> tuple[JobState, list[Effect]]:
    """Pick a job up after a restart: every old commitment is dead, so announce again with a fresh one, re-run
    the DVM if it had not answered, and re-arm the timers."""
    st = _Step(member, state, now)
    s = st.s
    if s.phase is Phase.DONE:
        return s, []
    t = st.fed.timeouts
    if s.request is not None and s.seen_at is not None:
        if s.own is None:
            st.fx.append(RunDvm(s.job_id, s.request))
            st.timer("dvm", s.seen_at + t.dvm)
        st.timer("deadline", s.seen_at + t.deadline)
    st.timer("expire", _expiry(st))
    if s.own is not None:
        commitment = member.new_commitment(s.job_id)
        st.update(fresh={**s.fresh, member.me: commitment})
        st.send(st.others(), Announce(s.job_id, s.own.digest, s.own.payload, commitment))
    if member.me in s.gave_up:
        commitment = member.new_commitment(s.job_id)
        st.update(fresh={**st.s.fresh, member.me: commitment})
        st.send(st.others(), GiveUp(s.job_id, commitment))
    if s.target is not None and s.agreed_at is not None:
        st.timer("takeover", now + st.fed.takeover_after)
        _coordinate(st)
    return st.s, st.fx


def _expiry(st: _Step) -> float:
    t = st.fed.timeouts
    start = st.s.seen_at if st.s.seen_at is not None else st.s.created_at
    return start + t.deadline + t.coordinator * (st.fed.n + 1)


# --- inputs ---------------------------------------------------------------------------------------------


def _on_request(st: _Step, event: RequestSeen) -> None:
    if st.s.request is not None:
        return
    if event.request.event.id != st.s.job_id:
        raise ValueError("the request's id is not the job id")
    t = st.fed.timeouts
    st.update(request=event.request, seen_at=st.now, phase=Phase.RUNNING if st.s.own is None else st.s.phase)
    st.fx.append(RunDvm(st.s.job_id, event.request))
    st.timer("dvm", st.now + t.dvm)
    st.timer("deadline", st.now + t.deadline)
    st.timer("expire", _expiry(st))
    _check_agreement(st)


def _on_cosign(st: _Step, event: CosignEvent) -> None:
    """This member's own copy of a shared event: announce it as its answer; t matching copies agree."""
    if st.s.request is not None or st.s.fixed_event is not None:
        return
    if event.event.pubkey != st.fed.pubkey:
        raise ValueError("a co-signed event must be authored by the federation's key")
    t = st.fed.timeouts
    st.update(fixed_event=event.event, seen_at=st.now)
    st.timer("deadline", st.now + t.deadline)
    st.timer("expire", _expiry(st))
    payload = ResultPayload(event.event.content, event.event.tags)
    _announce(st, Announcement(payload.digest(), payload), reason="")


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


def _on_timer(st: _Step, name: str) -> None:
    s = st.s
    if name == "dvm":
        if s.own is None and s.request is not None:
            _on_local_error(st, "timeout")
    elif name == "deadline":
        if s.target is None and s.request is not None and st.m.me not in s.gave_up:
            if s.own is None:
                _on_local_error(st, "timeout")
            commitment = st.m.new_commitment(s.job_id)
            st.update(gave_up=st.s.gave_up | {st.m.me}, fresh={**st.s.fresh, st.m.me: commitment})
            st.send(st.others(), GiveUp(s.job_id, commitment))
            _check_give_up(st)
    elif name == "takeover":
        if s.target is not None and s.attempt < st.fed.n:
            st.update(attempt=s.attempt + 1)
            st.timer("takeover", st.now + st.fed.takeover_after)
            _coordinate(st)
    elif name == "session":
        _coordinate(st)
    elif name == "expire":
        _finish(st, outcome="timeout", event=None, signers=())


# --- peer messages --------------------------------------------------------------------------------------


def _on_peer(st: _Step, sender: int, message: Message) -> None:
    if sender not in st.fed.members or sender == st.m.me:
        raise ValueError(f"sender {sender} is not a peer")
    try:
        if isinstance(message, Announce):
            _on_announce(st, sender, message)
        elif isinstance(message, GiveUp):
            _on_give_up(st, sender, message)
        elif isinstance(message, SignRequest):
            _on_sign_request(st, sender, message)
        elif isinstance(message, Share):
            _on_share(st, sender, message)
        else:
            _on_done(st, sender, message)
    except InvalidContribution as exc:
        st.evidence(sender, "invalid_message", exc.what)


def _own_commitment(sender: int, commitment: frost.SigningCommitments) -> None:
    if commitment.identifier != sender:
        raise InvalidContribution(sender, "a commitment under another member's identifier")


def _offer(st: _Step, member: int, commitment: frost.SigningCommitments) -> None:
    """A member's new usable commitment, unless it was used already or the member is left out."""
    if member in st.s.bad or commitment.to_bytes() in st.s.used:
        return
    st.update(fresh={**st.s.fresh, member: commitment})


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


def _on_sign_request(st: _Step, coordinator: int, req: SignRequest) -> None:
    s = st.s
    ids = [c.identifier for c in req.commitments]
    if ids != sorted(set(ids)) or not set(ids) <= set(st.fed.members) or len(ids) < st.fed.threshold:
        raise InvalidContribution(coordinator, "a signer list that is unsorted, repeats or names non-members")
    mine = [c for c in req.commitments if c.identifier == st.m.me]
    if not mine or (coordinator, req.session) in s.signed:
        return  # not for this member, or a duplicate of a request already answered
    if sum(1 for c, _ in s.signed if c == coordinator) >= st.fed.max_sessions:
        return  # an honest coordinator runs no more sessions: more would only grow this state, unbounded
    event = _may_sign(st, coordinator, req)
    if event is None:
        return
    nonces = st.m.take_nonces(s.job_id, mine[0])
    if nonces is None:
        _refresh(st, coordinator, req.target)
        return
    share = frost.sign(st.fed.suite, req.event_id, req.commitments, nonces, st.m.key_package)
    nxt = st.m.new_commitment(s.job_id)
    st.update(
        signed=s.signed | {(coordinator, req.session)},
        signed_target=req.target,
        fresh={**s.fresh, st.m.me: nxt},
    )
    reply = Share(s.job_id, req.session, share, nxt)
    if coordinator == st.m.me:
        _on_share(st, st.m.me, reply)
    else:
        st.send((coordinator,), reply)


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


# --- agreement and coordination ---------------------------------------------------------------------------


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
    session = Session(len(s.sessions), s.target, s.digest, event.event_id(), commitments, st.now)
    st.update(
        sessions=s.sessions + (session,),
        fresh={m: c for m, c in s.fresh.items() if m not in chosen},
        used=s.used | {c.to_bytes() for c in commitments},
    )
    st.timer("session", st.now + patience)
    request = SignRequest(s.job_id, session.number, s.target, s.digest, session.event_id, commitments)
    st.send(tuple(m for m in chosen if m != st.m.me), request)
    if st.m.me in chosen:
        _on_sign_request(st, st.m.me, request)


def _complete(st: _Step, session: Session) -> None:
    fed = st.fed
    try:
        signature = frost.aggregate(fed.suite, session.event_id, session.commitments, session.shares, fed.keys)
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
    author = st.fed.pubkey
    created_at = request.event.created_at
    if target is Target.RESULT:
        payload = next((a.payload for a in s.announcements.values() if a.digest == digest and a.payload), None)
        if payload is None:
            return None
        return build_result_event(request, payload, author, created_at=created_at)
    info = NO_QUORUM_INFO if target is Target.NO_QUORUM else ERROR_INFO
    return build_feedback_event(request, "error", info, author, created_at=created_at)
