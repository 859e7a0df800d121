"""dvm-sidecar verify: events co-signed with FROST by a trusted-dealer federation pass (and nostr-sdk agrees);
tampered content, signature or author, and malformed NIP-90 results, feedback and announcements fail with the
line that names the problem."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nostr_sdk import Event, EventBuilder, Keys, Kind, Tag, Timestamp

from consensus.nip90 import (
    NostrEvent,
    UnsignedEvent,
    build_feedback_event,
    build_handler_info,
    build_result_event,
    parse_job_request,
)
from consensus.policies import ResultPayload
from sidecar.cli import main
from sidecar.commands.verify import MAX_EVENT_INPUT, verify_event
from tests.sidecar.fedkit import DealtFederation, make_federation

CREATED_AT = 1_700_000_000
DEALT: DealtFederation = make_federation(2, 3)
GROUP = DEALT.file.group_pubkey
CUSTOMER = Keys.generate()


def _request(content: str = "") -> NostrEvent:
    tags = [Tag.parse(["i", "hello", "text"]), Tag.parse(["p", GROUP])]
    signed = EventBuilder(Kind(5050), content).tags(tags).finalize(CUSTOMER)
    return NostrEvent.from_json(signed.as_json())


REQUEST = parse_job_request(_request())


def _result(**changes: Any) -> NostrEvent:
    unsigned = build_result_event(REQUEST, ResultPayload("olleh", (("t", "x"),)), GROUP, created_at=CREATED_AT)
    fields = {**unsigned.__dict__, **changes}
    return DEALT.cosign(UnsignedEvent(**fields))


def _json(event: NostrEvent, **changes: Any) -> str:
    return json.dumps({**event.to_dict(), **changes})


def _problems(text: str | bytes) -> tuple[str, ...]:
    return verify_event(text, DEALT.file).problems


@pytest.fixture
def federation_path(tmp_path: Path) -> Path:
    path = tmp_path / "federation.toml"
    path.write_text(DEALT.file.to_toml())
    return path


def test_a_co_signed_result_passes_and_nostr_sdk_agrees(federation_path: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    result = _result()
    assert Event.from_json(result.to_json()).verify()  # an independent BIP-340 implementation
    event_path = tmp_path / "event.json"
    event_path.write_text(result.to_json())
    assert main(["verify", "--federation", str(federation_path), str(event_path)]) == 0
    assert capsys.readouterr().out == (
        f"OK: job result (kind 6050) for request {REQUEST.id}, co-signed by the federation test federation "
        f"({DEALT.file.npub}); event {result.id}\n")


def test_any_t_members_make_a_passing_signature() -> None:
    for signers in [(1, 2), (1, 3), (2, 3)]:
        unsigned = build_feedback_event(REQUEST, "error", "no quorum", GROUP, created_at=CREATED_AT + signers[1])
        assert verify_event(DEALT.cosign(unsigned, signers).to_json(), DEALT.file).ok


def test_standard_input_is_read_with_a_dash(federation_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    feedback = DEALT.cosign(build_feedback_event(REQUEST, "error", "no quorum", GROUP, created_at=CREATED_AT))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(feedback.to_json().encode())))
    assert main(["verify", "--federation", str(federation_path), "-"]) == 0
    assert capsys.readouterr().out.startswith(f"OK: job feedback 'error' for request {REQUEST.id}, co-signed")


def test_an_announcement_passes() -> None:
    announcement = DEALT.cosign(build_handler_info(GROUP, [5050, 5100], {"name": "fed"}, "fed-1",
                                                   created_at=CREATED_AT))
    verdict = verify_event(announcement.to_json(), DEALT.file)
    assert verdict.ok and verdict.summary.startswith("NIP-89 announcement of kinds 5050, 5100")


def test_tampered_content_fails_on_the_id(federation_path: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    event_path = tmp_path / "event.json"
    event_path.write_text(_json(_result(), content="a different answer"))
    assert main(["verify", "--federation", str(federation_path), str(event_path)]) == 1
    assert capsys.readouterr().out == ("problem: id: does not match the event's content (NIP-01 serialization): "
                                       "the event was changed after it was signed\n")


def test_a_tampered_signature_fails_on_the_signature() -> None:
    result = _result()
    flipped = result.sig[:10] + ("0" if result.sig[10] != "0" else "1") + result.sig[11:]
    other = _result(created_at=CREATED_AT + 1).sig  # a valid signature, of another event
    for sig in (flipped, other):
        assert _problems(_json(result, sig=sig)) == (
            "sig: the BIP-340 signature does not verify for the event's id and author",)


def test_another_author_fails_on_the_author() -> None:
    # a forger signs the same result with a key of its own: id and signature are fine, the author is not
    forger = Keys.generate()
    unsigned = build_result_event(REQUEST, ResultPayload("olleh", ()), forger.public_key().to_hex(),
                                  created_at=CREATED_AT)
    sdk = EventBuilder(Kind(6050), unsigned.content).tags([Tag.parse(list(t)) for t in unsigned.tags])
    forged = sdk.custom_created_at(Timestamp.from_secs(CREATED_AT)).finalize(forger)
    problems = _problems(forged.as_json())
    assert len(problems) == 1 and problems[0].startswith(
        f"author: {forger.public_key().to_hex()} is not the federation's group key {GROUP}")
    # the group's event with only its author swapped: also the id and the signature break
    swapped = _problems(_json(_result(), pubkey=forger.public_key().to_hex()))
    assert [p.split(":")[0] for p in swapped] == ["id", "author", "sig"]


def _retagged(change: Callable[[list[tuple[str, ...]]], list[tuple[str, ...]]]) -> str:
    unsigned = build_result_event(REQUEST, ResultPayload("olleh", ()), GROUP, created_at=CREATED_AT)
    return _result(tags=tuple(change(list(unsigned.tags)))).to_json()


def _replace(name: str, *values: str) -> Callable[[list[tuple[str, ...]]], list[tuple[str, ...]]]:
    return lambda tags: [(name, *values) if t[0] == name else t for t in tags]


def _drop(name: str) -> Callable[[list[tuple[str, ...]]], list[tuple[str, ...]]]:
    return lambda tags: [t for t in tags if t[0] != name]


OTHER_REQUEST = _request("another")
FORGED_SIG_REQUEST = json.dumps({**REQUEST.event.to_dict(), "sig": OTHER_REQUEST.sig})


@pytest.mark.parametrize(("text", "problem"), [
    (_retagged(_replace("e", "ab" * 32)), f"e tag: {'ab' * 32} is not the embedded request's id {REQUEST.id}"),
    (_retagged(_drop("e")), 'e tag: missing or not ["e", <64-hex request id>]'),
    (_retagged(_drop("p")), 'p tag: missing or not ["p", <64-hex customer pubkey>]'),
    (_retagged(_replace("p", "cd" * 32)), f"p tag: {'cd' * 32} is not the customer"),
    (_retagged(_drop("request")), 'request tag: a job result carries exactly one ["request", <request JSON>]'),
    (_retagged(_replace("request", "{}")), "request tag: the embedded request is not a well-formed job request"),
    (_retagged(_replace("request", _json(REQUEST.event, content="changed"))),
     "request tag: the embedded request is not a well-formed job request: id does not match"),
    (_retagged(_replace("request", FORGED_SIG_REQUEST)),
     "request tag: the embedded request's signature does not verify"),
    (_result(kind=6100).to_json(), "kind: 6100 does not answer the embedded request's kind 5050"),
    (DEALT.cosign(UnsignedEvent(GROUP, CREATED_AT, 1, (), "hello")).to_json(),
     "kind: 1 is not what a federation publishes"),
    (DEALT.cosign(UnsignedEvent(GROUP, CREATED_AT, 7000, (("e", REQUEST.id),), "")).to_json(),
     'status tag: feedback carries exactly one ["status", <status>, <info>?]'),
    (DEALT.cosign(UnsignedEvent(GROUP, CREATED_AT, 7000, (("status", "error"),), "")).to_json(),
     'e tag: missing or not ["e", <64-hex request id>]'),
    (DEALT.cosign(UnsignedEvent(GROUP, CREATED_AT, 31990, (("d", "x"), ("k", "7000")), "{}")).to_json(),
     "k tag: '7000' is not a job request kind"),
    (DEALT.cosign(UnsignedEvent(GROUP, CREATED_AT, 31990, (("k", "5050"),), "[]")).to_json(),
     'd tag: an announcement carries exactly one non-empty ["d", <identifier>]'),
    (DEALT.cosign(UnsignedEvent(GROUP, CREATED_AT, 31990, (("d", "x"), ("k", "5050")), "[]")).to_json(),
     "content: the announcement's metadata must be a JSON object"),
    ("not json", "not an event: the input is not valid JSON"),
    ("[1, 2]", "not an event: the input is not a JSON object"),
    (json.dumps({k: v for k, v in _result().to_dict().items() if k != "sig"}), "not a NIP-01 event: it lacks sig"),
    (_json(_result(), extra=1), "not a NIP-01 event: it has unknown field(s) extra"),
    (_json(_result(), kind="6050"), "not a NIP-01 event: kind must be an integer"),
    (_json(_result(), id=_result().id.upper()), "id: must be 64 lowercase hex characters"),
    (_json(_result(), tags=[["e"], []]), "not a NIP-01 event: tag 1 must be a non-empty array of strings"),
    (b"\xff" * 10, "not an event: the input is not UTF-8"),
    (b" " * (MAX_EVENT_INPUT + 1), "not an event: the input is"),
])
def test_each_problem_is_named(text: str | bytes, problem: str) -> None:
    problems = _problems(text)
    assert any(p.startswith(problem) for p in problems), problems


def test_problems_are_printed_one_a_line_with_exit_code_1(federation_path: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    event_path = tmp_path / "event.json"
    event_path.write_text(_retagged(lambda tags: _drop("p")(_replace("e", "ab" * 32)(tags))))
    assert main(["verify", "--federation", str(federation_path), str(event_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("problem: ") for line in lines)


def test_a_bad_federation_file_or_event_file_is_one_error_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--federation", str(tmp_path / "none.toml"), "-"]) == 1
    assert capsys.readouterr().err.startswith("dvm-sidecar verify: error: ")
    path = tmp_path / "federation.toml"
    path.write_text(DEALT.file.to_toml())
    assert main(["verify", "--federation", str(path), str(tmp_path / "no-event.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dvm-sidecar verify: error: No such file or directory") and err.count("\n") == 1
