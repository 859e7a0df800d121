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

This module holds ``Member`` (its secret nonces live in memory only and are dropped when the job ends),
``step``, ``resume`` and the ``_on_*`` handlers of the request, the timers and peer messages. They hand on to
three modules: ``consensus.agreement`` (this member's answer, announces and give-up votes, the agreed digest,
DONE), ``consensus.coordination`` (the coordinator, ROAST sessions, aggregation and blame, the end of a job)
and ``consensus.signer`` (the event to sign, and the safety rules in ``_may_sign``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from consensus import frost
from consensus.agreement import (
    _announce,
    _check_agreement,
    _check_give_up,
    _on_announce,
    _on_done,
    _on_give_up,
    _on_local_error,
    _on_local_result,
)
from consensus.coordination import _coordinate, _finish, _on_share
from consensus.effects import (
    CosignEvent,
    Effect,
    Evidence,
    Input,
    LocalError,
    LocalResult,
    PeerMessage,
    RequestSeen,
    RunDvm,
    Send,
    SetTimer,
    TimerFired,
)
from consensus.errors import InvalidContribution
from consensus.federation import Federation
from consensus.jobstate import Announcement, JobState, Phase
from consensus.messages import Announce, GiveUp, Message, Share, SignRequest, Target
from consensus.nip90 import UnsignedEvent
from consensus.policies import ResultPayload
from consensus.signer import ERROR_INFO, NO_QUORUM_INFO, _on_sign_request

__all__ = ["ERROR_INFO", "NO_QUORUM_INFO", "Member", "new_job", "resume", "step"]


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
        self._events: dict[str, dict[tuple[Target, bytes], UnsignedEvent]] = {}  # per job: events built

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
        self._events.pop(job_id, None)

    def built_event(self, job_id: str, target: Target, digest: bytes) -> UnsignedEvent | None:
        """The event already built for a job's target and digest (the same bytes however often it is built:
        a coordinator, a signer's check and a DONE's check each ask for it)."""
        return self._events.get(job_id, {}).get((target, digest))

    def keep_event(self, job_id: str, target: Target, digest: bytes, event: UnsignedEvent) -> None:
        self._events.setdefault(job_id, {})[(target, digest)] = event

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
        self.s = self.s.evolve(flagged=self.s.flagged | {(member, kind)})
        self.fx.append(Evidence(self.s.job_id, member, kind, detail))

    def update(self, **changes: object) -> None:
        self.s = self.s.evolve(**changes)


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


def _on_peer(st: _Step, sender: int, message: Message) -> None:
    if sender not in st.fed.members or sender == st.m.me:
        raise ValueError(f"sender {sender} is not a peer")
    try:
        if isinstance(message, Announce):
            _on_announce(st, sender, message)
        elif isinstance(message, GiveUp):
            _on_give_up(st, sender, message)
        elif isinstance(message, SignRequest):
            share = _on_sign_request(st, sender, message)
            if share is not None:
                st.send((sender,), share)
        elif isinstance(message, Share):
            _on_share(st, sender, message)
        else:
            _on_done(st, sender, message)
    except InvalidContribution as exc:
        st.evidence(sender, "invalid_message", exc.what)
