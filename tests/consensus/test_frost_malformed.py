"""Malformed input, as tables: each bad input gives ValueError (the caller's mistake) or InvalidContribution
(a named sender's), never another exception."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from consensus.frost import (
    SECP256K1,
    SECP256K1_TR,
    InvalidContribution,
    PublicKeyPackage,
    SecretShare,
    SignatureShare,
    SigningCommitments,
    aggregate,
    commit,
    parse_point,
    parse_scalar,
    sign,
    trusted_dealer_keygen,
    verify,
    verify_signature_share,
    vss_verify,
)
from consensus.frost.group import N
from tests.consensus.frost_support import new_group, round_one, round_two, seeded_rng

G = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
P = 2**256 - 2**32 - 977  # the field prime
OFF_CURVE = b"\x02" + (5).to_bytes(32, "big")  # x = 5: x^3 + 7 = 132 has no square root mod p
X_TOO_BIG = b"\x02" + P.to_bytes(32, "big")
IDENTITY_SEC1 = b"\x00" * 33  # the identity has no compressed encoding; SEC1 writes it as one zero byte

BAD_POINTS: list[tuple[str, object, type[Exception]]] = [
    ("off the curve", OFF_CURVE, InvalidContribution),
    ("x >= p", X_TOO_BIG, InvalidContribution),
    ("identity", IDENTITY_SEC1, InvalidContribution),
    ("prefix 04", b"\x04" + G[1:], InvalidContribution),
    ("prefix 06", b"\x06" + G[1:], InvalidContribution),
    ("uncompressed length", b"\x04" + bytes(64), ValueError),
    ("short", G[:32], ValueError),
    ("long", G + b"\x00", ValueError),
    ("empty", b"", ValueError),
    ("not bytes", G.hex(), ValueError),
    ("bytearray", bytearray(G), ValueError),
]


@pytest.mark.parametrize(("name", "data", "error"), BAD_POINTS, ids=[b[0] for b in BAD_POINTS])
def test_parse_point_rejects(name: str, data: object, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        parse_point(data, 7)  # type: ignore[arg-type]
    if error is InvalidContribution:
        assert caught.value.signer == 7  # type: ignore[attr-defined]


def test_parse_point_accepts_both_parities() -> None:
    assert parse_point(G, 1).format() == G
    assert parse_point(b"\x03" + G[1:], 1).format() == b"\x03" + G[1:]


BAD_SCALARS: list[tuple[str, object, type[Exception]]] = [
    ("n", N.to_bytes(32, "big"), InvalidContribution),
    ("n + 1", (N + 1).to_bytes(32, "big"), InvalidContribution),
    ("2^256 - 1", b"\xff" * 32, InvalidContribution),
    ("31 bytes", bytes(31), ValueError),
    ("33 bytes", bytes(33), ValueError),
    ("not bytes", 5, ValueError),
]


@pytest.mark.parametrize(("name", "data", "error"), BAD_SCALARS, ids=[b[0] for b in BAD_SCALARS])
def test_parse_scalar_rejects(name: str, data: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_scalar(data, 3)  # type: ignore[arg-type]


def test_parse_scalar_zero_only_when_allowed() -> None:
    assert parse_scalar(bytes(32), 3) == 0
    assert parse_scalar((N - 1).to_bytes(32, "big"), 3) == N - 1
    with pytest.raises(InvalidContribution):
        parse_scalar(bytes(32), 3, nonzero=True)


GOOD_COMMITMENTS = (1).to_bytes(2, "big") + G + b"\x03" + G[1:]
BAD_COMMITMENTS: list[tuple[str, object, type[Exception]]] = [
    ("identifier 0", bytes(2) + G + G, ValueError),
    ("hiding off the curve", b"\x00\x05" + OFF_CURVE + G, InvalidContribution),
    ("binding is the identity", b"\x00\x05" + G + IDENTITY_SEC1, InvalidContribution),
    ("binding x >= p", b"\x00\x05" + G + X_TOO_BIG, InvalidContribution),
    ("truncated", GOOD_COMMITMENTS[:-1], ValueError),
    ("trailing byte", GOOD_COMMITMENTS + b"\x00", ValueError),
    ("str", GOOD_COMMITMENTS.hex(), ValueError),
]


@pytest.mark.parametrize(("name", "data", "error"), BAD_COMMITMENTS, ids=[b[0] for b in BAD_COMMITMENTS])
def test_commitments_from_bytes_rejects(name: str, data: object, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        SigningCommitments.from_bytes(data)  # type: ignore[arg-type]
    if error is InvalidContribution:
        assert caught.value.signer == 5  # type: ignore[attr-defined]


BAD_HEX = ["", "zz", GOOD_COMMITMENTS.hex().upper(), " " + GOOD_COMMITMENTS.hex(), GOOD_COMMITMENTS.hex()[:-1],
           "0x" + GOOD_COMMITMENTS.hex()[2:], None]


@pytest.mark.parametrize("text", BAD_HEX)
def test_from_hex_is_strict(text: object) -> None:
    with pytest.raises(ValueError):
        SigningCommitments.from_hex(text)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SignatureShare.from_hex(text)  # type: ignore[arg-type]


BAD_SHARES: list[tuple[str, object, type[Exception]]] = [
    ("z = n", b"\x00\x02" + N.to_bytes(32, "big"), InvalidContribution),
    ("z = 2^256 - 1", b"\x00\x02" + b"\xff" * 32, InvalidContribution),
    ("identifier 0", bytes(2) + bytes(32), ValueError),
    ("truncated", b"\x00\x02" + bytes(31), ValueError),
    ("long", b"\x00\x02" + bytes(33), ValueError),
]


@pytest.mark.parametrize(("name", "data", "error"), BAD_SHARES, ids=[b[0] for b in BAD_SHARES])
def test_share_from_bytes_rejects(name: str, data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        SignatureShare.from_bytes(data)
    if error is InvalidContribution:
        assert caught.value.signer == 2  # type: ignore[attr-defined]


BAD_OBJECTS: list[tuple[str, Callable[[], object], type[Exception]]] = [
    ("commitments id 0", lambda: SigningCommitments(0, G, G), ValueError),
    ("commitments id 65536", lambda: SigningCommitments(65536, G, G), ValueError),
    ("commitments id bool", lambda: SigningCommitments(True, G, G), ValueError),
    ("commitments off curve", lambda: SigningCommitments(4, G, OFF_CURVE), InvalidContribution),
    ("share negative", lambda: SignatureShare(4, -1), ValueError),
    ("share z = n", lambda: SignatureShare(4, N), InvalidContribution),
    ("share z float", lambda: SignatureShare(4, 1.0), ValueError),  # type: ignore[arg-type]
    ("secret share zero", lambda: SecretShare(1, 0, (G, G)), ValueError),
    ("secret share >= n", lambda: SecretShare(1, N, (G, G)), ValueError),
    ("secret share short vss", lambda: SecretShare(1, 5, (G,)), ValueError),
]


@pytest.mark.parametrize(("name", "make", "error"), BAD_OBJECTS, ids=[b[0] for b in BAD_OBJECTS])
def test_objects_validate_when_built(name: str, make: Callable[[], object], error: type[Exception]) -> None:
    with pytest.raises(error):
        make()


KEYGEN_ERRORS: list[tuple[str, dict[str, Any]]] = [
    ("t > n", {"min_signers": 4, "max_signers": 3}),
    ("t = 1", {"min_signers": 1, "max_signers": 3}),
    ("t = 0", {"min_signers": 0, "max_signers": 3}),
    ("n > 65535", {"min_signers": 2, "max_signers": 65536}),
    ("t bool", {"min_signers": True, "max_signers": 3}),
    ("t str", {"min_signers": "2", "max_signers": 3}),
    ("secret zero", {"min_signers": 2, "max_signers": 3, "secret_key": bytes(32)}),
    ("secret = n", {"min_signers": 2, "max_signers": 3, "secret_key": N.to_bytes(32, "big")}),
    ("secret short", {"min_signers": 2, "max_signers": 3, "secret_key": bytes(31)}),
    ("secret hex", {"min_signers": 2, "max_signers": 3, "secret_key": "01" * 32}),
    ("rng too short", {"min_signers": 2, "max_signers": 3, "rng": lambda k: bytes(k - 1)}),
]


@pytest.mark.parametrize(("name", "kwargs"), KEYGEN_ERRORS, ids=[k[0] for k in KEYGEN_ERRORS])
def test_keygen_rejects(name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        trusted_dealer_keygen(SECP256K1_TR, **kwargs)


def test_vss_verify_blames_the_dealer_for_a_wrong_share() -> None:
    shares, _ = trusted_dealer_keygen(SECP256K1_TR, 2, 3, rng=seeded_rng(1))
    bad = replace(shares[2], signing_share=shares[2].signing_share % (N - 1) + 1)
    with pytest.raises(InvalidContribution) as caught:
        vss_verify(SECP256K1_TR, bad)
    assert caught.value.signer is None
    with pytest.raises(InvalidContribution):
        vss_verify(SECP256K1_TR, replace(shares[2], vss_commitment=(shares[2].vss_commitment[0], OFF_CURVE)))


@pytest.fixture(scope="module")
def two_of_three() -> Any:
    group = new_group(SECP256K1_TR, 2, 3, seed=11)
    return group


def fresh(group: Any, signers: list[int]) -> Any:
    return round_one(group, signers, b"m" * 32, seed=sum(signers))


def sign_cases(group: Any) -> list[tuple[str, Callable[[], object], type[Exception]]]:
    def call(mutate: Callable[[Any], tuple]) -> Callable[[], object]:
        def run() -> object:
            r = fresh(group, [1, 3])
            message, commitments, nonces, kp = mutate(r)
            return sign(SECP256K1_TR, message, commitments, nonces, kp)
        return run

    kp1 = group.key_packages[1]
    other = fresh(group, [1, 2])  # a second, unrelated commitment of member 1
    return [
        ("own commitment missing", call(lambda r: (r.message, r.commitments[1:], r.nonces[1], kp1)), ValueError),
        ("own commitment replaced",
         call(lambda r: (r.message, [other.commitments[0], r.commitments[1]], r.nonces[1], kp1)), ValueError),
        ("duplicate identifier",
         call(lambda r: (r.message, [r.commitments[0], r.commitments[1], r.commitments[1]], r.nonces[1], kp1)),
         ValueError),
        ("fewer than t", call(lambda r: (r.message, r.commitments[:1], r.nonces[1], kp1)), ValueError),
        ("message not bytes", call(lambda r: (r.message.hex(), r.commitments, r.nonces[1], kp1)), ValueError),
        ("commitments as bytes",
         call(lambda r: (r.message, [c.to_bytes() for c in r.commitments], r.nonces[1], kp1)), ValueError),
        ("commitments a bytes string", call(lambda r: (r.message, b"abc", r.nonces[1], kp1)), ValueError),
        ("commitments None", call(lambda r: (r.message, None, r.nonces[1], kp1)), ValueError),
        ("nonces of another member", call(lambda r: (r.message, r.commitments, r.nonces[3], kp1)), ValueError),
        ("key package of another member",
         call(lambda r: (r.message, r.commitments, r.nonces[1], group.key_packages[3])), ValueError),
        ("no nonces", call(lambda r: (r.message, r.commitments, None, kp1)), ValueError),
    ]


SIGN_GROUP = new_group(SECP256K1_TR, 2, 3, seed=12)
SIGN_CASES = sign_cases(SIGN_GROUP)


@pytest.mark.parametrize(("name", "run", "error"), SIGN_CASES, ids=[c[0] for c in SIGN_CASES])
def test_sign_rejects(name: str, run: Callable[[], object], error: type[Exception]) -> None:
    with pytest.raises(error):
        run()


def test_nonces_sign_once_and_only_in_memory(two_of_three: Any) -> None:
    import copy
    import pickle

    r = fresh(two_of_three, [1, 3])
    sign(SECP256K1_TR, r.message, r.commitments, r.nonces[1], two_of_three.key_packages[1])
    assert r.nonces[1].used
    with pytest.raises(ValueError, match="already used"):
        sign(SECP256K1_TR, r.message, r.commitments, r.nonces[1], two_of_three.key_packages[1])
    with pytest.raises(ValueError, match="already used"):  # not even for another message
        sign(SECP256K1_TR, b"other", r.commitments, r.nonces[1], two_of_three.key_packages[1])
    for leak in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            leak(r.nonces[3])


def test_failed_checks_keep_the_nonces(two_of_three: Any) -> None:
    """A caller's mistake found before the secrets are touched does not burn the nonces."""
    r = fresh(two_of_three, [1, 3])
    with pytest.raises(ValueError):
        sign(SECP256K1_TR, r.message, r.commitments[1:], r.nonces[1], two_of_three.key_packages[1])
    assert not r.nonces[1].used
    sign(SECP256K1_TR, r.message, r.commitments, r.nonces[1], two_of_three.key_packages[1])


