"""Published vectors: every intermediate value of RFC 9591 appendix E (secp256k1) and the ZcashFoundation vectors
for both suites, and all BIP-340 rows through ``verify``. Read from ../shared/vectors, never copied."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

import pytest

from consensus.frost import (
    SECP256K1,
    SECP256K1_TR,
    Ciphersuite,
    aggregate,
    commit,
    sign,
    trusted_dealer_keygen,
    verify,
    verify_signature_share,
    vss_verify,
)
from consensus.frost.group import scalar_bytes
from consensus.frost.signing import binding_factor_prefix, prepare
from tests.conftest import VECTORS

SIGNING_VECTORS = [
    ("rfc9591/frost-secp256k1-sha256.json", SECP256K1),
    ("zf-frost-secp256k1/vectors.json", SECP256K1),
    ("zf-frost-secp256k1/vectors-big-identifier.json", SECP256K1),
    ("zf-frost-secp256k1-tr/vectors.json", SECP256K1_TR),
]


class ScriptedRng:
    """An rng that hands out given 32-byte strings in order, and fails if asked for more."""

    def __init__(self, *draws: bytes) -> None:
        self._draws: Iterator[bytes] = iter(draws)

    def __call__(self, length: int) -> bytes:
        assert length == 32
        return next(self._draws)


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


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


@pytest.mark.parametrize(("name", "suite"), SIGNING_VECTORS)
def test_dealer_shares_and_group_key(name: str, suite: Ciphersuite) -> None:
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


@pytest.mark.parametrize(("name", "suite"), SIGNING_VECTORS)
def test_signing_intermediates_and_signature(name: str, suite: Ciphersuite) -> None:
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
    vector = load("zf-frost-secp256k1-tr/vectors.json")
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

