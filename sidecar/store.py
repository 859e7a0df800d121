"""The sidecar's durable state in Redis: every key name and every Redis operation, in this one module and, for
its Lua scripts, ``store_scripts.py``.

Rules this module keeps:
- Every key name is built by ``StoreKeys`` under ``dvm-sidecar:{namespace}:{member}:``, so several members
  (the demo, the tests) and several federations share one Redis without collisions. No other module spells a
  key.
- A transition that touches several keys is one Lua script (atomic, one round trip): a reader never sees a job
  gone from the in-flight index while its events are not yet in the outbox.
  The scripts spell no key name: each gets its keys from here as KEYS (DUE the outbox-record prefix as ARGV).
- What is kept only to remember something expires: finished jobs and delivery records after ``job_ttl``, seen
  requests after ``dedupe_ttl``, seen peer messages after the caller's ``ttl``; the recent-jobs index and the
  evidence stream are capped. In-flight jobs and pending outbox events never expire: they are what a restarted
  sidecar resumes.
- Nothing secret is ever stored. A job's state blob is the core's PUBLIC state (phases, digests, commitments,
  events; never a share, an identity key or a secret nonce): a full dump of this Redis may be shown to anyone.
- Redis errors propagate as ``redis.RedisError`` (the caller counts them); only ``ping()`` answers False
  instead; what must not be dropped while Redis restarts runs through ``RedisWait`` (``redis_client.py``),
  which retries it.
  ``ValueError`` means the caller passed something unusable (an empty or oversized id, a non-positive
  ttl, a save of a finished job).

Layout of one member's keys (prefix ``P``):
  P job:<job_id>              hash   state, phase, updated_at [, outcome, finished_at]; expires once finished
  P jobs:in-flight            zset   job ids not yet finished, scored by their first save (oldest first)
  P jobs:recent               zset   recently finished job ids by finished_at, capped (the status page)
  P outbox:due                zset   event ids still to publish, scored by their next attempt
  P outbox:event:<event_id>   hash   event, attempts, first_enqueued [, done_at]; expires once delivered
  P outbox:relays:<event_id>  set    relays that accepted the event; expires with the event's record
  P seen:request:<id>         string dedupe of customer requests
  P seen:messages             zset   peer message ids taken, scored by when each may be forgotten (replays)
  P evidence                  stream misbehaviour by members, capped (MAXLEN ~)
  P inbox                     stream this member's inbox on the ``redis`` peer transport (written by peers)
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from consensus.jobstate import Phase
from sidecar.resp import RespClient
from sidecar.store_scripts import DUE, ENQUEUE, FINISH_JOB, RECORD_PUBLISH, SAVE_JOB

ROOT = "dvm-sidecar"
PING_TIMEOUT = 2.0  # seconds readiness waits for Redis to answer
MAX_ID_CHARS = 256  # ids are hex event ids or short names; a longer one is a caller's bug or a hostile input
MAX_DETAIL_CHARS = 2000  # evidence details may quote peer input: bounded so a flood cannot grow Redis
_NAMESPACE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ScriptCall = tuple[AsyncScript, list[str], list[str | bytes | float | int]]  # a script, its KEYS and ARGV


@dataclass(frozen=True)
class StoreKeys:
    """Every Redis key name of member ``member`` of federation ``namespace``."""

    namespace: str
    member: int

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not _NAMESPACE.fullmatch(self.namespace):
            raise ValueError(
                f"namespace={self.namespace!r}: use 1-64 characters from A-Z a-z 0-9 . _ - (no ':')"
            )
        if isinstance(self.member, bool) or not isinstance(self.member, int) or self.member < 0:
            raise ValueError(f"member={self.member!r}: a member index is an int >= 0")

    @property
    def prefix(self) -> str:
        return f"{ROOT}:{self.namespace}:{self.member}:"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    @property
    def jobs_in_flight(self) -> str:
        return f"{self.prefix}jobs:in-flight"

    @property
    def jobs_recent(self) -> str:
        return f"{self.prefix}jobs:recent"

    @property
    def outbox_due(self) -> str:
        return f"{self.prefix}outbox:due"

    def outbox_event(self, event_id: str) -> str:
        return f"{self.prefix}outbox:event:{event_id}"

    def outbox_relays(self, event_id: str) -> str:
        return f"{self.prefix}outbox:relays:{event_id}"

    def seen_request(self, request_id: str) -> str:
        return f"{self.prefix}seen:request:{request_id}"

    @property
    def seen_messages(self) -> str:
        return f"{self.prefix}seen:messages"

    @property
    def evidence(self) -> str:
        return f"{self.prefix}evidence"

    def inbox(self, member: int) -> str:
        """The inbox stream of ``member`` (any member of this federation, this one included)."""
        return StoreKeys(self.namespace, member).prefix + "inbox"


class Claim(Enum):
    """What a request's claim found (``Store.claim_requests``)."""

    FIRST = "first"  # claimed by this caller now (or a retry of this caller's claim)
    DUPLICATE = "duplicate"  # claimed before, and its job was saved (with the request: past "pending")
    UNSAVED = "unsaved"  # claimed before by another caller, but its job never saved with the request (yet, or
    # ever): no job under its id, or only one known from peers' messages (phase "pending")