def test_aggregate_and_share_check_reject_caller_mistakes(two_of_three: Any) -> None:
    group = two_of_three
    r = fresh(group, [1, 3])
    shares = round_two(group, r)
    other = fresh(group, [1, 2])
    cases: list[tuple[str, Callable[[], object]]] = [
        ("a share missing", lambda: aggregate(SECP256K1_TR, r.message, r.commitments, shares[:1], group.public)),
        ("a share twice", lambda: aggregate(SECP256K1_TR, r.message, r.commitments, shares + shares[:1],
                                            group.public)),
        ("share of a non-signer", lambda: aggregate(SECP256K1_TR, r.message, r.commitments,
                                                    [shares[0], SignatureShare(2, 5)], group.public)),
        ("shares as bytes", lambda: aggregate(SECP256K1_TR, r.message, r.commitments,
                                              [s.to_bytes() for s in shares], group.public)),  # type: ignore[misc]
        ("commitment of a non-member", lambda: aggregate(SECP256K1_TR, r.message,
                                                         [*r.commitments, SigningCommitments(9, G, G)],
                                                         [*shares, SignatureShare(9, 1)], group.public)),
        ("no key package", lambda: aggregate(SECP256K1_TR, r.message, r.commitments, shares, None)),  # type: ignore[arg-type]
        ("share check, signer not in list", lambda: verify_signature_share(
            SECP256K1_TR, SignatureShare(2, 1), r.message, r.commitments, group.public)),
        ("share check, list of another round", lambda: verify_signature_share(
            SECP256K1_TR, shares[0], r.message, other.commitments[1:], group.public)),
        ("share check, not a share", lambda: verify_signature_share(SECP256K1_TR, shares[0].to_bytes(), r.message,  # type: ignore[arg-type]
                                                                     r.commitments, group.public)),
    ]
    for name, run in cases:
        with pytest.raises(ValueError):
            run()
            pytest.fail(f"no error for: {name}")


