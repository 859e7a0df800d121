"""A deterministic simulator of whole federations running the quorum protocol.

Everything runs on a virtual clock and a virtual network (delay, drop, reorder, duplicate) driven by one seeded
``random.Random``, so a seed reproduces a run exactly. Members run the real state machine (``consensus.quorum``)
with real FROST; faulty members wrap it: ``crash`` (stops at a chosen point), ``wrong-result`` (its DVM answers
differently), ``bad-share`` (sends invalid shares), ``equivocate`` (announces different results to different
peers), ``withhold`` (never sends its share), ``slow`` (its DVM and its messages are late). Faulty members that
attack signing coordinate as in the ROAST paper's worst case: in each session exactly one of them misbehaves.

After a run, ``Outcome`` tells what was published and checks the protocol's properties (see ``_check``).

Liveness bound (checked by tests/consensus/test_simulation.py). With t honest, live, agreeing members and a
network that loses nothing, a result is published within, in simulated seconds (d is ``delay_max``, plus
``slow_extra`` when slow members exist):

    dvm_latency max (+ slow_extra)            the last DVM needed answers
  + faulty members x timeouts.coordinator     each faulty member ahead in the rotation holds the role once
  + (n - t + 1) x timeouts.session            ROAST sessions, each failed one costing at most the patience
  + 4 d                                       announce, sign request, share (or a refresh), done

Signing sessions: a coordinator needs at most n - t + 1 against faulty members, but members that see agreement
at slightly different times may coordinate at once and use the same broadcast commitments; the signer then
answers the second coordinator with a refresh, and that session is spent too. ``max_sessions`` therefore
counts up to ``Federation.max_sessions`` = 2 (n - t + 1).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import ClassVar, cast

from coincurve import PrivateKey

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
    RunDvm,
    Send,
    SetTimer,
    TimerFired,
)
from consensus.federation import Federation, Timeouts
from consensus.jobstate import JobState
from consensus.messages import Announce, Message, Share, SignRequest, Target
from consensus.nip90 import DvmResult, NostrEvent, UnsignedEvent, parse_job_request
from consensus.policies import ResultPayload
from consensus.quorum import Member, resume, step

BEHAVIOURS = ("crash", "wrong-result", "bad-share", "equivocate", "withhold", "slow")
CRASH_POINTS = ("start", "after_announce", "on_sign_request", "after_share")
REQUEST_KIND = 5050
CUSTOMER = PrivateKey(hashlib.sha256(b"dvm-sidecar simulated customer").digest())


@dataclass(frozen=True)
class Network:
    delay_min: float = 0.005
    delay_max: float = 0.150
    drop: float = 0.0
    duplicate: float = 0.0
    slow_extra: float = 3.0  # added to every message of a "slow" member


@dataclass(frozen=True)
class Scenario:
    n: int
    t: int
    faulty: tuple[tuple[int, str], ...] = ()  # (member, behaviour)
    network: Network = field(default_factory=Network)
    timeouts: Timeouts = field(default_factory=lambda: Timeouts(dvm=10, deadline=20, coordinator=8, session=1))
    dvm_latency: tuple[float, float] = (0.05, 0.5)
    split: bool = False  # honest DVMs all answer differently (a non-deterministic DVM): no quorum possible
    crash_point: str = "start"
    horizon: float = 600.0
    restarts: tuple[tuple[int, float], ...] = ()  # (member, at): its process restarts then (``restart``)

    def behaviour(self, member: int) -> str:
        return dict(self.faulty).get(member, "honest")


@dataclass
class Outcome:
    seed: int
    published: dict[str, NostrEvent]  # event id -> event, everything any member published
    first_publish_at: float | None
    max_sessions: int
    violations: list[str]
    blamed: dict[int, set[int]]  # honest member -> members it recorded an invalid share for
    divergent: dict[int, set[int]]
    finished: dict[int, str]  # honest member -> outcome
    steps: int

    @property
    def kind(self) -> str:
        kinds = {e.kind for e in self.published.values()}
        if REQUEST_KIND + 1000 in kinds:
            return "published"
        return "no_quorum" if kinds else "none"


@dataclass(frozen=True)
class _Restart:
    """A scheduled process restart (not an input of the state machine: the simulator handles it)."""

    job_id: str


class _Keys:
    """Key material per (n, t), made once per process run from a fixed seed (keygen is the slow part)."""

    cache: ClassVar[dict[tuple[int, int], tuple[frost.PublicKeyPackage, dict[int, frost.KeyPackage]]]] = {}

    @classmethod
    def get(cls, n: int, t: int) -> tuple[frost.PublicKeyPackage, dict[int, frost.KeyPackage]]:
        if (n, t) not in cls.cache:
            rng = random.Random(f"keys-{n}-{t}")
            shares, public = frost.trusted_dealer_keygen(frost.SECP256K1_TR, t, n, rng=rng.randbytes)
            cls.cache[(n, t)] = (public, {i: frost.vss_verify(frost.SECP256K1_TR, s) for i, s in shares.items()})
        return cls.cache[(n, t)]


def make_request(seed: int, created_at: int = 1_700_000_000) -> NostrEvent:
    """A signed kind 5050 request from the simulated customer, addressed to nobody in particular."""
    pubkey = CUSTOMER.public_key.format()[1:].hex()
    tags = (("i", f"simulated input {seed}", "text"), ("param", "seed", str(seed)))
    unsigned = UnsignedEvent(pubkey, created_at, REQUEST_KIND, tags, "")
    sig = CUSTOMER.sign_schnorr(unsigned.event_id(), hashlib.sha256(b"aux%d" % seed).digest())
    return unsigned.with_signature(sig)


def _result(text: str) -> DvmResult:
    return DvmResult(content=text, tags=())


class Simulation:
    """One federation, one job, one seed. ``run()`` returns the ``Outcome``.

    ``step_hook(member, thunk)`` runs each state-machine step (a bench wraps it to meter each member's CPU)."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        step_hook: Callable[[int, Callable[[], object]], object] | None = None,
    ) -> None:
        sc = scenario
        if not 2 <= sc.t <= sc.n:
            raise ValueError("need 2 <= t <= n")
        for member, behaviour in sc.faulty:
            if behaviour not in BEHAVIOURS or not 1 <= member <= sc.n:
                raise ValueError(f"bad faulty member {member}: {behaviour}")
        for member, at in sc.restarts:
            if not 1 <= member <= sc.n or not at >= 0:
                raise ValueError(f"bad restart of member {member} at {at}")
        self.sc = sc
        self.seed = seed
        self.rand = random.Random(seed)
        public, key_packages = _Keys.get(sc.n, sc.t)
        self.fed = Federation(public, timeouts=sc.timeouts)
        self.members = {
            i: Member(self.fed, key_packages[i], random.Random(f"{seed}-{i}").randbytes) for i in self.fed.members
        }
        self.states: dict[int, JobState | None] = {i: None for i in self.members}
        self.hook = step_hook or (lambda member, thunk: thunk())
        self.queue: list[tuple[float, int, int, Input | _Restart]] = []
        self.timers: dict[tuple[int, str], float] = {}
        self.seq = 0
        self.now = 0.0
        self.steps = 0
        self.request = make_request(seed)
        self.job_id = self.request.id
        self.crashed: set[int] = set()
        self.restarted: set[int] = set()
        self.exposed: set[int] = set()  # signing attackers that already misbehaved once
        self.published: dict[str, NostrEvent] = {}
        self.first_publish_at: float | None = None
        self.evidence: dict[int, list[Evidence]] = {i: [] for i in self.members}
        self.finished: dict[int, str] = {}
        self.requests: dict[tuple[int, int], SignRequest] = {}  # (coordinator, session) -> request
        self.shares_sent: list[tuple[int, int, int, frost.SignatureShare]] = []  # (signer, coord, session, share)
        self.honest_digest = hashlib.sha256(f"honest {seed}".encode()).hexdigest()

    # --- the world -----------------------------------------------------------------------------------

    def behaviour(self, member: int) -> str:
        return self.sc.behaviour(member)

    def _push(self, at: float, member: int, event: Input | _Restart) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, member, event))

    def dvm_answer(self, member: int) -> str:
        if self.sc.split:
            return f"{self.honest_digest}-{member}"
        if self.behaviour(member) in ("wrong-result",):
            return f"{self.honest_digest}-wrong-{member}"
        return self.honest_digest

    def run(self) -> Outcome:
        request = parse_job_request(self.request)
        for member in self.members:
            if self.behaviour(member) == "crash" and self.sc.crash_point == "start":
                self.crashed.add(member)
            self._push(self.rand.uniform(0, self.sc.network.delay_max), member, RequestSeen(request))
        for member, at in self.sc.restarts:
            self._push(at, member, _Restart(self.job_id))
        while self.queue:
            at, _, member, event = heapq.heappop(self.queue)
            if at > self.sc.horizon:
                break
            self.now = at
            if isinstance(event, _Restart):
                self.restart(member)
                continue
            if isinstance(event, TimerFired) and self.timers.get((member, event.name)) != at:
                continue  # replaced by a later SetTimer
            self._deliver(member, event)
        return self._outcome()

    def _deliver(self, member: int, event: Input) -> None:
        if member in self.crashed:
            return
        if isinstance(event, PeerMessage) and isinstance(event.message, SignRequest):
            self.requests.setdefault((event.sender, event.message.session), event.message)
            if self._crashes(member) and self.sc.crash_point == "on_sign_request":
                self.crashed.add(member)
                return
        state = self.states[member]
        self.steps += 1
        stepped = self.hook(member, lambda: step(self.members[member], state, event, self.now))
        new_state, effects = cast(tuple[JobState, list[Effect]], stepped)
        self.states[member] = new_state
        for effect in effects:
            self._carry_out(member, effect)

    def _carry_out(self, member: int, effect: object) -> None:
        net = self.sc.network
        if isinstance(effect, RunDvm):
            low, high = self.sc.dvm_latency
            delay = self.rand.uniform(low, high) + (net.slow_extra if self.behaviour(member) == "slow" else 0)
            self._push(self.now + delay, member, LocalResult(self.job_id, _result(self.dvm_answer(member))))
        elif isinstance(effect, SetTimer):
            self.timers[(member, effect.name)] = effect.at
            self._push(effect.at, member, TimerFired(effect.job_id, effect.name))
        elif isinstance(effect, Send):
            for recipient in effect.recipients:
                message = self._tamper(member, recipient, effect.message)
                if message is not None:
                    self._transmit(member, recipient, message)
            point = self.sc.crash_point if self._crashes(member) else ""
            if (point, type(effect.message)) in (("after_share", Share), ("after_announce", Announce)):
                self.crashed.add(member)
        elif isinstance(effect, Publish):
            self.published.setdefault(effect.event.id, effect.event)
            if self.first_publish_at is None:
                self.first_publish_at = self.now
        elif isinstance(effect, Evidence):
            self.evidence[member].append(effect)
        elif isinstance(effect, Finished):
            self.finished[member] = effect.outcome

    def _transmit(self, sender: int, recipient: int, message: Message) -> None:
        net = self.sc.network
        if isinstance(message, Share):
            self.shares_sent.append((sender, recipient, message.session, message.share))
        if self.rand.random() < net.drop:
            return
        copies = 2 if self.rand.random() < net.duplicate else 1
        for _ in range(copies):
            delay = self.rand.uniform(net.delay_min, net.delay_max)
            if self.behaviour(sender) == "slow":
                delay += net.slow_extra
            self._push(self.now + delay, recipient, PeerMessage(sender, message))

    def _tamper(self, sender: int, recipient: int, message: Message) -> Message | None:
        """What a faulty member sends instead of the honest message (None: nothing)."""
        behaviour = self.behaviour(sender)
        if (
            behaviour == "equivocate" and isinstance(message, Announce) and message.payload is not None
            and recipient % 2 == 0
        ):
            payload = ResultPayload(f"{self.honest_digest}-equivocated-{sender}", ())
            return replace(message, digest=payload.digest(), payload=payload)
        if behaviour in ("bad-share", "withhold") and isinstance(message, Share):
            request = self.requests.get((recipient, message.session))
            if request is None or not self._my_turn(sender, request):
                return message
            self.exposed.add(sender)
            if behaviour == "withhold":
                return None
            return replace(message, share=frost.SignatureShare(message.share.identifier, (message.share.z + 1) % frost.N))
        return message

    def _my_turn(self, sender: int, request: SignRequest) -> bool:
        """Coordinated attack: in each session, the first not-yet-exposed attacker in it misbehaves."""
        attackers = [
            c.identifier for c in request.commitments
            if self.behaviour(c.identifier) in ("bad-share", "withhold") and c.identifier not in self.exposed
        ]
        return bool(attackers) and attackers[0] == sender

    # --- checks --------------------------------------------------------------------------------------

    def _outcome(self) -> Outcome:
        honest = [m for m in self.members if self.behaviour(m) in ("honest", "slow")]
        violations = self._check(honest)
        max_sessions = max((len(s.sessions) for s in self.states.values() if s is not None), default=0)
        blamed = {m: {e.member for e in self.evidence[m] if e.kind == "invalid_share"} for m in honest}
        divergent = {m: {e.member for e in self.evidence[m] if e.kind == "divergent"} for m in honest}
        return Outcome(
            self.seed, self.published, self.first_publish_at, max_sessions, violations, blamed, divergent,
            {m: self.finished.get(m, "") for m in honest}, self.steps,
        )

    def _check(self, honest: list[int]) -> list[str]:
        """Safety: every published event verifies under the group key, and a result is one that t members'
        DVMs produced (a faulty member counts as producing anything); no honest member signed an event its
        DVM does not support or used a commitment twice; nobody honest is blamed; no two results."""
        bad: list[str] = []
        byzantine = [m for m in self.members if m not in honest]
        results = [e for e in self.published.values() if e.kind == REQUEST_KIND + 1000]
        for event in self.published.values():
            if not frost.verify(self.fed.suite, bytes.fromhex(event.id), bytes.fromhex(event.sig),
                                self.fed.keys.group_public_key):
                bad.append(f"published event {event.id} does not verify")
        for event in results:
            producers = sum(1 for m in honest if self.dvm_answer(m) == event.content) + len(byzantine)
            if producers < self.fed.threshold or not any(self.dvm_answer(m) == event.content for m in honest):
                bad.append(f"result {event.content!r} was not produced by t members' DVMs")
        if len(results) > 1 and 2 * self.fed.threshold > self.fed.n:
            bad.append(f"{len(results)} different results published for one job")
        if results and self.sc.split:
            bad.append("a result was published although no two DVMs agreed")
        used: set[tuple[int, bytes]] = set()
        for signer, coordinator, session, _share in self.shares_sent:
            if signer not in honest:
                continue
            request = self.requests.get((coordinator, session))
            if request is None:
                continue
            commitment = next(c for c in request.commitments if c.identifier == signer)
            if (signer, commitment.to_bytes()) in used:
                bad.append(f"honest member {signer} shared twice under one commitment")
            used.add((signer, commitment.to_bytes()))
            if request.target is Target.RESULT:
                payload = json.loads(self._payload_json(request.digest) or "null")
                if payload is None or payload["content"] != self.dvm_answer(signer):
                    bad.append(f"honest member {signer} signed a result its DVM did not produce")
        for member in honest:
            falsely = {e.member for e in self.evidence[member] if e.kind == "invalid_share"} & set(honest)
            if falsely:
                bad.append(f"member {member} blamed honest members {sorted(falsely)}")
        return bad

    def _payload_json(self, digest: bytes) -> str | None:
        for state in self.states.values():
            if state is None:
                continue
            for announcement in state.announcements.values():
                if announcement.digest == digest and announcement.payload is not None:
                    return announcement.payload.to_json()
        return None

    def _crashes(self, member: int) -> bool:
        """A crashing member crashes once: its restarted process is healthy."""
        return self.behaviour(member) == "crash" and member not in self.restarted

    def restart(self, member: int) -> None:
        """Replace a member's process: a new ``Member`` (no nonces) resuming from its stored state."""
        self.crashed.discard(member)
        self.restarted.add(member)
        old = self.members[member]
        self.members[member] = Member(self.fed, old.key_package, random.Random(f"{self.seed}-{member}-r").randbytes)
        state = self.states[member]
        if state is not None:
            new_state, effects = resume(self.members[member], state, self.now)
            self.states[member] = new_state
            for effect in effects:
                self._carry_out(member, effect)
