"""Keys and serialization: splitting an existing nsec keeps its npub, VSS catches bad shares, secrets stay out
of reprs and errors, and every public object round-trips through bytes, hex and JSON."""

from __future__ import annotations

import copy
import json
import pickle
from dataclasses import replace

import nostr_sdk
import pytest
from coincurve import PrivateKey

from consensus.frost import (
    SECP256K1_TR,
    InvalidContribution,
    KeyPackage,
    PublicKeyPackage,
    SignatureShare,
    SigningCommitments,
    trusted_dealer_keygen,
    vss_verify,
)
from consensus.frost.group import N, scalar_bytes
from tests.consensus.frost_support import (
    event_id,
    new_group,
    nostr_accepts,
    round_one,
    round_two,
    seeded_rng,
    sign_all,
    unsigned_event,
)


def nsec_with_parity(odd: bool, seed: int) -> bytes:
    rng = seeded_rng(seed)
    while True:
        secret = rng(32)
        if 0 < int.from_bytes(secret, "big") < N and (PrivateKey(secret).public_key.format()[0] == 3) == odd:
            return secret


@pytest.mark.parametrize("odd", [False, True], ids=["even-y", "odd-y"])
def test_split_keeps_the_npub_and_signs_for_it(odd: bool) -> None:
    secret = nsec_with_parity(odd, seed=7 + odd)
    keys = nostr_sdk.Keys(nostr_sdk.SecretKey.parse(secret.hex()))
    group = new_group(SECP256K1_TR, 3, 5, seed=3, secret_key=secret)
    assert group.public.xonly_public_key.hex() == keys.public_key().to_hex()
    assert group.public.group_public_key == PrivateKey(secret).public_key.format()
    group.public.verify_vss()
    event = unsigned_event(group.public.xonly_public_key, "signed by the federation")
    signature = sign_all(group, [2, 4, 5], event_id(event), seed=4)
    assert nostr_accepts(event, signature)


def test_new_key_shape() -> None:
    shares, public = trusted_dealer_keygen(SECP256K1_TR, 4, 9)
    assert sorted(shares) == list(range(1, 10)) == list(public.identifiers)
    assert (public.min_signers, public.max_signers) == (4, 9)
    assert public.vss_commitment[0] == public.group_public_key and len(public.vss_commitment) == 4
    assert public.xonly_public_key == public.group_public_key[1:]
    for i, share in shares.items():
        key_package = vss_verify(SECP256K1_TR, share)
        assert key_package.verifying_share == public.verifying_share(i)
        assert (key_package.group_public_key, key_package.min_signers) == (public.group_public_key, 4)
    public.verify_vss()
    with pytest.raises(ValueError):
        public.verifying_share(10)


def test_verify_vss_catches_a_swapped_verifying_share() -> None:
    _, public = trusted_dealer_keygen(SECP256K1_TR, 2, 3, rng=seeded_rng(2))
    swapped = dict(public.verifying_shares)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    bad = replace(public, verifying_shares=tuple(swapped.items()))
    with pytest.raises(InvalidContribution, match="member 1"):
        bad.verify_vss()


def test_key_package_checks_its_verifying_share() -> None:
    shares, public = trusted_dealer_keygen(SECP256K1_TR, 2, 3, rng=seeded_rng(3))
    key_package = vss_verify(SECP256K1_TR, shares[1])
    with pytest.raises(ValueError) as caught:
        replace(key_package, verifying_share=public.verifying_share(2))
    assert str(key_package.signing_share) not in str(caught.value)


def secret_forms(value: int) -> list[str]:
    return [str(value), hex(value)[2:], scalar_bytes(value).hex(), repr(scalar_bytes(value))]


def test_secrets_stay_out_of_reprs() -> None:
    group = new_group(SECP256K1_TR, 2, 3, seed=5)
    shares, _ = trusted_dealer_keygen(SECP256K1_TR, 2, 3, rng=seeded_rng(5))
    run = round_one(group, [1, 2], b"m" * 32, seed=6)
    nonces = run.nonces[1]
    hiding, binding = nonces._hiding, nonces._binding  # white-box: the values the repr must not show
    shown = [repr(shares[1]), str(shares[1]), repr(group.key_packages[1]), repr(nonces), str(nonces)]
    for text in shown:
        for value in (shares[1].signing_share, group.key_packages[1].signing_share, hiding, binding):
            for form in secret_forms(value):  # type: ignore[arg-type]
                assert form not in text
    assert "identifier=1" in repr(nonces)


def test_wire_round_trips() -> None:
    group = new_group(SECP256K1_TR, 2, 3, seed=6)
    run = round_one(group, [1, 3], b"m" * 32, seed=7)
    for commitments in run.commitments:
        assert len(commitments.to_bytes()) == 68
        assert SigningCommitments.from_bytes(commitments.to_bytes()) == commitments
        assert SigningCommitments.from_hex(commitments.hex()) == commitments
    for share in round_two(group, run):
        assert len(share.to_bytes()) == 34
        assert SignatureShare.from_bytes(share.to_bytes()) == share
        assert SignatureShare.from_hex(share.hex()) == share
    big = SigningCommitments(65535, run.commitments[0].hiding, run.commitments[0].binding)
    assert big.to_bytes()[:2] == b"\xff\xff" and SigningCommitments.from_bytes(big.to_bytes()) == big
    assert SignatureShare.from_bytes(SignatureShare(65535, N - 1).to_bytes()).z == N - 1


def test_public_key_package_json_round_trip() -> None:
    group = new_group(SECP256K1_TR, 3, 12, seed=8)
    text = json.dumps(group.public.to_dict())
    back = PublicKeyPackage.from_dict(json.loads(text))
    assert back == group.public
    assert back.verifying_share(12) == group.public.verifying_share(12)
    assert sorted(json.loads(text)["verifying_shares"], key=int) == [str(i) for i in range(1, 13)]


def test_key_package_rejects_bad_fields() -> None:
    group = new_group(SECP256K1_TR, 2, 3, seed=9)
    kp = group.key_packages[1]
    for changes in ({"min_signers": 1}, {"min_signers": "2"}, {"identifier": 0}, {"signing_share": N},
                    {"group_public_key": kp.group_public_key[:32]}, {"verifying_share": b"\x02" + bytes(32)}):
        with pytest.raises(ValueError):
            replace(kp, **changes)  # type: ignore[arg-type]
    assert isinstance(replace(kp), KeyPackage)


def test_public_objects_pickle_and_copy() -> None:
    group = new_group(SECP256K1_TR, 2, 3, seed=10)
    run = round_one(group, [1, 2], b"m" * 32, seed=11)
    for obj in (group.public, run.commitments[0], group.key_packages[1], round_two(group, run)[0]):
        for make_copy in (copy.copy, copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))):
            assert make_copy(obj) == obj
    copied = copy.deepcopy(group.public)
    assert copied.verifying_share(2) == group.public.verifying_share(2)
