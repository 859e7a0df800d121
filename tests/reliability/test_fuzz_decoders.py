"""Hostile input on the wire: every decoder of what peers, relays and DVMs send, fed generated input, refuses it
only with its documented error, and oversized or deeply nested input is refused before it is parsed.

Decoders and their one documented refusal: peer messages (``consensus.messages.decode``: ``ValueError`` or
``InvalidContribution``); peer envelopes (``EnvelopeCodec.check``/``open``: ``Rejected`` with a reason);
events, job requests and DVM answers (``NostrEvent.from_json``, ``parse_job_request``, ``parse_dvm_response``:
``ValueError``); result payloads (``ResultPayload.from_json``: ``ValueError``); stored job states
(``JobState.from_json``: ``ValueError``). Whatever a decoder accepts must encode back to what it read.
Files (config, federation, key files) are in ``test_fuzz_files``; the budget and the material in ``fuzzing``.

The dedicated run (100,000 cases over both files):
``FUZZ_EXAMPLES=100000 bash tests/run.sh tests/reliability/test_fuzz_decoders.py tests/reliability/test_fuzz_files.py``
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st
from nostr_sdk import Nip44Version, nip44_encrypt

from consensus.errors import InvalidContribution
from consensus.jobstate import JobState
from consensus.messages import MAX_MESSAGE_BYTES, decode, encode
from consensus.nip90 import MAX_EVENT_BYTES, NostrEvent, UnsignedEvent, parse_dvm_response, parse_job_request
from consensus.policies import ResultPayload
from sidecar.peers.base import PeerDirectory
from sidecar.peers.envelope import EnvelopeCodec, Rejected
from tests.reliability.fuzzing import (
    DIRECTORY,
    ENCODED,
    HEX,
    HEXISH,
    IDENTITIES,
    JSON_VALUES,
    NOW,
    PAYLOAD,
    REQUEST,
    RESULT,
    STORED_STATE,
    as_json,
    edits,
    flip_bytes,
    fuzz,
    fuzz_report,  # noqa: F401  (a fixture)
    sign_envelope,
)

pytestmark = pytest.mark.reliability

# ---------------------------------------------------------------------------------------------- peer messages


def _decode(raw: bytes) -> None:
    try:
        message = decode(raw)
    except (ValueError, InvalidContribution):
        return
    assert decode(encode(message)) == message


@fuzz("message_bytes", st.binary(max_size=800))
def test_peer_messages_random_bytes(raw: bytes) -> None:
    _decode(raw)


@fuzz("message_edits", st.sampled_from(ENCODED), st.data())
def test_peer_messages_edited_fields(encoded: bytes, data: st.DataObject) -> None:
    doc = edits(json.loads(encoded), data)
    raw = as_json(doc, data)
    _decode(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))


@fuzz("message_byte_flips", st.sampled_from(ENCODED), st.data())
def test_peer_messages_flipped_bytes(encoded: bytes, data: st.DataObject) -> None:
    _decode(flip_bytes(encoded, data))


# ---------------------------------------------------------------------------------------------- envelopes


def _codec(member: int) -> EnvelopeCodec:
    return EnvelopeCodec(PeerDirectory(member, DIRECTORY), IDENTITIES[member], clock=lambda: float(NOW),
                         max_payload=MAX_MESSAGE_BYTES)


RECEIVER = _codec(1)
SENDER = _codec(2)
SEALED = [SENDER.seal(1, [SENDER.prepare(1, raw)])[0] for raw in ENCODED]
SEALED += SENDER.seal(1, [SENDER.prepare(1, raw) for raw in ENCODED[:3]])  # a batch


def _open(raw: str | bytes) -> None:
    try:
        checked = RECEIVER.check(raw)
    except Rejected as rejected:
        assert rejected.reason in ("unknown_author", "bad_signature", "stale", "replay", "malformed", "oversize")
        return
    try:
        envelopes = RECEIVER.open(checked)
    except Rejected:
        return
    for envelope in envelopes:
        assert envelope.sender == 2 and 0 < len(envelope.payload) <= RECEIVER.max_payload
        _decode(envelope.payload)


@fuzz("envelope_text", st.binary(max_size=800) | st.text(max_size=800))
def test_envelopes_random_input(raw: str | bytes) -> None:
    _open(raw)


@fuzz("envelope_edits", st.sampled_from(SEALED), st.data())
def test_envelopes_edited_fields(sealed: str, data: st.DataObject) -> None:
    _open(as_json(edits(json.loads(sealed), data), data))


SECOND_TAGS = (
    st.none()
    | st.builds(lambda n: ["batch", n], st.sampled_from(["0", "1", "2", "3", "64", "65", "999", "-1", "02", "x"]))
    | st.builds(lambda i, c, d: ["part", i, c, d], st.sampled_from(["0", "1", "2", "3"]),
                st.sampled_from(["1", "2", "3", "99", "1000"]), st.text(HEX, min_size=63, max_size=65))
    | st.lists(st.text(max_size=6), max_size=5)
)
PLAINTEXTS = (
    st.text(min_size=1, max_size=300)
    | st.sampled_from([raw.decode() for raw in ENCODED])
    | st.lists(st.sampled_from([raw.decode() for raw in ENCODED]) | st.text(max_size=20), max_size=4).map(json.dumps)
)


@fuzz("envelope_signed", PLAINTEXTS, SECOND_TAGS, st.integers(1, 3), st.integers(-200, 200))
def test_envelopes_signed_by_a_member_with_any_content(
    plaintext: str, second: list[str] | None, copies: int, skew: int
) -> None:
    """Authenticated envelopes (a member's real key) carrying anything: the batch, part and decryption paths."""
    try:
        content = nip44_encrypt(IDENTITIES[2].secret_key(), IDENTITIES[1].public_key(), plaintext, Nip44Version.V2)
    except Exception:  # nostr-sdk refuses to encrypt what NIP-44 cannot carry (a lone surrogate, > 64 KiB)
        content = plaintext
    tags = [["p", DIRECTORY[1]]] + ([second] if second is not None else [])
    for copy in range(copies):  # the same tags again: parts of one message, or a replay
        _open(sign_envelope(IDENTITIES[2], NOW + skew + copy, tags, content))


# ---------------------------------------------------------------------------------------------- events


def _event(raw: str | bytes) -> NostrEvent | None:
    try:
        event = NostrEvent.from_json(raw)
    except ValueError:
        return None
    assert NostrEvent.from_json(event.to_json()) == event
    return event


@fuzz("event_text", st.binary(max_size=600) | st.text(max_size=600))
def test_events_random_input(raw: str | bytes) -> None:
    _event(raw)


@fuzz("event_edits", st.sampled_from([REQUEST, RESULT]), st.data())
def test_events_edited_fields(event: NostrEvent, data: st.DataObject) -> None:
    _event(as_json(edits(event.to_dict(), data), data))


TAGS = st.lists(
    st.lists(st.sampled_from(["i", "p", "e", "param", "bid", "output", "relays", "encrypted", "status", "amount"])
             | st.text(max_size=8) | HEXISH, min_size=1, max_size=5).map(tuple),
    max_size=6,
)


def _unsigned(kind: int, tags: list[tuple[str, ...]], content: str) -> UnsignedEvent | None:
    try:
        return UnsignedEvent("ab" * 32, NOW, kind, tuple(tags), content)
    except ValueError:
        return None


@fuzz("job_request", st.integers(4990, 6010) | st.integers(0, 65535), TAGS, st.text(max_size=40))
def test_job_requests_with_any_tags(kind: int, tags: list[tuple[str, ...]], content: str) -> None:
    unsigned = _unsigned(kind, tags, content)
    if unsigned is None:
        return
    event = unsigned.with_signature(bytes(64))
    try:
        request = parse_job_request(event)
    except ValueError:
        return
    assert request.event == event and 5000 <= request.kind <= 5999


@fuzz("dvm_response", st.integers(5990, 7010) | st.integers(0, 65535), TAGS, st.text(max_size=40), st.booleans())
def test_dvm_responses_with_any_tags(kind: int, tags: list[tuple[str, ...]], content: str, linked: bool) -> None:
    unsigned = _unsigned(kind, [("e", REQUEST.id)] * linked + tags, content)
    if unsigned is None:
        return
    try:
        parse_dvm_response(unsigned.with_signature(bytes(64)), REQUEST.id, request_kind=5050)
    except ValueError:
        return


@fuzz("payload", st.one_of(st.text(max_size=300), st.binary(max_size=300),
                 st.builds(lambda doc: json.dumps(doc), JSON_VALUES)), st.data())
def test_result_payloads(raw: str | bytes, data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="from a valid one"):
        raw = as_json(edits(json.loads(PAYLOAD.to_json()), data), data)
    try:
        payload = ResultPayload.from_json(raw)
    except ValueError:
        return
    assert ResultPayload.from_json(payload.to_json()) == payload


@fuzz("job_state", st.data())
def test_stored_job_states(data: st.DataObject) -> None:
    raw = as_json(edits(json.loads(STORED_STATE), data), data)
    try:
        JobState.from_json(raw)
    except ValueError:
        return


# ---------------------------------------------------------------------------------------------- early refusal
# Each input below is both too big (or too deep) AND malformed from its first byte: the reason given says
# which check ran first, so these prove the bound is applied before the parser sees the text.

HUGE = 16 * 1024 * 1024
DEEP = 100_000


def test_oversize_peer_messages_are_refused_before_parsing() -> None:
    with pytest.raises(ValueError, match=r"exceeds the .*-byte limit"):
        decode(b"[" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(ValueError, match="not JSON"):  # deep but within the size: refused, never a crash
        decode(b"[" * 30_000 + b"]" * 30_000)
    doc = json.loads(ENCODED[0])
    doc["payload"]["tags"] = [[[[["x"]]]]]
    with pytest.raises(ValueError):
        decode(json.dumps(doc).encode())


@pytest.mark.parametrize("raw", [b"[" * HUGE, "{" * HUGE])
def test_oversize_envelopes_are_refused_before_parsing(raw: str | bytes) -> None:
    with pytest.raises(Rejected) as refused:
        RECEIVER.check(raw)
    assert refused.value.reason == "oversize"


def test_deeply_nested_envelopes_are_refused_by_the_depth_check() -> None:
    with pytest.raises(Rejected) as refused:
        RECEIVER.check("[" * 20_000 + "]" * 20_000)
    assert refused.value.reason == "malformed" and "nested deeper than 3" in refused.value.detail


@pytest.mark.parametrize("decoder", [NostrEvent.from_json, ResultPayload.from_json, JobState.from_json])
def test_events_and_payloads_refuse_oversize_and_deep_input_before_parsing(decoder: Callable[[str], Any]) -> None:
    if decoder == JobState.from_json:  # our own state, written by this code: refused, not bounded up front
        with pytest.raises(ValueError):
            decoder("[" * DEEP + "]" * DEEP)
        return
    with pytest.raises(ValueError, match=r"over the .*-byte limit"):
        decoder("[" * (MAX_EVENT_BYTES + 1))
    with pytest.raises(ValueError, match="nested deeper than 3 levels"):
        decoder("[" * (MAX_EVENT_BYTES // 2) + "]" * (MAX_EVENT_BYTES // 2))


def test_a_forged_part_count_is_refused_before_anything_is_kept() -> None:
    before = RECEIVER.reassembly.pending()
    raw = sign_envelope(IDENTITIES[2], NOW, [["p", DIRECTORY[1]], ["part", "1", "999", "ab" * 32]], "x")
    with pytest.raises(Rejected) as refused:
        RECEIVER.check(raw)
    assert refused.value.reason == "oversize" and RECEIVER.reassembly.pending() == before


@pytest.mark.parametrize("field, value", [("fixed_event", []), ("own", ["00" * 32]), ("announcements", {"2": []})])
def test_a_stored_state_with_short_lists_is_a_value_error(field: str, value: object) -> None:
    """Regression: ``JobState.from_json`` let IndexError (and RecursionError) out, which a resuming runner
    does not catch: one damaged state in Redis would stop the sidecar from starting."""
    doc = json.loads(STORED_STATE)
    doc[field] = value
    with pytest.raises(ValueError, match="not a stored job state"):
        JobState.from_json(json.dumps(doc))
