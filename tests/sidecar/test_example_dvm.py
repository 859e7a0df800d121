"""The example DVM on a real embedded relay: a customer client sends requests, a second client listens."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nostr_sdk import Client, EventBuilder, Filter, Keys, Kind, ReqTarget, Tag

from consensus.nip90 import DvmFeedback, DvmResult, NostrEvent, parse_dvm_response, parse_job_request
from sidecar.example_dvm import ExampleDvm, honest_answer, wrong_answer
from sidecar.relay import EmbeddedRelay, EventFeed, connect_client, from_sdk_event, verify

WAIT = 10.0  # seconds allowed for an expected event; never asserted as a duration


@pytest.fixture
async def relay() -> AsyncIterator[str]:
    async with EmbeddedRelay() as running:
        yield running.url


class Customer:
    """Sends requests with one client and listens for answers with another (a client never hears itself)."""

    def __init__(self, sender: Client, listener: Client, feed: EventFeed) -> None:
        self.keys = Keys.generate()
        self.sender, self.listener, self.feed = sender, listener, feed
        self.seen: list[NostrEvent] = []

    async def request(self, tags: list[list[str]], kind: int = 5050, content: str = "") -> NostrEvent:
        event = EventBuilder(Kind(kind), content).tags([Tag.parse(t) for t in tags]).finalize(self.keys)
        output = await self.sender.send_event(event)
        assert output.success, output.failed
        return from_sdk_event(event)

    async def answer(self, request_id: str, *, final: bool = True) -> NostrEvent | None:
        """The next answer (result or feedback) to ``request_id``; with ``final``, skip ``processing``."""
        for event in self.seen:
            if self._matches(event, request_id, final):
                self.seen.remove(event)
                return event
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while (remaining := deadline - loop.time()) > 0:
            sdk_event = await self.feed.next(remaining)
            if sdk_event is None:
                return None
            assert verify(sdk_event), "every event the DVM publishes carries a valid signature"
            event = from_sdk_event(sdk_event)
            if self._matches(event, request_id, final):
                return event
            self.seen.append(event)
        return None

    @staticmethod
    def _matches(event: NostrEvent, request_id: str, final: bool) -> bool:
        try:
            response = parse_dvm_response(event, request_id)
        except ValueError:
            return False
        return not (final and isinstance(response, DvmFeedback) and response.status == "processing")


@pytest.fixture
async def customer(relay: str) -> AsyncIterator[Customer]:
    sender = await connect_client(relay)
    listener = await connect_client(relay)
    feed = EventFeed(listener)
    kinds = [Kind(k) for k in (6050, 6001, 7000)]
    await listener.subscribe(ReqTarget.auto([Filter().kinds(kinds)]))
    yield Customer(sender, listener, feed)
    await sender.shutdown()
    await listener.shutdown()


def text_request(dvm: ExampleDvm, text: str = "hello") -> list[list[str]]:
    return [["i", text, "text"], ["param", "model", "m1"], ["p", dvm.pubkey]]


async def test_serves_a_request_addressed_to_it(relay: str, customer: Customer) -> None:
    async with ExampleDvm(Keys.generate(), relay) as dvm:
        request = await customer.request(text_request(dvm))
        processing = await customer.answer(request.id, final=False)
        assert processing is not None and processing.pubkey == dvm.pubkey
        assert parse_dvm_response(processing, request.id) == DvmFeedback("processing", "")
        result = await customer.answer(request.id)
    assert result is not None and result.kind == 6050 and result.pubkey == dvm.pubkey
    parsed = parse_dvm_response(result, request.id, request_kind=5050)
    assert isinstance(parsed, DvmResult)
    job = parse_job_request(request)
    assert parsed.content == honest_answer(job)
    assert [tag[0] for tag in parsed.tags] == ["alt"]
    assert result.tag_values("request") == ((request.to_json(),),)
    assert result.tag_values("p") == ((request.pubkey,),)
    assert result.tag_values("i") == (("hello", "text"),)
    assert dvm.counts.served == 1


async def test_answer_is_deterministic_and_wrong_differs(relay: str, customer: Customer) -> None:
    keys = [Keys.generate() for _ in range(4)]
    dvms = [
        ExampleDvm(keys[0], relay),
        ExampleDvm(keys[1], relay),
        ExampleDvm(keys[2], relay, wrong=True),
        ExampleDvm(keys[3], relay, wrong=True),
    ]
    answers = []
    for dvm in dvms:
        async with dvm:
            request = await customer.request(text_request(dvm, "same input"))
            result = await customer.answer(request.id)
            assert result is not None
            answers.append(result.content)
    assert answers[0] == answers[1] == honest_answer(parse_job_request(request))
    assert answers[2] != answers[0] and answers[3] != answers[0] and answers[2] != answers[3]
    assert answers[3] == wrong_answer(parse_job_request(request), dvms[3].pubkey)


async def test_ignores_requests_addressed_elsewhere(relay: str, customer: Customer) -> None:
    other = Keys.generate().public_key().to_hex()
    async with ExampleDvm(Keys.generate(), relay) as dvm:
        ignored = [
            await customer.request([["i", "x", "text"], ["p", other]]),
            await customer.request([["i", "x", "text"], ["p", dvm.pubkey], ["p", other]]),  # last p decides
            await customer.request([["i", "x", "text"]]),  # not addressed at all
            await customer.request(
                [["i", "x", "text"], ["p", dvm.pubkey]], kind=5001
            ),  # a kind it does not serve
            await customer.request([["i", "x", "text"], ["bid", "lots"], ["p", dvm.pubkey]]),  # malformed
        ]
        # the relay delivers in order and the DVM decides in order: once a later request is answered, every
        # earlier one has been decided
        served = await customer.request([["i", "y", "text"], ["p", other], ["p", dvm.pubkey]])
        assert await customer.answer(served.id) is not None
        assert dvm.counts.ignored == len(ignored) - 1  # the relay never delivers the kind it did not ask for
    for request in ignored:
        assert not any(Customer._matches(event, request.id, False) for event in customer.seen)


async def test_answers_for_another_key_and_other_kinds(relay: str, customer: Customer) -> None:
    group = Keys.generate().public_key()
    async with ExampleDvm(Keys.generate(), relay, kinds=(5050, 5001), answer_for=group.to_bech32()) as dvm:
        own = await customer.request([["i", "x", "text"], ["p", dvm.pubkey]])
        for_group = await customer.request([["i", "x", "text"], ["p", group.to_hex()]], kind=5001)
        result = await customer.answer(for_group.id)
        assert result is not None and result.kind == 6001 and result.pubkey == dvm.pubkey
    assert dvm.counts.ignored == 1 and not any(Customer._matches(e, own.id, False) for e in customer.seen)


async def test_fail_sends_error_feedback(relay: str, customer: Customer) -> None:
    async with ExampleDvm(Keys.generate(), relay, fail=True, delay=0.05) as dvm:
        request = await customer.request(text_request(dvm))
        answer = await customer.answer(request.id)
    assert answer is not None and answer.kind == 7000
    assert parse_dvm_response(answer, request.id) == DvmFeedback("error", "example failure (--fail)")
    assert dvm.counts.failed == 1


def test_refuses_bad_settings() -> None:
    for kwargs in ({"kinds": (1,)}, {"kinds": ()}, {"delay": -1.0}):
        with pytest.raises(ValueError):
            ExampleDvm(Keys.generate(), "ws://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# The command


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sidecar.cli", "example-dvm", *args]


async def test_command_serves_until_terminated(relay: str, customer: Customer, tmp_path: Path) -> None:
    keys = Keys.generate()
    nsec_file = tmp_path / "dvm.nsec"
    nsec_file.write_text(keys.secret_key().to_bech32() + "\n")
    nsec_file.chmod(0o600)
    process = await asyncio.create_subprocess_exec(
        *_cli("--relay", relay, "--nsec-file", str(nsec_file), "--kinds", "5050,5001"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
        assert keys.public_key().to_bech32() in banner and "5001,5050" in banner
        request = await customer.request([["i", "cli", "text"], ["p", keys.public_key().to_hex()]])
        result = await customer.answer(request.id)
        assert result is not None and result.content == honest_answer(parse_job_request(request))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 0, stderr.decode()
    assert b"1 served" in stdout


@pytest.mark.parametrize(
    ("setup", "message"),
    [("missing", "cannot read"), ("open", "chmod 600"), ("garbage", "does not hold an nsec")],
)
def test_command_refuses_bad_key_files(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "dvm.nsec"
    if setup != "missing":
        path.write_text("not a key" if setup == "garbage" else Keys.generate().secret_key().to_bech32())
        path.chmod(0o644 if setup == "open" else 0o600)
    done = subprocess.run(
        _cli("--relay", "ws://127.0.0.1:1", "--nsec-file", str(path)),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert done.returncode == 2
    assert message in done.stderr and "nsec1" not in done.stderr