@dataclass(frozen=True)
class OutboxItem:
    event_id: str
    event_json: str
    attempts: int  # publish rounds that ended with a reschedule
    first_enqueued: float


@dataclass(frozen=True)
class JobWrite:
    """One job-state write for ``Store.write_jobs``: a save while ``outcome`` is None, else the finish (with
    the events to publish); ``at`` is when it was updated, or finished."""

    job_id: str
    state: bytes
    phase: str
    at: float
    outcome: str | None = None
    events: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:  # checked here, so one bad write never fails a whole batch
        _check_id(self.job_id, "job_id")
        _events_args(self.events)


@dataclass(frozen=True)
class Evidence:
    member: int  # the member who misbehaved
    kind: str  # e.g. invalid_share, divergent, equivocation
    job_id: str
    detail: str
    at: float


@dataclass(frozen=True)
class RecentJob:
    job_id: str
    phase: str
    outcome: str
    finished_at: float


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise ValueError(f"{what} must be a non-empty string of at most {MAX_ID_CHARS} characters")
    return value


def _ms(seconds: float, what: str) -> int:
    if not seconds > 0:
        raise ValueError(f"{what}={seconds!r}: must be a positive number of seconds")
    return max(1, round(seconds * 1000))


def _text(value: bytes | str) -> str:
    # The client may or may not decode responses; the store works with both.
    return value.decode() if isinstance(value, bytes) else value


def _events_args(events: Sequence[tuple[str, str]]) -> list[str]:
    flat: list[str] = []
    for event_id, event_json in events:
        flat += [_check_id(event_id, "event_id"), event_json]
    return flat


