"""A NIP-90 customer on the public relay, as the end-to-end tests use it: it sends job requests addressed to the
federation and watches EVERYTHING the relay passes on for results and feedback, from any author.

Every event it sees is kept, so a test can check that all of them are the federation's (verified with
nostr-sdk's ``Event.verify()``, authored by the group key) and that no DVM's own event ever got out.
Two clients, because a nostr-sdk ``Client`` is never told of the events it published itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from nostr_sdk import Client, Event, EventBuilder, EventId, Filter, Keys, Kind, ReqTarget, Tag

from consensus.nip90 import FEEDBACK_KIND, parse_job_request, result_kind
from sidecar.example_dvm import honest_answer
from sidecar.local import KIND
from sidecar.relay import EventFeed, connect_client, from_sdk_event

RESULT_KIND = result_kind(KIND)


@dataclass(frozen=True)
class Job:
    request: Event
    expected: str  # what an honest example DVM answers

    @property
    def id(self) -> str:
        return self.request.id().to_hex()


def tag_values(event: Event, name: str) -> list[str]:
    """The first value of each ``name`` tag."""
    return [t[1] for t in (tag.to_vec() for tag in event.tags()) if len(t) > 1 and t[0] == name]


def references(event: Event) -> list[str]:
    return tag_values(event, "e")


def status(event: Event) -> str | None:
    found = tag_values(event, "status")
    return found[0] if found else None


def is_final(event: Event) -> bool:
    """A result, or error feedback: what ends a job for the customer (progress feedback does not)."""
    kind = event.kind().as_u16()
    return kind == RESULT_KIND or (kind == FEEDBACK_KIND and status(event) == "error")


class Customer:
    def __init__(self, url: str, group_pubkey: str) -> None:
        self.url = url
        self.group = group_pubkey
        self.keys = Keys.generate()
        self.seen: list[Event] = []  # every result and feedback event the relay passed on, in order
        self._final: dict[str, list[Event]] = {}  # request id -> final events referencing it
        self._arrived = asyncio.Event()

    async def start(self) -> Customer:
        self.sender: Client = await connect_client(self.url)
        self.listener: Client = await connect_client(self.url)
        feed = EventFeed(self.listener)
        # Any author: a DVM's own result reaching the public relay must be seen to be caught.
        await self.listener.subscribe(ReqTarget.auto([Filter().kinds([Kind(RESULT_KIND), Kind(FEEDBACK_KIND)])]))
        self._task = asyncio.create_task(self._watch(feed))
        return self

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.sender.shutdown()
        await self.listener.shutdown()

    async def __aenter__(self) -> Customer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _watch(self, feed: EventFeed) -> None:
        async for event in feed:
            self.seen.append(event)
            if is_final(event):
                for ref in references(event):
                    self._final.setdefault(ref, []).append(event)
                self._arrived.set()

    # --- requests ---

    def build(self, text: str, *, tags: Iterable[Sequence[str]] = (), kind: int = KIND, content: str = "") -> Event:
        """A request for ``text`` addressed (``p``) to the federation, with any extra tags."""
        all_tags = [["i", text, "text"], *(list(t) for t in tags), ["p", self.group]]
        return EventBuilder(Kind(kind), content).tags([Tag.parse(t) for t in all_tags]).finalize(self.keys)

    async def send(self, event: Event) -> None:
        output = await self.sender.send_event(event)
        assert output.success, f"the public relay refused a request: {output.failed}"

    async def request(self, text: str) -> Job:
        event = self.build(text)
        await self.send(event)
        return Job(event, honest_answer(parse_job_request(from_sdk_event(event))))

    # --- outcomes ---

    async def outcomes(self, jobs: Sequence[Job], timeout: float) -> dict[str, Event]:
        """The first final event for each job; AssertionError naming the jobs still waiting at ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            missing = [job.id for job in jobs if job.id not in self._final]
            if not missing:
                return {job.id: self._final[job.id][0] for job in jobs}
            left = deadline - loop.time()
            assert left > 0, f"no result or error for {len(missing)} of {len(jobs)} jobs within {timeout:g} s"
            self._arrived.clear()
            try:
                async with asyncio.timeout(min(left, 0.5)):
                    await self._arrived.wait()
            except TimeoutError:
                pass

    async def outcome(self, job: Job, timeout: float) -> Event:
        return (await self.outcomes([job], timeout))[job.id]

    async def stored(self, job: Job, kind: int = RESULT_KIND) -> list[Event]:
        """Every event of ``kind`` referencing the job that the relay holds, asked afresh."""
        query = Filter().kind(Kind(kind)).event(EventId.parse(job.id))
        events = await self.listener.fetch_events(ReqTarget.auto([query]), timedelta(seconds=2))
        return list(events)

    def check_all_federation(self) -> None:
        """Every result or feedback the relay passed on is the federation's: id and signature verified by
        nostr-sdk, the author the group key."""
        for event in self.seen:
            assert event.author().to_hex() == self.group, f"an event by {event.author().to_hex()} got out: " + (
                json.dumps(json.loads(event.as_json()))[:300]
            )
            assert event.verify(), f"event {event.id().to_hex()} does not verify"


def assert_result(event: Event, job: Job, group: str) -> None:
    """A co-signed result of ``job`` with the honest answer."""
    assert event.author().to_hex() == group
    assert event.verify()
    assert event.kind().as_u16() == RESULT_KIND, f"kind {event.kind().as_u16()}, status {status(event)}"
    assert job.id in references(event)
    assert event.content() == job.expected


def assert_error(event: Event, job: Job, group: str) -> None:
    """A co-signed kind 7000 error for ``job``."""
    assert event.author().to_hex() == group
    assert event.verify()
    assert event.kind().as_u16() == FEEDBACK_KIND and status(event) == "error"
    assert job.id in references(event)
