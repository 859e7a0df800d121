"""A small deterministic NIP-90 DVM: a stand-in for an operator's own DVM in the demo, the tests and compose.

It behaves like common DVM frameworks: it subscribes to its request kinds on its one relay from the moment
it starts, serves a request only when the request's LAST ``p`` tag is its own key (or, in passthrough
setups, the key it was told to answer for), posts ``processing`` feedback, then a kind 6xxx result signed by
its own key with the usual ``request``/``e``/``p``/``i`` tags. Its events are made by nostr-sdk (it reads the
fields as JSON, computes the id and signs), as those frameworks do, and not by the core's builders, so the
sidecar's parsing meets an independent party; they travel over the lean relay client
(``sidecar.nostr_client``), and a request's id and signature are checked before it is served.

The answer is the sha256 (hex) of the request's text inputs and params (see ``honest_answer``). ``wrong``
mixes the DVM's own key into it, so wrong DVMs disagree with the honest ones AND with each other, as
independent faults would; ``fail`` answers with ``error`` feedback instead; ``delay`` waits before answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nostr_sdk import Event, Keys, PublicKey, UnsignedEvent

from consensus.jsontext import dumps_compact
from consensus.nip90 import (
    FEEDBACK_KIND,
    JobRequest,
    NostrEvent,
    is_request_kind,
    parse_job_request,
    result_kind,
)
from sidecar.nostr_client import Received, RelayPool, event_id_of, signature_valid
from sidecar.peers import ffi

log = logging.getLogger(__name__)

DEFAULT_KINDS = (5050,)
MAX_DELAY = 3600.0


def honest_answer(request: JobRequest) -> str:
    """What an honest example DVM answers: sha256 hex of the text inputs and params, in request order."""
    material = {"inputs": [i.data for i in request.inputs if i.type == "text"], "params": request.params}
    return hashlib.sha256(dumps_compact(material).encode("utf-8")).hexdigest()


def wrong_answer(request: JobRequest, dvm_pubkey: str) -> str:
    """What a ``wrong`` example DVM with key ``dvm_pubkey`` answers: different for every such DVM."""
    return hashlib.sha256(f"{honest_answer(request)}:wrong:{dvm_pubkey}".encode()).hexdigest()


@dataclass
class DvmCounts:
    """What the DVM did so far (read by tests and the demo; written only by the DVM's own task)."""

    served: int = 0
    failed: int = 0
    ignored: int = 0


class ExampleDvm:
    """The DVM as an object: ``await start()``, ``await stop()``; also an async context manager."""

    def __init__(
        self,
        keys: Keys,
        relay_url: str,
        *,
        kinds: Sequence[int] = DEFAULT_KINDS,
        answer_for: str | None = None,
        wrong: bool = False,
        fail: bool = False,
        delay: float = 0.0,
    ) -> None:
        if not kinds or not all(is_request_kind(kind) for kind in kinds):
            raise ValueError(f"kinds must be NIP-90 request kinds (5000-5999), got {list(kinds)}")
        if not 0.0 <= delay <= MAX_DELAY:
            raise ValueError(f"delay must be between 0 and {MAX_DELAY:g} seconds")
        ffi.install()  # nostr-sdk takes each event's fields as one JSON string: copy it at C speed
        self._keys = keys
        self._pubkey = str(keys.public_key().to_hex())
        self._relay_url = relay_url
        self._kinds = tuple(sorted(set(kinds)))
        self._target = PublicKey.parse(answer_for).to_hex() if answer_for else keys.public_key().to_hex()
        self._wrong = wrong
        self._fail = fail
        self._delay = delay
        self._client: RelayPool | None = None
        self._since = 0
        self._jobs: set[asyncio.Task[None]] = set()
        self.counts = DvmCounts()

    @property
    def pubkey(self) -> str:
        return self._pubkey

    @property
    def npub(self) -> str:
        return str(self._keys.public_key().to_bech32())

    @property
    def kinds(self) -> tuple[int, ...]:
        return self._kinds

    @property
    def answers_for(self) -> str:
        """The key a request's last ``p`` tag must name for this DVM to serve it."""
        return str(self._target)

    async def start(self, *, require_relay: bool = True, timeout: float = 5.0) -> None:
        """Connect and subscribe. Without ``require_relay`` it keeps retrying a relay that is not up yet."""
        if self._client is not None:
            return
        self._since = int(time.time())  # requests from its start on, however often it reconnects
        client = RelayPool([self._relay_url], self._serve)
        client.subscribe("example-dvm", self._filters)
        self._client = client
        if not await client.start(timeout) and require_relay:
            await self.stop()
            raise ConnectionError(f"relay {self._relay_url} did not answer within {timeout:g} s")

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.stop()
        tasks = list(self._jobs)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs = set()

    def _filters(self) -> list[dict[str, Any]]:
        return [{"kinds": list(self._kinds), "since": self._since}]

    async def __aenter__(self) -> ExampleDvm:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _serve(self, batch: list[Received]) -> None:
        for data, _ in batch:
            request = self._accept(data)
            if request is None:
                self.counts.ignored += 1
                continue
            job = asyncio.create_task(self._answer(request), name=f"example-dvm-job-{request.id[:8]}")
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    def _accept(self, data: dict[str, Any]) -> JobRequest | None:
        try:
            event = NostrEvent.from_dict(data)
            if not signature_valid(event):
                raise ValueError("the signature does not verify")
            request = parse_job_request(event)
        except ValueError as exc:
            log.info("ignoring a malformed request: %s", exc)
            return None
        if request.kind not in self._kinds or request.addressee != self._target or request.encrypted:
            return None
        return request

    async def _answer(self, request: JobRequest) -> None:
        assert self._client is not None
        try:
            await self._send(self._feedback(request, "processing", ""))
            if self._delay:
                await asyncio.sleep(self._delay)
            if self._fail:
                await self._send(self._feedback(request, "error", "example failure (--fail)"))
                self.counts.failed += 1
                return
            answer = wrong_answer(request, self.pubkey) if self._wrong else honest_answer(request)
            await self._send(self._result(request, answer))
            self.counts.served += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # one job's failure (a relay gone mid-send) must not stop the DVM
            log.exception("example DVM could not answer request %s", request.id)

    async def _send(self, event: Event) -> None:
        assert self._client is not None
        text = event.as_json()
        answers = await self._client.publish(text, event_id_of(text))
        if not any(answer.accepted for answer in answers.values()):
            log.warning("relay refused the example DVM's event: %s", {u: a.message for u, a in answers.items()})

    def _event(self, kind: int, content: str, tags: list[list[str]]) -> Event:
        # nostr-sdk takes the fields as JSON (one call, not one per tag) and computes the id and signs.
        fields = {"pubkey": self.pubkey, "created_at": int(time.time()), "kind": kind, "tags": tags, "content": content}
        return UnsignedEvent.from_json(dumps_compact(fields)).sign(self._keys)

    def _links(self, request: JobRequest) -> list[list[str]]:
        return [["e", request.id], ["p", request.customer]]

    def _feedback(self, request: JobRequest, status: str, info: str) -> Event:
        tags = [["status", status, info] if info else ["status", status], *self._links(request)]
        return self._event(FEEDBACK_KIND, "", tags)

    def _result(self, request: JobRequest, answer: str) -> Event:
        tags = [
            ["request", request.event.to_json()],
            *self._links(request),
            *(list(tag) for tag in request.event.tags if tag[0] == "i"),
            ["alt", f"NIP-90 result (kind {result_kind(request.kind)}) of an example DVM"],
        ]
        return self._event(result_kind(request.kind), answer, tags)