class Store:
    """One member's state in Redis. ``redis`` is a ``redis.asyncio.Redis`` (decoded responses or not); ``fast``,
    when given, a lean client (``sidecar.resp``) on the same Redis that carries the busy operations: job-state
    writes, request claims and relays' answers to publications."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        namespace: str,
        member: int,
        job_ttl: float = 3600.0,
        dedupe_ttl: float = 86400.0,
        recent_cap: int = 200,
        evidence_cap: int = 10_000,
        fast: RespClient | None = None,
    ) -> None:
        self.redis = redis
        self.fast = fast
        self.keys = StoreKeys(namespace, member)
        self.job_ttl = job_ttl
        self._job_ttl_ms = _ms(job_ttl, "job_ttl")
        self._dedupe_ttl_ms = _ms(dedupe_ttl, "dedupe_ttl")
        if recent_cap < 1 or evidence_cap < 1:
            raise ValueError("recent_cap and evidence_cap must be at least 1")
        self.recent_cap = recent_cap
        self.evidence_cap = evidence_cap
        # Scripts run by EVALSHA and are loaded again by themselves after a Redis restart emptied its cache.
        self._enqueue = redis.register_script(ENQUEUE)
        self._save_job = redis.register_script(SAVE_JOB)
        self._finish_job = redis.register_script(FINISH_JOB)
        self._due = redis.register_script(DUE)
        self._record_publish = redis.register_script(RECORD_PUBLISH)

    # -- customer requests and peer messages

    async def claim_request(self, request_id: str, ttl: float | None = None, *, token: str | None = None) -> bool:
        """True the first time ``request_id`` is claimed (within ``ttl`` seconds, default ``dedupe_ttl``), False
        afterwards. A caller that retries after a Redis error passes the same ``token`` (any string unique to
        this claim) every time, so a claim that was made but whose answer was lost is still recognised as its
        own."""
        (claim,) = await self.claim_requests([(request_id, ttl, token or os.urandom(8).hex())])
        return claim is Claim.FIRST

    async def claim_requests(self, claims: Sequence[tuple[str, float | None, str]]) -> list[Claim]:
        """``claim_request`` for several (request id, ttl, token) at once, in one round trip; for a request
        claimed before, also whether its job was saved with the request (a claimant that stopped in between
        leaves a claim without one)."""
        commands: list[list[Any]] = []
        for request_id, ttl, token in claims:
            key = self.keys.seen_request(_check_id(request_id, "request_id"))
            px = self._dedupe_ttl_ms if ttl is None else _ms(ttl, "ttl")
            job_phase = ["HGET", self.keys.job(request_id), "phase"]
            commands += [["SET", key, token, "NX", "PX", px], ["GET", key], job_phase]
        replies = await self._run_all(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        answers = []
        for i, (_, _, token) in enumerate(claims):
            set_now, holder, phase = replies[3 * i: 3 * i + 3]
            if set_now is not None or _text(cast(bytes, holder or b"")) == token:
                answers.append(Claim.FIRST)
            elif phase is None or _text(cast(bytes, phase)) == Phase.PENDING.value:
                answers.append(Claim.UNSAVED)
            else:
                answers.append(Claim.DUPLICATE)
        return answers

    # -- jobs

    async def save_job(self, job_id: str, state: bytes, *, phase: str, updated_at: float) -> None:
        """Store a job's public state blob, the job kept in flight. ValueError once the job finished."""
        if not (await self.write_jobs([JobWrite(job_id, state, phase, updated_at)]))[0]:
            raise ValueError(f"job {job_id} is finished: its state can no longer be saved")

    async def drop_job(self, job_id: str) -> None:
        """Forget an unfinished job entirely (its state and its in-flight entry), atomically: for a job this
        member only ever heard of from peers, which must leave nothing behind."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.job(_check_id(job_id, "job_id")))
            pipe.zrem(self.keys.jobs_in_flight, job_id)
            await pipe.execute()

    async def load_job(self, job_id: str) -> bytes | None:
        state = await self.redis.hget(self.keys.job(_check_id(job_id, "job_id")), "state")
        return state.encode() if isinstance(state, str) else state

    async def in_flight(self) -> list[str]:
        """Ids of the jobs saved and not finished, oldest first: what a restarted sidecar resumes."""
        ids = cast(list[bytes | str], await self.redis.zrange(self.keys.jobs_in_flight, 0, -1))
        return [_text(job_id) for job_id in ids]

    async def finish_job(
        self,
        job_id: str,
        state: bytes,
        *,
        phase: str,
        outcome: str,
        events: Sequence[tuple[str, str]] = (),
        finished_at: float,
    ) -> None:
        """In one atomic step: save the final state (expiring after ``job_ttl``), drop the job from the
        in-flight index, add ``events`` ((event_id, event_json) pairs) to the outbox and list the job as
        recently finished."""
        await self.write_jobs([JobWrite(job_id, state, phase, finished_at, outcome, tuple(events))])

    async def write_jobs(self, writes: Sequence[JobWrite]) -> list[bool]:
        """Several jobs' writes (saves and finishes) in one round trip, in order, each one as atomic as
        ``save_job`` or ``finish_job`` alone. False for a save refused because its job had finished.
        At most one write per job: a second one would be refused or replayed if the scripts must be reloaded."""
        return [bool(answer) for answer in await self._run_scripts([self._job_call(write) for write in writes])]

    async def _run_scripts(self, calls: Sequence[_ScriptCall]) -> list[object]:
        """Scripts by EVALSHA in one round trip, their replies in order; the first error is raised."""
        results: list[object] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(2):  # a Redis that restarted has lost its scripts: load them, run what failed again
            commands = [["EVALSHA", calls[i][0].sha, len(calls[i][1]), *calls[i][1], *calls[i][2]] for i in todo]
            answers = await self._run_all(commands)
            for i, answer in zip(todo, answers):
                results[i] = answer
            todo = [i for i in todo if isinstance(results[i], NoScriptError)]
            if not todo:
                break
            for script in {calls[i][0] for i in todo}:
                await self.redis.script_load(script.script)
        for answer in results:
            if isinstance(answer, Exception):
                raise answer
        return results

    async def _run_all(self, commands: list[list[Any]]) -> list[object]:
        """Commands in one round trip, each one's reply or error in its place."""
        if self.fast is not None:
            return await self.fast.execute(commands, raise_on_error=False)  # type: ignore[no-any-return]
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]

    def _job_call(self, write: JobWrite) -> _ScriptCall:
        k = self.keys
        job_key = k.job(_check_id(write.job_id, "job_id"))
        if write.outcome is None:
            return self._save_job, [job_key, k.jobs_in_flight], [write.job_id, write.state, write.phase, write.at]
        keys = [job_key, k.jobs_in_flight, k.jobs_recent, k.outbox_due]
        keys += [k.outbox_event(event_id) for event_id, _ in write.events]
        args: list[str | bytes | float | int] = [write.job_id, write.state, write.phase, write.outcome, write.at]
        args += [self._job_ttl_ms, self.recent_cap, write.at - self.job_ttl, *_events_args(write.events)]
        return self._finish_job, keys, args

    async def recent_jobs(self, count: int = 50) -> list[RecentJob]:
        """The last ``count`` finished jobs whose records have not expired, newest first."""
        newest = cast(list[bytes | str], await self.redis.zrevrange(self.keys.jobs_recent, 0, max(count, 1) - 1))
        ids = [_text(i) for i in newest]
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), "phase", "outcome", "finished_at")
        jobs = []
        for job_id, (phase, outcome, finished_at) in zip(ids, await pipe.execute()):
            if outcome is not None:
                jobs.append(RecentJob(job_id, _text(phase), _text(outcome), float(finished_at)))
        return jobs

    # -- outbox

    async def enqueue(self, events: Sequence[tuple[str, str]], *, now: float) -> None:
        """Add (event_id, event_json) pairs to the outbox, due at ``now``. An id already pending or delivered
        (within ``job_ttl``) is left as it is."""
        if not events:
            return
        keys = [self.keys.outbox_due, *(self.keys.outbox_event(event_id) for event_id, _ in events)]
        await self._enqueue(keys=keys, args=[now, *_events_args(events)])

    async def due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        """Up to ``limit`` events whose next attempt is at or before ``now``, the earliest first."""
        flat = await self._due(
            keys=[self.keys.outbox_due], args=[now, max(limit, 1), self.keys.outbox_event("")]
        )
        return [
            OutboxItem(_text(flat[i]), _text(flat[i + 1]), int(flat[i + 2]), float(flat[i + 3]))
            for i in range(0, len(flat), 4)
        ]

    async def record_publish(
        self, event_id: str, relay: str, accepted: bool, *, now: float, next_attempt: float | None
    ) -> None:
        """Record one relay's answer. ``next_attempt`` None: the event is done, removed from the outbox (its
        delivery record kept for ``job_ttl``); otherwise it is due again at ``next_attempt``."""
        k = self.keys
        keys = [k.outbox_due, k.outbox_event(_check_id(event_id, "event_id")), k.outbox_relays(event_id)]
        nxt = "" if next_attempt is None else next_attempt
        args: list[str | bytes | float | int] = [event_id, relay, int(bool(accepted)), now, nxt, self._job_ttl_ms]
        await self._run_scripts([(self._record_publish, keys, args)])  # on the lean client: one per publication

    async def accepted_relays(self, event_id: str) -> set[str]:
        members = await self.redis.smembers(self.keys.outbox_relays(_check_id(event_id, "event_id")))
        return {_text(relay) for relay in members}

    async def outbox_depth(self) -> int:
        """Events still to publish."""
        return int(await self.redis.zcard(self.keys.outbox_due))

    # -- evidence

    async def record_evidence(self, member: int, kind: str, job_id: str, detail: str, *, at: float) -> None:
        """Append to the evidence stream (capped near ``evidence_cap`` entries). Evidence often quotes a
        peer's input, so ``job_id`` and ``detail`` are cut to their bounds rather than refused."""
        job_id = job_id[:MAX_ID_CHARS]
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
        fields: dict[str | bytes, str | bytes | int | float] = {
            "member": int(member), "kind": kind, "job_id": job_id, "detail": detail, "at": at,
        }
        await self.redis.xadd(self.keys.evidence, fields, maxlen=self.evidence_cap, approximate=True)  # type: ignore[arg-type]

    async def evidence(self, count: int = 100) -> list[Evidence]:
        """The last ``count`` entries, newest first."""
        entries = cast(
            list[tuple[bytes | str, dict[bytes | str, bytes | str]]],
            await self.redis.xrevrange(self.keys.evidence, count=max(count, 1)),
        )
        out = []
        for _, raw in entries:
            f = {_text(name): _text(value) for name, value in raw.items()}
            out.append(Evidence(int(f["member"]), f["kind"], f["job_id"], f["detail"], float(f["at"])))
        return out

    # -- health

    async def ping(self) -> bool:
        """True if Redis answers; False (no exception) if it cannot be reached or answers with an error."""
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                return bool(await self.redis.ping())
        except (aioredis.RedisError, TimeoutError):
            return False
