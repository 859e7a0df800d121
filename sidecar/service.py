"""One member's sidecar: wires the quorum core (through ``JobRunner``) to the public relays, the DVM, the peers,
Redis and HTTP. It holds no protocol logic of its own: every decision is the core's.

Start order matters: the store and the runner first, then peers and the DVM side (so answers have somewhere to
go), then the public side (so requests only arrive once everything can handle them), then the jobs a previous
process left in flight are resumed with fresh nonces; the inputs that arrive meanwhile wait in the runner until
that is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from nostr_sdk import Keys, PublicKey

from consensus.effects import CosignEvent, Input, LocalError, LocalResult, PeerMessage, RequestSeen
from consensus.errors import InvalidContribution
from consensus.federation import Federation
from consensus.frost import KeyPackage
from consensus.messages import Message, decode, encode, message_type
from consensus.nip90 import JobRequest, UnsignedEvent
from consensus.quorum import Member
from sidecar import __version__
from sidecar.dvm import CanarySpec, DvmAdapter
from sidecar.http import HttpServer, JobStatus, MemberStatus, StatusSnapshot, make_app, start_http
from sidecar.metrics import Metrics
from sidecar.peers import PeerDirectory, make_transport
from sidecar.public import PublicSide
from sidecar.resp import RespClient
from sidecar.runner import JobRunner, Outlets
from sidecar.store import RecentJob, Store

log = logging.getLogger("dvm_sidecar.service")

INPUT_CONCURRENCY = 256  # inputs handled at once (different jobs in parallel; each job one input at a time)
STOP_TIMEOUT = 10.0  # seconds each part gets to stop
RECENT_JOBS = 20  # jobs on the status page
STATUS_READ_TIMEOUT = 2.0  # seconds the status page waits for Redis before showing what it read last
REQUESTS_REMEMBERED = 1024  # kind and arrival of recent requests, for the status page only


@dataclass(frozen=True)
class MemberSetup:
    """Everything one member runs with, however it was loaded (config files, or the demo in memory)."""

    federation: Federation
    identities: Mapping[int, str]  # member -> identity pubkey (x-only hex)
    relays: tuple[str, ...]
    kinds: tuple[int, ...]
    key_package: KeyPackage
    identity: Keys
    dvm_pubkey: str
    dvm_mode: str = "reissue"
    transport: str = "nostr"
    accept_unaddressed: bool = False
    private_relay_host: str = "127.0.0.1"
    private_relay_port: int | None = None
    canary: CanarySpec | None = None
    http_host: str = "127.0.0.1"
    http_port: int | None = None  # None: no HTTP server
    job_ttl: float = 3600.0  # seconds finished jobs and delivery records are kept in Redis
    max_request_age: float = 900.0  # seconds after its date a request is stale (and no longer remembered)
    replay_window: float = 120.0  # seconds a peer message's date may be off (its id is remembered twice that)
    handler_info: UnsignedEvent | None = None  # the NIP-89 announcement the federation co-signs on start

    @property
    def me(self) -> int:
        return self.key_package.identifier


class Sidecar:
    def __init__(
        self, setup: MemberSetup, redis_client: aioredis.Redis, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.setup = setup
        self.redis = redis_client
        self.clock = clock
        fed = setup.federation
        self.metrics = Metrics(
            members=fed.members, relays=setup.relays, kinds=setup.kinds, version=__version__
        )
        self.resp = RespClient.from_client(redis_client)  # the store's busy operations
        self.store = Store(redis_client, namespace=fed.pubkey[:16], member=setup.me, job_ttl=setup.job_ttl,
                           fast=self.resp)
        self.member = Member(fed, setup.key_package)
        self.runner = JobRunner(
            self.member, self.store, self.metrics,
            Outlets(send=self._send, run_dvm=self._run_dvm, published=self._published), clock=clock,
        )
        self.transport = make_transport(
            setup.transport,
            directory=PeerDirectory(me=setup.me, identities=dict(setup.identities)),
            identity_keys=setup.identity,
            relays=setup.relays,
            redis=redis_client,
            inbox_key=self.store.keys.inbox,
            seen_key=self.store.keys.seen_messages,
            rejections=self.metrics.peer_message_rejected,  # type: ignore[arg-type]
            max_payload=fed.max_payload + 4096,
            replay_window=setup.replay_window,
        )
        self.dvm = DvmAdapter(
            operator_keys=setup.identity, dvm_pubkey=setup.dvm_pubkey, mode=setup.dvm_mode, kinds=setup.kinds,
            deliver=self._dvm_answer, metrics=self.metrics, host=setup.private_relay_host,
            port=setup.private_relay_port, canary=setup.canary, group_pubkey=fed.pubkey, clock=clock,
        )
        self.public = PublicSide(
            relays=setup.relays, group_pubkey=fed.pubkey, kinds=setup.kinds,
            accept_unaddressed=setup.accept_unaddressed, store=self.store, metrics=self.metrics,
            on_request=self._request, clock=clock, max_request_age=setup.max_request_age,
        )
        self.http: HttpServer | None = None
        self._last_heard: dict[int, float] = {}
        self._recent: tuple[JobStatus, ...] = ()
        self._requests: OrderedDict[str, tuple[int, float]] = OrderedDict()  # request id -> (kind, received)
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(INPUT_CONCURRENCY)

    @property
    def private_relay_url(self) -> str:
        return self.dvm.url

    async def start(self) -> None:
        try:
            await self.transport.start()
            await self.dvm.start()
            await self.public.start()
            if self.setup.http_port is not None:
                app = make_app(self.metrics, self)
                self.http = await start_http(app, host=self.setup.http_host, port=self.setup.http_port)
        except BaseException:  # a part that did not come up (a port taken, cancelled): stop those that did
            await self.stop()
            raise
        resumed = await self.runner.resume_all()
        if resumed:
            log.info("resumed %d jobs in flight", resumed)
        if self.setup.handler_info is not None:  # done already (same event id) means nothing to do
            await self.runner.feed(CosignEvent(self.setup.handler_info))
        self._tasks.append(asyncio.create_task(self._peers()))
        log.info("member %d of %s ready; private relay %s", self.setup.me, self.setup.federation.pubkey, self.dvm.url)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self.runner.close()
        parts = [self.public.stop(), self.dvm.stop(), self.transport.stop()]
        if self.http is not None:
            parts.insert(0, self.http.stop())
        for part in parts:  # a part that hangs (a relay that never answers) must not keep the process up
            try:
                await asyncio.wait_for(part, STOP_TIMEOUT)
            except TimeoutError:
                log.warning("member %d: a part did not stop within %g s", self.setup.me, STOP_TIMEOUT)
        await self.resp.aclose()

    # --- inputs ---

    async def _request(self, request: JobRequest) -> None:
        self._requests[request.event.id] = (request.kind, self.clock())
        while len(self._requests) > REQUESTS_REMEMBERED:
            self._requests.popitem(last=False)
        await self._spawn(RequestSeen(request))

    async def _dvm_answer(self, answer: LocalResult | LocalError) -> None:
        await self._spawn(answer)

    async def _peers(self) -> None:
        async for envelope in self.transport.messages():
            try:
                message = decode(envelope.payload, max_bytes=self.setup.federation.max_payload + 4096)
            except (ValueError, InvalidContribution) as exc:
                self.metrics.peer_message_rejected("malformed")
                self.metrics.invalid_contribution(envelope.sender)
                log.info("member %d sent a malformed message: %s", envelope.sender, exc)
                continue
            self._last_heard[envelope.sender] = self.clock()
            self.metrics.peer_seen(envelope.sender)
            self.metrics.peer_message(message_type(message))  # type: ignore[arg-type]
            await self._spawn(PeerMessage(envelope.sender, message))

    async def _spawn(self, event: Input) -> None:
        """Feed an input in a task of its own, so one job waiting on a relay or Redis never holds up the
        others (each job still sees its inputs one at a time, under the runner's lock). Bounded: when
        INPUT_CONCURRENCY inputs are in progress, the caller waits."""
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(event))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _handle(self, event: Input) -> None:
        try:
            await self.runner.feed(event)
        except redis.RedisError:
            self.metrics.redis_error()
            log.exception("job %s: Redis error while handling %s", event.job_id, type(event).__name__)
        except Exception:  # one bad input must never stop the member
            log.exception("job %s: failed to handle %s", event.job_id, type(event).__name__)
        finally:
            self._slots.release()

    # --- outlets ---

    async def _send(self, recipients: tuple[int, ...], message: Message) -> None:
        await self.transport.send(recipients, encode(message))

    async def _run_dvm(self, request: JobRequest) -> None:
        await self.dvm.run(request)

    def _published(self, event_id: str, event_json: str, enqueued_at: float) -> None:
        self.public.publish_now(event_id, event_json, enqueued_at)

    # --- status (the HTTP side's StatusSource) ---

    async def readiness(self) -> Mapping[str, bool]:
        redis_ok = await self.store.ping()
        relay_ok = await self.public.connected() > 0
        canary_ok = True if self.setup.canary is None else bool(self.dvm.canary_ok)
        return {"redis": redis_ok, "public_relay": relay_ok, "canary": canary_ok}

    async def status(self) -> StatusSnapshot:
        try:  # read when someone looks: a page nobody reads costs nothing
            async with asyncio.timeout(STATUS_READ_TIMEOUT):
                recent = await self.store.recent_jobs(RECENT_JOBS)
            self._recent = tuple(self._job_status(r) for r in recent)
        except (redis.RedisError, OSError, TimeoutError):
            self.metrics.redis_error()  # the page shows what was read last
        members = tuple(
            MemberStatus(
                index=m,
                identity_npub=PublicKey.parse(self.setup.identities[m]).to_bech32(),
                is_self=m == self.setup.me,
                last_heard=self.clock() if m == self.setup.me else self._last_heard.get(m),
            )
            for m in self.setup.federation.members
        )
        return StatusSnapshot(
            federation_npub=PublicKey.parse(self.setup.federation.pubkey).to_bech32(),
            threshold=self.setup.federation.threshold,
            members=members,
            recent_jobs=self._recent,
            version=__version__,
            now=self.clock(),
        )

    def _job_status(self, job: RecentJob) -> JobStatus:
        # A job known only from peers (or from before a restart) shows kind 0 and no time taken.
        kind, received = self._requests.get(job.job_id, (0, job.finished_at))
        return JobStatus(job.job_id, kind, job.outcome or job.phase, received, job.finished_at)
