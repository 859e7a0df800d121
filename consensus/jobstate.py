"""The durable state of one job as one member sees it, and its JSON form for the store.

Everything here is public: digests, payloads, nonce COMMITMENTS, signature shares. Secret nonces live only in
the member's memory (``consensus.quorum.Member``) and never in this state, so it can be written to Redis and a
restarted member resumes from it with fresh nonces. One field is memory only: ``Session.context``, a cache of
public values that the JSON leaves out and a restarted member computes again.

The state is immutable; ``consensus.quorum`` computes each new state from the old one and an input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from functools import cached_property
from typing import Any

from consensus.frost import SignatureShare, SigningCommitments, SigningContext
from consensus.messages import Target
from consensus.nip90 import JobRequest, NostrEvent, UnsignedEvent, parse_job_request
from consensus.policies import ResultPayload

# The digest every member announces when its DVM failed or timed out, and the one a no-quorum session signs.
# Neither is the sha256 of any canonical payload (those are JSON objects), so they never collide with results.
ERROR_DIGEST = b"\x00" * 31 + b"\x01"
NO_QUORUM_DIGEST = b"\x00" * 31 + b"\x02"


class Phase(str, Enum):
    PENDING = "pending"  # heard of the job from a peer, not yet seen its request
    RUNNING = "running"  # request seen and forwarded; waiting for the own DVM
    ANNOUNCED = "announced"  # own answer announced; waiting for t matching announcements
    SIGNING = "signing"  # agreed (or given up) on what to sign; co-signing
    DONE = "done"  # the co-signed event exists (or the job was abandoned)


@dataclass(frozen=True)
class Announcement:
    """What a member said its DVM answered: a digest and, for a result, the canonical payload."""

    digest: bytes
    payload: ResultPayload | None


@dataclass(frozen=True)
class Session:
    """A signing session this member coordinates: the signer set's commitments and the shares received."""

    number: int
    target: Target
    digest: bytes
    event_id: bytes
    commitments: tuple[SigningCommitments, ...]
    started_at: float
    shares: tuple[SignatureShare, ...] = ()
    # The FROST values of the session (binding factors, R, challenge) when this member signs in it too, made
    # once for its own share and the aggregate. Not part of the state: neither compared nor stored, so None
    # after a restart, and aggregate then computes them itself.
    context: SigningContext | None = field(default=None, compare=False, repr=False)

    @cached_property
    def signers(self) -> frozenset[int]:
        return frozenset(c.identifier for c in self.commitments)

    def has_share(self, member: int) -> bool:
        return any(s.identifier == member for s in self.shares)


