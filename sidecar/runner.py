"""Runs the pure quorum core for every job of one member: feeds inputs, persists states, carries out effects.

Rules it keeps:
- one input at a time per job (a lock per job), so the core sees a sequential history;
- no input is taken before ``resume_all`` has put every unfinished job of the store in memory: a request or a
  DVM answer arriving during a restart would otherwise start its job afresh over the state saved before
  (the announcements peers had sent for it, say);
- the new state is written to Redis BEFORE any effect leaves the process: a member that crashes after sending
  a share has the share's session recorded, and its nonces are gone with the process anyway; while Redis is
  away (a restart, an outage) the write is retried, holding the job's input, so no input is dropped; the
  writes of jobs stepping at the same time share a round trip (``group_commit``);
- a step from which nothing leaves (only timers: most peers' announces once the job is agreed, say) is kept in
  memory and written with the job's next step, or at a stop: a crash loses what such inputs added, as it loses
  the messages in flight, and the job goes on from its last write (with fresh nonces) as after any crash;
- the finished state, its co-signed event (into the outbox) and the end of the in-flight entry are one atomic
  store transition, so a restart neither loses nor repeats a publication;
- timers are asyncio handles keyed by (job, name); a later SetTimer of the same name replaces the earlier one;
- a job known only from peer messages (its request not seen here) is an orphan: each peer may start at most
  ``orphan_cap`` of them, so a flood of job ids from one peer fills no more than its share of memory and never
  keeps a customer's request out; an orphan that expires leaves nothing behind in Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis

from consensus.effects import (
    Effect,
    Evidence,
    Finished,
    Input,
    PeerMessage,
    Publish,
    RequestSeen,
    RunDvm,
    Send,
    SetTimer,
    TimerFired,
)
from consensus.jobstate import JobState, Phase
from consensus.messages import Message
from consensus.nip90 import JobRequest
from consensus.quorum import Member, resume, step
from sidecar.group_commit import GroupCommit
from sidecar.metrics import Metrics
from sidecar.redis_client import RedisWait
from sidecar.store import JobWrite, Store

log = logging.getLogger("dvm_sidecar.runner")

MAX_PENDING_JOBS = 10_000  # jobs in memory at once; more are refused (a flood of job ids)
FINISHED_MEMORY = 4096  # finished job ids remembered in memory to drop late messages without a Redis read
FINAL_STATES = 512  # the last finished jobs' states kept in memory: their late inputs (evidence) read no Redis
LEAVING = (Send, RunDvm, Publish, Evidence, Finished)  # effects seen outside this process: their state first


@dataclass(frozen=True)
class Outlets:
    """Where effects go: the service supplies these."""

    send: Callable[[tuple[int, ...], Message], Awaitable[None]]
    run_dvm: Callable[[JobRequest], Awaitable[None]]
    published: Callable[[str, str, float], None]  # (event id, JSON, when): just put in the outbox, publish it


class JobRunner:
    def __init__(
        self,
        member: Member,
        store: Store,
        metrics: Metrics,
        outlets: Outlets,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.member = member
        self.store = store
        self.metrics = metrics
        self.outlets = outlets
        self.clock = clock
        self._states: dict[str, JobState] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()
        self._final: OrderedDict[str, JobState] = OrderedDict()  # the newest of them, with their states
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[str, dict[str, asyncio.TimerHandle]] = {}  # job id -> timer name -> handle
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._resumed = asyncio.Event()  # set by resume_all: inputs wait for it
        self._stored = RedisWait(metrics.redis_error, f"member {member.me}: job state")
        self._writes = GroupCommit(store, self._stored)
        self._unwritten: set[str] = set()  # jobs whose state in memory is newer than in Redis
        # Orphans (jobs a peer's message made known, request not seen here) together fill at most half of
        # MAX_PENDING_JOBS: the other half is always there for customers' requests.
        self.orphan_cap = max(1, MAX_PENDING_JOBS // (2 * max(1, member.federation.n - 1)))
        self._orphans: dict[str, int] = {}  # job id -> the peer whose message made it known
        self._orphans_by_peer: Counter[int] = Counter()
        self._capped: set[int] = set()  # peers at their cap (warned)

    # --- public ---

    def in_flight(self) -> int:
        return len(self._states)

    def outcome(self, job_id: str) -> str | None:
        return self._finished.get(job_id)

    def state(self, job_id: str) -> JobState | None:
        return self._states.get(job_id)

    async def resume_all(self) -> int:
        """After a (re)start: pick up every job the store says is in flight, with fresh nonces; then let the
        inputs that arrived meanwhile in (also when this fails: they would wait for ever)."""
        count = 0
        try:
            for job_id in await self.store.in_flight():
                raw = await self.store.load_job(job_id)
                if raw is None:
                    continue
                try:
                    state = JobState.from_json(raw)
                except ValueError:
                    log.error("job %s: stored state unreadable, left alone", job_id)
                    continue
                async with self._lock(job_id):
                    new, effects = resume(self.member, state, self.clock())
                    if new is state and not effects:  # finished: nothing to pick up
                        continue
                    if new is state:  # nothing to save (no commitment of its own to renew): the DVM run
                        self._states[job_id] = new  # and the timers are set going all the same
                        await self._execute(job_id, effects)
                    else:
                        await self._commit(job_id, state, new, effects)
                count += 1
            self.metrics.set_jobs_in_flight(len(self._states))
        finally:
            self._resumed.set()
        return count

    async def feed(self, event: Input) -> None:
        """Apply one input to its job; never raises for a peer's fault (the core records evidence)."""
        if not self._resumed.is_set():
            await self._resumed.wait()
        job_id = event.job_id
        if self._closed or (job_id in self._finished and not isinstance(event, TimerFired)):
            if job_id in self._finished:
                await self._feed_finished(job_id, event)
            return
        async with self._lock(job_id):
            if job_id in self._finished:  # it finished while this input waited for the lock
                if not isinstance(event, TimerFired):
                    await self._feed_finished(job_id, event)
                return
            state = self._states.get(job_id)
            if state is None:
                # A request comes once (the intake's claim) and every unfinished job is in memory (resume_all):
                # only another input can find a state in Redis that is not here, a job finished and forgotten.
                state = None if isinstance(event, RequestSeen) else await self._load(job_id)
                if state is not None and state.phase is Phase.DONE:
                    # It finished while this input waited for the lock (or before a restart): saving a step
                    # from here would be refused by the store, and only evidence can come of it anyway.
                    if not isinstance(event, TimerFired):
                        await self._feed_finished(job_id, event, state)
                    return
                if state is None and len(self._states) >= MAX_PENDING_JOBS:
                    log.warning("job %s refused: %d jobs already in flight", job_id, len(self._states))
                    return
                if state is None and isinstance(event, PeerMessage) and not self._orphan(job_id, event.sender):
                    return
            try:
                new, effects = step(self.member, state, event, self.clock())
            except ValueError as exc:
                log.warning("job %s: input refused: %s", job_id, exc)
                if state is None:
                    self._adopt(job_id)  # nothing was kept of it
                return
            await self._commit(job_id, state, new, effects)

    async def close(self) -> None:
        self._closed = True
        self._resumed.set()  # inputs still waiting for a resume see the runner closed
        for timers in self._timers.values():
            for handle in timers.values():
                handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._write_unwritten()
        finally:
            await self._writes.close()

    async def _write_unwritten(self) -> None:
        """At a stop, what only memory holds goes to Redis, so the next process resumes from it."""
        writes = [
            JobWrite(job_id, state.to_json().encode(), state.phase.value, self.clock())
            for job_id in sorted(self._unwritten) if (state := self._states.get(job_id)) is not None
        ]
        self._unwritten.clear()
        if writes:
            try:
                await self.store.write_jobs(writes)
            except redis.RedisError as exc:  # a stop does not wait out an outage: those inputs are lost
                log.warning("%d jobs' latest inputs not saved at stop: Redis unreachable (%s)", len(writes), exc)

    # --- internals ---

    def _lock(self, job_id: str) -> asyncio.Lock:
        lock = self._locks.get(job_id)
        if lock is None:
            lock = self._locks[job_id] = asyncio.Lock()
        return lock

    async def _load(self, job_id: str) -> JobState | None:
        raw = await self._stored(lambda: self.store.load_job(job_id))
        return None if raw is None else JobState.from_json(raw)

    async def _feed_finished(self, job_id: str, event: Input, state: JobState | None = None) -> None:
        """Late inputs for a finished job only matter as evidence (a divergent answer arriving last)."""
        if state is None:
            state = self._final.get(job_id) or await self._load(job_id)
            if state is None:
                return
        _, effects = step(self.member, state, event, self.clock())
        await self._execute(job_id, effects)  # the finished state stays as it was; evidence has its own stream

    def _orphan(self, job_id: str, peer: int) -> bool:
        """Count a new job that ``peer``'s message makes known; False (refused) once the peer has its cap."""
        if self._orphans_by_peer[peer] >= self.orphan_cap:
            if peer not in self._capped:  # once per flood, not once per message
                self._capped.add(peer)
                log.warning("member %d made %d jobs known whose request this member has not seen; more are "
                            "refused until those end", peer, self.orphan_cap)
            return False
        self._orphans[job_id] = peer
        self._orphans_by_peer[peer] += 1
        return True

    def _adopt(self, job_id: str) -> None:
        """The job is no orphan any more: its request or this member's own answer came, or it ended."""
        peer = self._orphans.pop(job_id, None)
        if peer is not None:
            self._orphans_by_peer[peer] -= 1
            self._capped.discard(peer)

    async def _commit(self, job_id: str, old: JobState | None, new: JobState, effects: list[Effect]) -> None:
        if new is old:
            return
        finished = [e for e in effects if isinstance(e, Finished)]
        if finished or new.request is not None or new.own is not None:
            self._adopt(job_id)
        if finished and new.request is None and new.own is None:
            # Known from peers only and expired: nothing of it was ever this member's job; forget it.
            await self.store.drop_job(job_id)
            self._states.pop(job_id, None)
            self._locks.pop(job_id, None)
            self._cancel_timers(job_id)
            self.metrics.set_jobs_in_flight(len(self._states))
            await self._execute(job_id, [e for e in effects if not isinstance(e, Finished)])
            return
        if not any(isinstance(e, LEAVING) for e in effects) and new.request is not None:
            self._states[job_id] = new  # nothing leaves: written with the next step that sends something
            self._unwritten.add(job_id)
            self._observe_phases(old, new)
            await self._execute(job_id, effects)
            return
        self._unwritten.discard(job_id)
        blob = new.to_json().encode()
        if finished:
            events = tuple((e.event.id, e.event.to_json()) for e in effects if isinstance(e, Publish))
            await self._writes.write(
                JobWrite(job_id, blob, new.phase.value, self.clock(), finished[0].outcome, events)
            )
            self._states.pop(job_id, None)
            self._locks.pop(job_id, None)
            self._remember_finished(job_id, finished[0].outcome, new)
            self._cancel_timers(job_id)
        else:
            if not await self._writes.write(JobWrite(job_id, blob, new.phase.value, self.clock())):
                raise ValueError(f"job {job_id} is finished: its state can no longer be saved")
            self._states[job_id] = new
        self.metrics.set_jobs_in_flight(len(self._states))
        self._observe_phases(old, new)
        await self._execute(job_id, effects)

    def _remember_finished(self, job_id: str, outcome: str, state: JobState) -> None:
        self._finished[job_id] = outcome
        while len(self._finished) > FINISHED_MEMORY:
            self._finished.popitem(last=False)
        self._final[job_id] = state
        while len(self._final) > FINAL_STATES:
            self._final.popitem(last=False)

    def _observe_phases(self, old: JobState | None, new: JobState) -> None:
        if new.request is None:
            return
        before = old if old is not None else new
        if before.announced_at is None and new.announced_at is not None and new.seen_at is not None:
            self.metrics.observe_phase("dvm", new.announced_at - new.seen_at)
        if before.agreed_at is None and new.agreed_at is not None and new.announced_at is not None:
            self.metrics.observe_phase("agreement", max(0.0, new.agreed_at - new.announced_at))
        finished = new.phase is Phase.DONE and before.phase is not Phase.DONE
        if finished and new.finished_at is not None and new.agreed_at is not None:
            self.metrics.observe_phase("signing", new.finished_at - new.agreed_at)

    async def _execute(self, job_id: str, effects: list[Effect]) -> None:
        # What is done at once (timers, waking the publisher, counting) goes first: a message waits for its
        # relay's answer, and a co-signed result need not wait for the DONE sent beside it. Messages keep their
        # order.
        instant = (SetTimer, Publish, Finished)
        ordered = [e for e in effects if isinstance(e, instant)] + [e for e in effects if not isinstance(e, instant)]
        for effect in ordered:
            try:
                await self._carry_out(job_id, effect)
            except redis.RedisError:
                self.metrics.redis_error()
                log.exception("job %s: Redis error while carrying out %s", job_id, type(effect).__name__)

    async def _carry_out(self, job_id: str, effect: Effect) -> None:
        if isinstance(effect, Send):
            await self.outlets.send(effect.recipients, effect.message)
        elif isinstance(effect, RunDvm):
            await self.outlets.run_dvm(effect.request)
        elif isinstance(effect, SetTimer):
            self._set_timer(effect)
        elif isinstance(effect, Publish):
            self.outlets.published(effect.event.id, effect.event.to_json(), self.clock())
        elif isinstance(effect, Evidence):
            await self._record(effect)
        elif isinstance(effect, Finished):
            self.metrics.job_finished(effect.outcome)  # type: ignore[arg-type]
            if effect.sessions:
                self.metrics.observe_signing_sessions(effect.sessions)
            log.info("job %s finished: %s", job_id, effect.outcome)

    async def _record(self, evidence: Evidence) -> None:
        if evidence.kind == "invalid_share":
            self.metrics.invalid_contribution(evidence.member)
        elif evidence.kind == "divergent":
            self.metrics.divergent_result(evidence.member)
        elif evidence.kind == "equivocation":
            self.metrics.equivocation(evidence.member)
        else:
            self.metrics.invalid_contribution(evidence.member)
        log.warning("job %s: member %d %s: %s", evidence.job_id, evidence.member, evidence.kind, evidence.detail)
        await self.store.record_evidence(
            evidence.member, evidence.kind, evidence.job_id, evidence.detail, at=self.clock()
        )

    def _set_timer(self, timer: SetTimer) -> None:
        if self._closed:
            return
        timers = self._timers.setdefault(timer.job_id, {})
        old = timers.pop(timer.name, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, timer.at - self.clock())
        loop = asyncio.get_running_loop()
        timers[timer.name] = loop.call_later(delay, self._fire, timer.job_id, timer.name)

    def _fire(self, job_id: str, name: str) -> None:
        timers = self._timers.get(job_id)
        if timers is not None:
            timers.pop(name, None)
            if not timers:
                del self._timers[job_id]
        task = asyncio.get_running_loop().create_task(self.feed(TimerFired(job_id, name)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel_timers(self, job_id: str) -> None:
        for handle in self._timers.pop(job_id, {}).values():
            handle.cancel()
