"""Vectors: every intermediate value of RFC 9591 appendix E (secp256k1) and the ZcashFoundation vectors for both
suites (read from ../shared/vectors, never copied), all BIP-340 rows through ``verify``, and our own vectors for
what those miss: an odd-y group key and signer sets that are not the lowest identifiers.

Our own vectors (``vectors/``, same layout as the ZF files) were produced by this implementation from fixed
randomness, so on their own they only pin behaviour; what makes them evidence is checked here independently:
their signatures verify with coincurve and, as Nostr events, with nostr-sdk; every share satisfies
z_i*G = R_i + c*lambda_i*Y_i recomputed with coincurve alone; and the odd-key case is also derived from the
published ZF vector (negating the key must give the very same signature).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coincurve import PublicKey, PublicKeyXOnly

from consensus.frost import (
    SECP256K1,
    SECP256K1_TR,
    Ciphersuite,
    SigningCommitments,
    SigningNonces,
    aggregate,
    commit,
    sign,
    trusted_dealer_keygen,
    verify,
    verify_signature_share,
    vss_verify,
)
from consensus.frost.context import binding_factor_prefix, prepare
from consensus.frost.group import N, scalar_bytes
from tests.conftest import VECTORS
from tests.consensus.frost_support import event_id, nostr_accepts, unsigned_event

OWN = Path(__file__).resolve().parent / "vectors"
PUBLISHED_VECTORS = [
    (VECTORS / "rfc9591/frost-secp256k1-sha256.json", SECP256K1),
    (VECTORS / "zf-frost-secp256k1/vectors.json", SECP256K1),
    (VECTORS / "zf-frost-secp256k1/vectors-big-identifier.json", SECP256K1),
    (VECTORS / "zf-frost-secp256k1-tr/vectors.json", SECP256K1_TR),
]
OWN_VECTORS = [
    (OWN / "frost-secp256k1-tr-odd-key-3of7.json", SECP256K1_TR),
    (OWN / "frost-secp256k1-tr-even-key-2of5.json", SECP256K1_TR),
    (OWN / "frost-secp256k1-odd-key-3of5.json", SECP256K1),
]
SIGNING_VECTORS = PUBLISHED_VECTORS + OWN_VECTORS
VECTOR_IDS = [f"{path.parent.name}/{path.name}" for path, _ in SIGNING_VECTORS]


class ScriptedRng:
    """An rng that hands out given 32-byte strings in order, and fails if asked for more."""

    def __init__(self, *draws: bytes) -> None:
        self._draws: Iterator[bytes] = iter(draws)

    def __call__(self, length: int) -> bytes:
        assert length == 32
        return next(self._draws)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def group_key(vector: dict[str, Any]) -> bytes:
    inputs = vector["inputs"]
    return bytes.fromhex(inputs.get("group_public_key") or inputs["verifying_key_key"])


def dealer(vector: dict[str, Any], suite: Ciphersuite) -> tuple[dict, Any]:
    """Re-run the dealer with the vector's secret and polynomial coefficients."""
    inputs = vector["inputs"]
    coefficients = [bytes.fromhex(c) for c in inputs["share_polynomial_coefficients"]]
    return trusted_dealer_keygen(
        suite,
        int(vector["config"]["MIN_PARTICIPANTS"]),
        int(vector["config"]["MAX_PARTICIPANTS"]),
        secret_key=bytes.fromhex(inputs["group_secret_key"]),
        rng=ScriptedRng(*coefficients),
    )


@pytest.mark.parametrize(("name", "suite"), SIGNING_VECTORS, ids=VECTOR_IDS)
def test_dealer_shares_and_group_key(name: Path, suite: Ciphersuite) -> None:
    vector = load(name)
    shares, public = dealer(vector, suite)
    assert public.group_public_key == group_key(vector)
    listed = vector["inputs"]["participant_shares"]
    assert len(listed) == public.max_signers
    for entry in listed:
        share = shares[entry["identifier"]]
        assert scalar_bytes(share.signing_share).hex() == entry["participant_share"]
        assert vss_verify(suite, share).verifying_share == public.verifying_share(entry["identifier"])
    public.verify_vss()