@dataclass(frozen=True)
class JobState:
    job_id: str
    phase: Phase
    created_at: float
    request: JobRequest | None = None
    fixed_event: UnsignedEvent | None = None  # for a CosignEvent job: the event itself, instead of a request
    seen_at: float | None = None
    own: Announcement | None = None
    own_reason: str = ""  # "error" or "timeout" when the own DVM gave no result
    announced_at: float | None = None
    announcements: Mapping[int, Announcement] = field(default_factory=dict)
    fresh: Mapping[int, SigningCommitments] = field(default_factory=dict)  # usable commitment per member
    used: frozenset[bytes] = frozenset()  # commitments already put in a session (never reused)
    gave_up: frozenset[int] = frozenset()
    target: Target | None = None
    digest: bytes | None = None
    agreed_at: float | None = None
    attempt: int = 0  # coordinator takeovers so far
    sessions: tuple[Session, ...] = ()
    bad: frozenset[int] = frozenset()  # sent an invalid share: left out of later sessions
    flagged: frozenset[tuple[int, str]] = frozenset()  # evidence already recorded (member, kind)
    signed: frozenset[tuple[int, int]] = frozenset()  # (coordinator, session) this member signed in
    signed_target: Target | None = None  # an honest member never signs two different targets
    refreshes: int = 0  # commitments re-sent on request (bounded)
    done_event: NostrEvent | None = None
    done_signers: tuple[int, ...] = ()
    outcome: str = ""
    finished_at: float | None = None

    def evolve(self, **changes: Any) -> JobState:
        """A copy with ``changes``, as ``dataclasses.replace`` makes it, at a fraction of its cost (the state
        machine makes one per change of every step): the fields are immutable values and nothing is derived
        from them on construction, so a copy of the instance dict is the whole of it."""
        unknown = changes.keys() - _FIELD_NAMES
        if unknown:
            raise TypeError(f"JobState has no field(s) {sorted(unknown)}")
        new = object.__new__(JobState)
        new.__dict__.update(self.__dict__, **changes)
        return new

    def to_json(self) -> str:
        return json.dumps(_to_obj(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> JobState:
        """Load a state this code wrote; ``ValueError`` if it is not one."""
        try:
            return _from_obj(json.loads(text))
        except (KeyError, TypeError, AttributeError, IndexError, RecursionError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a stored job state: {exc.__class__.__name__}: {exc}") from None


_FIELD_NAMES = frozenset(f.name for f in fields(JobState))


def _ann(a: Announcement) -> list[Any]:
    return [a.digest.hex(), None if a.payload is None else a.payload.to_json()]


def _unann(v: list[Any]) -> Announcement:
    return Announcement(bytes.fromhex(v[0]), None if v[1] is None else ResultPayload.from_json(v[1]))


def _unsigned(e: UnsignedEvent) -> list[Any]:
    return [e.pubkey, e.created_at, e.kind, [list(t) for t in e.tags], e.content]


def _ununsigned(v: list[Any]) -> UnsignedEvent:
    return UnsignedEvent(v[0], v[1], v[2], tuple(tuple(t) for t in v[3]), v[4])


def _to_obj(s: JobState) -> dict[str, Any]:
    return {
        "job_id": s.job_id,
        "phase": s.phase.value,
        "created_at": s.created_at,
        "request": None if s.request is None else s.request.event.to_json(),
        "fixed_event": None if s.fixed_event is None else _unsigned(s.fixed_event),
        "seen_at": s.seen_at,
        "own": None if s.own is None else _ann(s.own),
        "own_reason": s.own_reason,
        "announced_at": s.announced_at,
        "announcements": {str(k): _ann(v) for k, v in s.announcements.items()},
        "fresh": {str(k): v.hex() for k, v in s.fresh.items()},
        "used": sorted(u.hex() for u in s.used),
        "gave_up": sorted(s.gave_up),
        "target": None if s.target is None else s.target.value,
        "digest": None if s.digest is None else s.digest.hex(),
        "agreed_at": s.agreed_at,
        "attempt": s.attempt,
        "sessions": [
            {
                "number": x.number,
                "target": x.target.value,
                "digest": x.digest.hex(),
                "event_id": x.event_id.hex(),
                "commitments": [c.hex() for c in x.commitments],
                "started_at": x.started_at,
                "shares": [sh.hex() for sh in x.shares],
            }
            for x in s.sessions
        ],
        "bad": sorted(s.bad),
        "flagged": sorted([m, k] for m, k in s.flagged),
        "signed": sorted([c, n] for c, n in s.signed),
        "signed_target": None if s.signed_target is None else s.signed_target.value,
        "refreshes": s.refreshes,
        "done_event": None if s.done_event is None else s.done_event.to_json(),
        "done_signers": list(s.done_signers),
        "outcome": s.outcome,
        "finished_at": s.finished_at,
    }


def _from_obj(o: dict[str, Any]) -> JobState:
    request = None if o["request"] is None else parse_job_request(NostrEvent.from_json(o["request"]))
    return JobState(
        job_id=o["job_id"],
        phase=Phase(o["phase"]),
        created_at=o["created_at"],
        request=request,
        fixed_event=None if o["fixed_event"] is None else _ununsigned(o["fixed_event"]),
        seen_at=o["seen_at"],
        own=None if o["own"] is None else _unann(o["own"]),
        own_reason=o["own_reason"],
        announced_at=o["announced_at"],
        announcements={int(k): _unann(v) for k, v in o["announcements"].items()},
        fresh={int(k): SigningCommitments.from_hex(v) for k, v in o["fresh"].items()},
        used=frozenset(bytes.fromhex(u) for u in o["used"]),
        gave_up=frozenset(o["gave_up"]),
        target=None if o["target"] is None else Target(o["target"]),
        digest=None if o["digest"] is None else bytes.fromhex(o["digest"]),
        agreed_at=o["agreed_at"],
        attempt=o["attempt"],
        sessions=tuple(
            Session(
                number=x["number"],
                target=Target(x["target"]),
                digest=bytes.fromhex(x["digest"]),
                event_id=bytes.fromhex(x["event_id"]),
                commitments=tuple(SigningCommitments.from_hex(c) for c in x["commitments"]),
                started_at=x["started_at"],
                shares=tuple(SignatureShare.from_hex(sh) for sh in x["shares"]),
            )
            for x in o["sessions"]
        ),
        bad=frozenset(o["bad"]),
        flagged=frozenset((m, k) for m, k in o["flagged"]),
        signed=frozenset((c, n) for c, n in o["signed"]),
        signed_target=None if o["signed_target"] is None else Target(o["signed_target"]),
        refreshes=o["refreshes"],
        done_event=None if o["done_event"] is None else NostrEvent.from_json(o["done_event"]),
        done_signers=tuple(o["done_signers"]),
        outcome=o["outcome"],
        finished_at=o["finished_at"],
    )
