"""Peer messages: every type round-trips to canonical bytes, and bad input is refused with ValueError or
InvalidContribution only (tables of hand-made mutations, then hypothesis)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import frost
from consensus.errors import InvalidContribution
from consensus.messages import (
    MAX_MESSAGE_BYTES,
    Announce,
    Done,
    GiveUp,
    Message,
    Share,
    SignRequest,
    Target,
    decode,
    encode,
    message_type,
)
from consensus.policies import ResultPayload

SUITE = frost.SECP256K1_TR
P = 2**256 - 2**32 - 977  # the secp256k1 field prime
JOB = "ab" * 32
EVENT_ID = bytes(range(32))


def _keys() -> tuple[frost.PublicKeyPackage, dict[int, frost.KeyPackage]]:
    rng = random.Random("test_messages keys")
    shares, public = frost.trusted_dealer_keygen(SUITE, 3, 5, rng=rng.randbytes)
    return public, {i: frost.vss_verify(SUITE, s) for i, s in shares.items()}


PUBLIC, KEY_PACKAGES = _keys()
_RNG = random.Random("test_messages nonces")
NONCES = {i: frost.commit(SUITE, KEY_PACKAGES[i], _RNG.randbytes) for i in (1, 2, 3)}
COMMITMENTS = tuple(NONCES[i][1] for i in (1, 2, 3))
SHARE = frost.sign(SUITE, EVENT_ID, COMMITMENTS, NONCES[1][0], KEY_PACKAGES[1])
PAYLOAD = ResultPayload('{"answer":"é"}', (("amount", "1000"), ("alt", "x")))

MESSAGES: dict[str, Message] = {
    "announce": Announce(JOB, PAYLOAD.digest(), PAYLOAD, COMMITMENTS[0]),
    "announce_error": Announce(JOB, b"\x00" * 31 + b"\x01", None, COMMITMENTS[1]),
    "give_up": GiveUp(JOB, COMMITMENTS[2]),
    "sign_request": SignRequest(JOB, 3, Target.RESULT, PAYLOAD.digest(), EVENT_ID, COMMITMENTS),
    "share": Share(JOB, 3, SHARE, COMMITMENTS[0]),
    "done": Done(JOB, Target.NO_QUORUM, b"\x00" * 31 + b"\x02", EVENT_ID, bytes(range(64)), (1, 2, 3)),
}


def _off_curve_x() -> int:
    """The smallest x for which x^3 + 7 has no square root mod p: no point has it."""
    x = 1
    while pow(x**3 + 7, (P - 1) // 2, P) == 1:
        x += 1
    return x


OFF_CURVE = "02" + _off_curve_x().to_bytes(32, "big").hex()
ON_CURVE = COMMITMENTS[0].hiding.hex()


def _body(name: str) -> dict[str, Any]:
    return json.loads(encode(MESSAGES[name]))  # type: ignore[no-any-return]


def _bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


# --- round trips and canonical bytes --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_round_trip(name: str) -> None:
    message = MESSAGES[name]
    data = encode(message)
    assert decode(data) == message
    assert encode(decode(data)) == data


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_canonical_bytes_are_compact_json_in_field_order(name: str) -> None:
    data = encode(MESSAGES[name])
    body = json.loads(data)
    assert data == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert list(body)[:2] == ["type", "job"] and body["type"] == message_type(MESSAGES[name])
    # the same message written another way (spaces, other key order) decodes to it and re-encodes canonically
    shuffled = dict(reversed(list(body.items())))
    assert encode(decode(json.dumps(shuffled, indent=1).encode())) == data


def test_give_up_bytes_exactly() -> None:
    expected = '{"type":"give_up","job":"' + JOB + '","commitment":"' + COMMITMENTS[2].hex() + '"}'
    assert encode(MESSAGES["give_up"]) == expected.encode()


def test_announce_payload_keeps_non_ascii_as_utf8() -> None:
    assert "é".encode() in encode(MESSAGES["announce"])


# --- bad input: tables ----------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], Any]


def _set(field: str, value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> dict[str, Any]:
        body[field] = value
        return body

    return mutate


def _drop(field: str) -> Mutation:
    def mutate(body: dict[str, Any]) -> dict[str, Any]:
        del body[field]
        return body

    return mutate


HEX_FIELDS = {  # message -> its fixed-size hex fields
    "announce": ("job", "digest", "commitment"),
    "give_up": ("job", "commitment"),
    "sign_request": ("job", "digest", "event_id"),
    "share": ("job", "share", "next_commitment"),
    "done": ("job", "digest", "event_id", "signature"),
}
WRONG_TYPES: tuple[Any, ...] = (None, 1, 1.5, True, [], {}, "")

BAD: list[tuple[str, str, Mutation]] = []
for _name, _fields in HEX_FIELDS.items():
    for _field in list(_body(_name)):
        BAD.append((_name, f"missing {_field}", _drop(_field)))
    BAD.append((_name, "unknown field", _set("extra", 1)))
    BAD.append((_name, "unknown field null", _set("sig", None)))
    for _field in _fields:
        _good = _body(_name)[_field]
        if _good.upper() != _good:  # (the no-quorum digest has no letters)
            BAD.append((_name, f"{_field} uppercase", _set(_field, _good.upper())))
        BAD += [
            (_name, f"{_field} uppercase A", _set(_field, "A" + _good[1:])),
            (_name, f"{_field} not hex", _set(_field, "zz" + _good[2:])),
            (_name, f"{_field} short", _set(_field, _good[:-2])),
            (_name, f"{_field} long", _set(_field, _good + "00")),
            (_name, f"{_field} 0x", _set(_field, "0x" + _good[2:])),
            (_name, f"{_field} spaces", _set(_field, " " + _good[1:])),
        ]
        BAD += [(_name, f"{_field} = {v!r}", _set(_field, v)) for v in WRONG_TYPES]
BAD += [
    ("announce", "off-curve hiding", _set("commitment", "0001" + OFF_CURVE[:66] + ON_CURVE)),
    ("announce", "off-curve binding", _set("commitment", "0001" + ON_CURVE + OFF_CURVE)),
    ("announce", "x >= p", _set("commitment", "0001" + "02" + "ff" * 32 + ON_CURVE)),
    ("announce", "uncompressed prefix", _set("commitment", "0001" + "04" + ON_CURVE[2:] + ON_CURVE)),
    ("announce", "identity (zero bytes)", _set("commitment", "0001" + "00" * 33 + ON_CURVE)),
    ("announce", "identifier 0", _set("commitment", "0000" + ON_CURVE + ON_CURVE)),
    ("give_up", "off-curve", _set("commitment", "0003" + ON_CURVE + OFF_CURVE)),
    ("share", "off-curve next", _set("next_commitment", "0001" + OFF_CURVE + ON_CURVE)),
    ("share", "scalar = n", _set("share", "0001" + frost.N.to_bytes(32, "big").hex())),
    ("share", "scalar > n", _set("share", "0001" + "ff" * 32)),
    ("share", "identifier 0", _set("share", "0000" + "11" * 32)),
    ("announce", "payload a list", _set("payload", [])),
    ("announce", "payload a string", _set("payload", "{}")),
    ("announce", "payload extra field", _set("payload", {"content": "", "tags": [], "x": 1})),
    ("announce", "payload missing tags", _set("payload", {"content": ""})),
    ("announce", "payload content int", _set("payload", {"content": 1, "tags": []})),
    ("announce", "payload tag not strings", _set("payload", {"content": "", "tags": [[1]]})),
    ("announce", "payload nested too deep", _set("payload", {"content": "", "tags": [[["x"]]]})),
    ("sign_request", "session negative", _set("session", -1)),
    ("sign_request", "session 2^31", _set("session", 2**31)),
    ("sign_request", "session bool", _set("session", True)),
    ("sign_request", "session float", _set("session", 1.0)),
    ("sign_request", "session string", _set("session", "1")),
    ("share", "session null", _set("session", None)),
    ("sign_request", "target unknown", _set("target", "results")),
    ("sign_request", "target uppercase", _set("target", "RESULT")),
    ("done", "target int", _set("target", 1)),
    ("sign_request", "commitments not a list", _set("commitments", COMMITMENTS[0].hex())),
    ("sign_request", "one commitment", _set("commitments", [COMMITMENTS[0].hex()])),
    ("sign_request", "commitment int", _set("commitments", [COMMITMENTS[0].hex(), 7])),
    ("sign_request", "commitment uppercase", _set("commitments", [c.hex().upper() for c in COMMITMENTS])),
    ("sign_request", "commitment off-curve", _set("commitments", [COMMITMENTS[0].hex(), "0002" + OFF_CURVE * 2])),
    ("done", "signers not a list", _set("signers", 1)),
    ("done", "one signer", _set("signers", [1])),
    ("done", "repeated signer", _set("signers", [1, 1, 2])),
    ("done", "signer 0", _set("signers", [0, 1])),
    ("done", "signer 65536", _set("signers", [1, 65536])),
    ("done", "signer bool", _set("signers", [True, 2])),
    ("done", "signer string", _set("signers", ["1", "2"])),
    ("announce", "type unknown", _set("type", "annonce")),
    ("announce", "type missing", _drop("type")),
    ("announce", "type int", _set("type", 1)),
    ("announce", "body a list", lambda body: list(body.items())),
    ("announce", "body a string", lambda body: json.dumps(body)),
    ("announce", "body null", lambda body: None),
]


@pytest.mark.parametrize(("name", "what", "mutate"), BAD, ids=[f"{n}: {w}" for n, w, _ in BAD])
def test_bad_field_is_refused(name: str, what: str, mutate: Mutation) -> None:
    data = _bytes(mutate(_body(name)))
    with pytest.raises((ValueError, InvalidContribution)):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b"null", b"1", b'"announce"', b"\xff\xfe", b'{"type":"done"', b"{}" * 2,
     b'{"type":"give_up","type":"give_up"}', b"[" * 30_000 + b"]" * 30_000],
    ids=["empty", "truncated", "array", "null", "number", "string", "not utf-8", "unterminated", "two objects",
         "duplicate key only", "deep nesting"],
)
def test_not_a_message_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(data)


def test_oversize_is_refused_before_parsing() -> None:
    # not even JSON: the size check must come first, so the error is about the size
    with pytest.raises(ValueError, match="exceeds"):
        decode(b"x" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(ValueError, match="exceeds"):
        decode(encode(MESSAGES["announce"]), max_bytes=100)


def test_payload_over_the_cap_is_refused() -> None:
    big = ResultPayload("x" * 70_000, ())
    data = encode(Announce(JOB, big.digest(), big, COMMITMENTS[0]))
    with pytest.raises(ValueError):
        decode(data)


def test_sign_request_with_more_signers_than_allowed_is_refused() -> None:
    with pytest.raises(ValueError):
        decode(encode(MESSAGES["sign_request"]), max_signers=2)


def test_invalid_point_names_no_signer_but_carries_the_identifier() -> None:
    """The decoder cannot know the sender; the frost parser names the identifier the bytes claim."""
    body = _body("give_up")
    body["commitment"] = "0003" + ON_CURVE + OFF_CURVE
    with pytest.raises(InvalidContribution) as caught:
        decode(_bytes(body))
    assert caught.value.signer == 3


# --- bad input: hypothesis ------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
HEXISH = st.text(alphabet="0123456789abcdefABCDEF x", min_size=0, max_size=140)


def _decode_or_refuse(data: bytes) -> None:
    try:
        message = decode(data)
    except (ValueError, InvalidContribution):
        return
    assert decode(encode(message)) == message  # whatever is accepted is a message with one encoding


@given(st.binary(max_size=600))
def test_random_bytes_only_refused(data: bytes) -> None:
    _decode_or_refuse(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(HEX_FIELDS)), st.data())
def test_random_field_values_only_refused(name: str, data: st.DataObject) -> None:
    body = _body(name)
    for field in sorted(body):
        if field != "type" and data.draw(st.booleans(), label=f"replace {field}"):
            body[field] = data.draw(JSON_VALUES | HEXISH, label=field)
    _decode_or_refuse(_bytes(body))


@given(st.sampled_from(sorted(MESSAGES)), st.data())
def test_mutated_encodings_only_refused(name: str, data: st.DataObject) -> None:
    encoded = bytearray(encode(MESSAGES[name]))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(encoded) - 1), label="at")
        encoded[at] = data.draw(st.integers(0, 255), label="byte")
    _decode_or_refuse(bytes(encoded))