@pytest.mark.parametrize(("name", "suite"), SIGNING_VECTORS, ids=VECTOR_IDS)
def test_signing_intermediates_and_signature(name: Path, suite: Ciphersuite) -> None:
    vector = load(name)
    shares, public = dealer(vector, suite)
    message = bytes.fromhex(vector["inputs"]["message"])
    signers = vector["inputs"]["participant_list"]
    round_one = {o["identifier"]: o for o in vector["round_one_outputs"]["outputs"]}
    assert sorted(round_one) == sorted(signers)

    key_packages = {i: vss_verify(suite, shares[i]) for i in signers}
    nonces, commitments = {}, []
    for i in signers:
        out = round_one[i]
        hiding_random = bytes.fromhex(out["hiding_nonce_randomness"])
        binding_random = bytes.fromhex(out["binding_nonce_randomness"])
        secret = scalar_bytes(key_packages[i].signing_share)
        # nonce_generate, the intermediate step of commit
        assert scalar_bytes(suite.h3(hiding_random + secret)).hex() == out["hiding_nonce"]
        assert scalar_bytes(suite.h3(binding_random + secret)).hex() == out["binding_nonce"]
        nonces[i], made = commit(suite, key_packages[i], rng=ScriptedRng(hiding_random, binding_random))
        assert made.hiding.hex() == out["hiding_nonce_commitment"]
        assert made.binding.hex() == out["binding_nonce_commitment"]
        commitments.append(made)

    prefix = binding_factor_prefix(suite, message, commitments, public.group_public_key)
    ordered, _, rhos = prepare(suite, message, commitments, public.group_public_key, public.min_signers)
    for c, rho in zip(ordered, rhos):
        out = round_one[c.identifier]
        binding_input = prefix + scalar_bytes(c.identifier)
        assert binding_input.hex() == out["binding_factor_input"]
        assert scalar_bytes(suite.h1(binding_input)).hex() == out["binding_factor"]
        assert scalar_bytes(rho).hex() == out["binding_factor"]

    expected_shares = {o["identifier"]: o["sig_share"] for o in vector["round_two_outputs"]["outputs"]}
    signature_shares = [sign(suite, message, commitments, nonces[i], key_packages[i]) for i in signers]
    for share in signature_shares:
        assert scalar_bytes(share.z).hex() == expected_shares[share.identifier]
        verify_signature_share(suite, share, message, commitments, public)

    signature = aggregate(suite, message, commitments, signature_shares, public)
    assert signature.hex() == vector["final_output"]["sig"]
    assert len(signature) == suite.signature_length
    assert verify(suite, message, signature, public.group_public_key)
    assert not verify(suite, message + b"!", signature, public.group_public_key)


def test_tr_vector_is_untweaked_bip340() -> None:
    """The ZF TR signature verifies under the plain x-only group key: no Taproot tweak anywhere."""
    vector = load(VECTORS / "zf-frost-secp256k1-tr/vectors.json")
    signature = bytes.fromhex(vector["final_output"]["sig"])
    assert verify(SECP256K1_TR, b"test", signature, group_key(vector)[1:])


