"""The DVM side: an embedded private relay that is the operator's DVM's ONLY relay, the forwarding of requests
to it, and the mapping of its answers back to jobs.

Modes: ``reissue`` (default) re-signs a copy of the customer's request with the operator's identity key and
``p`` = the DVM's key, for DVMs that serve only requests addressed to themselves; ``passthrough`` injects the
customer's event unchanged, for DVMs configured to answer for the group key. Only events signed by the
configured DVM key count as answers: the private relay runs in this process and checks every event's id and
signature before it takes it (nostr-sdk's relay; ``tests/sidecar/test_relay.py`` holds it to that), so what it
delivers is not verified a second time. The DVM's raw result never leaves this relay: what reaches the public
relays is the federation's co-signed event.

The canary: a request the sidecar itself sends its DVM every so often with a known answer, because a DVM's own
heartbeat can lie. Its outcome feeds a metric and readiness. It is signed by the operator's identity key and
addressed as forwarded jobs are (``p`` = the DVM's key, or the group key in passthrough mode), so it exercises
the path real jobs take. After a failure the next canary goes out one timeout later instead of one interval:
a DVM that starts after its sidecar (compose starts it once the sidecar is healthy) or comes back from an
outage makes the member ready again within seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nostr_sdk import Keys

from consensus.effects import LocalError, LocalResult
from consensus.nip90 import (
    FEEDBACK_KIND,
    DvmFeedback,
    DvmResult,
    JobRequest,
    NostrEvent,
    UnsignedEvent,
    parse_dvm_response,
    reissue_request,
    result_kind,
)
from sidecar.metrics import CanaryResult, Metrics
from sidecar.nostr_client import Received, RelayPool
from sidecar.relay import EmbeddedRelay
from sidecar.schnorr import Signer

log = logging.getLogger("dvm_sidecar.dvm")

FORWARDED_MEMORY = 20_000  # forwarded request ids remembered for mapping answers back
ANSWERS_SINCE = 600  # seconds back an answers subscription reaches when it is placed (again)


@dataclass(frozen=True)
class CanarySpec:
    kind: int
    input: str
    expected: str
    interval: float
    timeout: float


class DvmAdapter:
    """Runs the private relay, forwards requests, and turns the DVM's answers into core inputs."""

    def __init__(
        self,
        *,
        operator_keys: Keys,
        dvm_pubkey: str,
        mode: str,
        kinds: tuple[int, ...],
        deliver: Callable[[LocalResult | LocalError], Awaitable[None]],
        metrics: Metrics,
        host: str = "127.0.0.1",
        port: int | None = None,
        canary: CanarySpec | None = None,
        group_pubkey: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in ("reissue", "passthrough"):
            raise ValueError(f"dvm mode must be reissue or passthrough, not {mode!r}")
        if mode == "passthrough" and canary is not None and group_pubkey is None:
            raise ValueError("a canary in passthrough mode needs the group key: the DVM answers only for it")
        self.keys = operator_keys
        self.signer = Signer(operator_keys)
        self.operator_pubkey = self.signer.pubkey
        self.dvm_pubkey = dvm_pubkey
        self.mode = mode
        self.kinds = kinds
        self.deliver = deliver
        self.metrics = metrics
        self.relay = EmbeddedRelay(host=host, port=port)
        self.canary = canary
        # Whom the DVM serves: its own key when requests are re-signed, the group key in passthrough.
        self.canary_addressee = dvm_pubkey if mode == "reissue" or group_pubkey is None else group_pubkey
        self.clock = clock
        self._canary_at = 0  # created_at of the last canary: each canary is a new event, never a duplicate
        self._forwarded: OrderedDict[str, str] = OrderedDict()  # id the DVM sees -> job id
        self._canaries: dict[str, asyncio.Future[str | None]] = {}
        self.canary_ok: bool | None = None
        self.dvm_seen = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return self.relay.url

    async def start(self) -> str:
        url = await self.relay.start()
        self.client = RelayPool([url], self._received)
        self.client.subscribe("dvm-answers", self._answers_filter)
        if not await self.client.start():
            raise ConnectionError(f"the private relay {url} did not answer")
        if self.canary is not None:
            self._tasks.append(asyncio.create_task(self._canary_loop(self.canary)))
        return url

    async def stop(self) -> None:
        try:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:  # also when this stop is cancelled (a slow stop timed out): no connection outlives it
            client: RelayPool | None = getattr(self, "client", None)
            try:
                if client is not None:
                    await client.stop()
            finally:
                await self.relay.stop()

    def _answers_filter(self) -> list[dict[str, Any]]:
        kinds = [result_kind(k) for k in self.kinds] + [FEEDBACK_KIND]
        return [{"authors": [self.dvm_pubkey], "kinds": kinds, "since": max(0, int(self.clock()) - ANSWERS_SINCE)}]

    async def _publish(self, event: NostrEvent) -> str | None:
        """Send to the private relay; None once it took the event, else why not."""
        answer = (await self.client.publish(event.to_json(), event.id)).popitem()[1]
        return None if answer.accepted else answer.message

    # --- forwarding ---

    async def run(self, request: JobRequest) -> None:
        """Forward a job request to the DVM (the core's RunDvm effect)."""
        if self.mode == "passthrough":
            event = request.event
        else:
            unsigned = reissue_request(
                request, author=self.operator_pubkey, dvm_pubkey=self.dvm_pubkey,
                created_at=int(self.clock()),
            )
            event = self.signer.sign_event(unsigned)
        self._remember(event.id, request.event.id)
        refusal = await self._publish(event)
        if refusal is not None:
            log.error("job %s: the private relay refused the forwarded request: %s", request.event.id, refusal)
            await self.deliver(LocalError(request.event.id, "error"))

    def _remember(self, forwarded_id: str, job_id: str) -> None:
        self._forwarded[forwarded_id] = job_id
        while len(self._forwarded) > FORWARDED_MEMORY:
            self._forwarded.popitem(last=False)

    # --- answers ---

    async def _received(self, batch: list[Received]) -> None:
        for data, _ in batch:
            try:
                event = NostrEvent.from_dict(data)
            except ValueError as exc:
                log.warning("ignored a malformed event from the DVM: %s", exc)
                continue
            if event.pubkey != self.dvm_pubkey:  # id and signature: checked by the relay (module docstring)
                continue
            self.dvm_seen = True
            forwarded = next((t[1] for t in event.tags if len(t) >= 2 and t[0] == "e"), None)
            if forwarded is None:
                continue
            if forwarded in self._canaries:
                self._canary_answer(forwarded, event)
                continue
            job_id = self._forwarded.get(forwarded)
            if job_id is None:
                continue
            try:
                answer = parse_dvm_response(event, forwarded)
            except ValueError as exc:
                log.warning("job %s: unusable answer from the DVM: %s", job_id, exc)
                continue
            await self._answer(job_id, answer)

    async def _answer(self, job_id: str, answer: DvmResult | DvmFeedback) -> None:
        if isinstance(answer, DvmResult):
            await self.deliver(LocalResult(job_id, answer))
        elif answer.status == "error":
            log.info("job %s: the DVM reported an error: %s", job_id, answer.info)
            await self.deliver(LocalError(job_id, "error"))
        elif answer.status == "payment-required":
            log.error(
                "job %s: the DVM asked for payment; make it free for the sidecar's key %s "
                "(the federation collects payment, not each DVM)", job_id, self.keys.public_key().to_bech32(),
            )
            await self.deliver(LocalError(job_id, "error"))
        else:
            log.debug("job %s: DVM status %s", job_id, answer.status)

    # --- canary ---

    async def _canary_loop(self, spec: CanarySpec) -> None:
        while True:
            ok = await self.run_canary(spec)
            await asyncio.sleep(spec.interval if ok else min(spec.interval, spec.timeout))

    async def run_canary(self, spec: CanarySpec) -> bool:
        """Send the canary request and compare the answer; updates the metric and readiness."""
        tags = (("i", spec.input, "text"), ("p", self.canary_addressee))
        self._canary_at = max(int(self.clock()), self._canary_at + 1)
        unsigned = UnsignedEvent(self.operator_pubkey, self._canary_at, spec.kind, tags, "")
        event = self.signer.sign_event(unsigned)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._canaries[event.id] = future
        result: CanaryResult
        try:
            refusal = await self._publish(event)
            if refusal is not None:
                raise ConnectionError(f"the private relay refused the canary: {refusal}")
            async with asyncio.timeout(spec.timeout):  # not wait_for: on 3.11 it can swallow a cancellation
                content = await future
            result = "ok" if content == spec.expected else ("error" if content is None else "wrong")
        except TimeoutError:
            result = "timeout"
        except Exception as exc:  # the loop must outlive a failed send; the private relay is ours to fix
            log.error("canary not sent: %s", exc)
            result = "error"
        finally:
            self._canaries.pop(event.id, None)
        self.canary_ok = result == "ok"
        self.metrics.canary_finished(result)
        if not self.canary_ok:
            log.warning("canary: %s", result)
        return self.canary_ok

    def _canary_answer(self, forwarded: str, event: NostrEvent) -> None:
        future = self._canaries[forwarded]
        if future.done():
            return
        try:
            answer = parse_dvm_response(event, forwarded)
        except ValueError:
            return
        if isinstance(answer, DvmResult):
            future.set_result(answer.content)
        elif answer.status in ("error", "payment-required"):
            future.set_result(None)