def test_verify_rejects_without_raising() -> None:
    message = b"m" * 32
    key = G[1:]
    for signature in (b"", bytes(63), bytes(65), b"\xff" * 64, (P.to_bytes(32, "big") + bytes(32)), "00" * 64):
        assert verify(SECP256K1_TR, message, signature, key) is False  # type: ignore[arg-type]
    for signature in (bytes(64), bytes(66), OFF_CURVE + bytes(32), G + N.to_bytes(32, "big")):
        assert verify(SECP256K1, message, signature, G) is False
    assert verify(SECP256K1_TR, message, bytes(64), OFF_CURVE[1:]) is False
    assert verify(SECP256K1, message, G + bytes(32), OFF_CURVE) is False
    for key_bad in (b"", G[:31], G + b"\x00", key.hex()):
        with pytest.raises(ValueError):
            verify(SECP256K1_TR, message, bytes(64), key_bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        verify(SECP256K1, message, bytes(65), key)  # the RFC suite needs the 33-byte key
    with pytest.raises(ValueError):
        verify(SECP256K1_TR, message.hex(), bytes(64), key)  # type: ignore[arg-type]


GOOD_DICT_GROUP = new_group(SECP256K1_TR, 2, 3, seed=4)


def mutated_dicts() -> list[tuple[str, dict[str, Any], type[Exception]]]:
    good = GOOD_DICT_GROUP.public.to_dict()
    vs = good["verifying_shares"]
    return [
        ("missing key", {k: v for k, v in good.items() if k != "vss_commitment"}, ValueError),
        ("extra key", {**good, "note": "x"}, ValueError),
        ("uppercase hex", {**good, "group_public_key": good["group_public_key"].upper()}, ValueError),
        ("short hex", {**good, "group_public_key": good["group_public_key"][:-2]}, ValueError),
        ("group key not vss[0]", {**good, "group_public_key": G.hex()}, ValueError),
        ("identifier '01'", {**good, "verifying_shares": {"01": vs["1"], "2": vs["2"], "3": vs["3"]}}, ValueError),
        ("identifier '0'", {**good, "verifying_shares": {"0": vs["1"], "2": vs["2"], "3": vs["3"]}}, ValueError),
        ("identifier '65536'", {**good, "verifying_shares": {"65536": vs["1"], "2": vs["2"]}}, ValueError),
        ("verifying share off curve", {**good, "verifying_shares": {**vs, "2": OFF_CURVE.hex()}},
         InvalidContribution),
        ("vss point off curve", {**good, "vss_commitment": [good["vss_commitment"][0], OFF_CURVE.hex()]},
         InvalidContribution),
        ("t > n", {**good, "verifying_shares": {"1": vs["1"]}}, ValueError),
        ("t as str", {**good, "min_signers": "2"}, ValueError),
        ("vss too long", {**good, "vss_commitment": [*good["vss_commitment"], G.hex()]}, ValueError),
        ("shares a list", {**good, "verifying_shares": list(vs.values())}, ValueError),
        ("not a dict", [], ValueError),  # type: ignore[list-item]
    ]


@pytest.mark.parametrize(("name", "data", "error"), mutated_dicts(), ids=[m[0] for m in mutated_dicts()])
def test_public_key_package_from_dict_is_strict(name: str, data: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        PublicKeyPackage.from_dict(data)


def test_commit_rejects_bad_rng_and_types(two_of_three: Any) -> None:
    kp = two_of_three.key_packages[1]
    for rng in (lambda k: bytes(k + 1), lambda k: "x" * k, lambda k: bytearray(k)):
        with pytest.raises(ValueError):
            commit(SECP256K1_TR, kp, rng)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        commit(SECP256K1, None)  # type: ignore[arg-type]