def bip340_rows() -> list[dict[str, str]]:
    with (VECTORS / "bip340" / "test-vectors.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_all_bip340_rows_present() -> None:
    assert len(bip340_rows()) == 19


@pytest.mark.parametrize("row", bip340_rows(), ids=lambda r: f"bip340-{r['index']}")
def test_bip340_row(row: dict[str, str]) -> None:
    expected = row["verification result"] == "TRUE"
    key = bytes.fromhex(row["public key"])
    message = bytes.fromhex(row["message"])
    signature = bytes.fromhex(row["signature"])
    assert verify(SECP256K1_TR, message, signature, key) is expected
    if row["secret key"]:
        # The signing rows also hold for the key given as 33 bytes with either parity prefix.
        for prefix in (b"\x02", b"\x03"):
            assert verify(SECP256K1_TR, message, signature, prefix + key) is expected



def coincurve_share_holds(vector: dict[str, Any], suite: Ciphersuite, identifier: int) -> bool:
    """z_i*G == R_i + c*lambda_i*Y_i for one share of a vector, recomputed with coincurve alone (and the
    BIP-340 negations: R_i when R has odd y, Y_i when the group key has odd y)."""
    key = group_key(vector)
    message = bytes.fromhex(vector["inputs"]["message"])
    outs = {o["identifier"]: o for o in vector["round_one_outputs"]["outputs"]}
    terms = {i: PublicKey.combine_keys([
        PublicKey(bytes.fromhex(o["hiding_nonce_commitment"])),
        PublicKey(bytes.fromhex(o["binding_nonce_commitment"])).multiply(bytes.fromhex(o["binding_factor"])),
    ]) for i, o in outs.items()}
    r = PublicKey.combine_keys(list(terms.values())).format()
    if suite.bip340:
        tag = hashlib.sha256(b"BIP0340/challenge").digest()
        digest = hashlib.sha256(tag + tag + r[1:] + key[1:] + message).digest()
        challenge = int.from_bytes(digest, "big") % N
    else:
        challenge = suite.h2(r + key + message)
    others = [j for j in outs if j != identifier]
    lam = math.prod(others) * pow(math.prod(j - identifier for j in others), -1, N) % N
    share = next(int(s["participant_share"], 16) for s in vector["inputs"]["participant_shares"]
                 if s["identifier"] == identifier)
    y_i = PublicKey.from_secret(scalar_bytes(share))
    sign_r = -1 if suite.bip340 and r[0] == 3 else 1
    sign_y = -1 if suite.bip340 and key[0] == 3 else 1
    z = int(next(o["sig_share"] for o in vector["round_two_outputs"]["outputs"] if o["identifier"] == identifier), 16)
    lhs = PublicKey.from_secret(scalar_bytes(sign_r * z % N))
    rhs = PublicKey.combine_keys([terms[identifier], y_i.multiply(scalar_bytes(sign_r * sign_y * challenge * lam % N))])
    return lhs.format() == rhs.format()


@pytest.mark.parametrize(("name", "suite"), SIGNING_VECTORS, ids=VECTOR_IDS)
def test_every_share_satisfies_the_share_equation(name: Path, suite: Ciphersuite) -> None:
    vector = load(name)
    for identifier in vector["inputs"]["participant_list"]:
        assert coincurve_share_holds(vector, suite, identifier)


def test_own_vectors_cover_what_the_published_ones_miss() -> None:
    vectors = [load(path) for path, _ in OWN_VECTORS]
    assert any(group_key(v)[0] == 3 for v, (_, s) in zip(vectors, OWN_VECTORS) if s.bip340)
    for vector in vectors:
        signers = vector["inputs"]["participant_list"]
        assert signers != list(range(1, len(signers) + 1))


@pytest.mark.parametrize(("name", "suite"), [v for v in OWN_VECTORS if v[1].bip340],
                         ids=[p.name for p, s in OWN_VECTORS if s.bip340])
def test_own_bip340_vectors_are_nostr_events(name: Path, suite: Ciphersuite) -> None:
    vector = load(name)
    xonly = group_key(vector)[1:]
    described = vector["inputs"]["nostr_event"]
    assert described["kind"] == 1
    event = unsigned_event(xonly, described["content"], described["created_at"])
    assert event_id(event).hex() == vector["inputs"]["message"]
    signature = bytes.fromhex(vector["final_output"]["sig"])
    assert PublicKeyXOnly(xonly).verify(signature, event_id(event))
    assert nostr_accepts(event, signature)


def test_odd_key_gives_the_published_tr_signature() -> None:
    """Split n - s (odd y, same x-only key) with the negated polynomial: every share is negated, and the ZF
    crate negates them back when signing, so the published nonces must give the published shares and signature."""
    vector = load(VECTORS / "zf-frost-secp256k1-tr/vectors.json")
    inputs = vector["inputs"]
    secret = N - int(inputs["group_secret_key"], 16)
    coefficients = [scalar_bytes(N - int(c, 16)) for c in inputs["share_polynomial_coefficients"]]
    shares, public = trusted_dealer_keygen(SECP256K1_TR, 2, 3, secret_key=scalar_bytes(secret),
                                           rng=ScriptedRng(*coefficients))
    assert public.group_public_key == b"\x03" + group_key(vector)[1:]
    message = bytes.fromhex(inputs["message"])
    commitments, nonces = [], {}
    for out in vector["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        made = SigningCommitments(i, bytes.fromhex(out["hiding_nonce_commitment"]),
                                  bytes.fromhex(out["binding_nonce_commitment"]))
        nonces[i] = SigningNonces(int(out["hiding_nonce"], 16), int(out["binding_nonce"], 16), made)
        commitments.append(made)
    expected = {o["identifier"]: o["sig_share"] for o in vector["round_two_outputs"]["outputs"]}
    signature_shares = []
    for i in inputs["participant_list"]:
        key_package = vss_verify(SECP256K1_TR, shares[i])
        assert key_package.signing_share == N - int(inputs["participant_shares"][i - 1]["participant_share"], 16)
        share = sign(SECP256K1_TR, message, commitments, nonces[i], key_package)
        assert scalar_bytes(share.z).hex() == expected[i]
        verify_signature_share(SECP256K1_TR, share, message, commitments, public)
        signature_shares.append(share)
    signature = aggregate(SECP256K1_TR, message, commitments, signature_shares, public)
    assert signature.hex() == vector["final_output"]["sig"]
    assert verify(SECP256K1_TR, message, signature, public.group_public_key)
