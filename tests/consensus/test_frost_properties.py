"""Property tests: random 2 <= t <= n <= 12, random signer sets of size >= t, random messages.

Every aggregate verifies with our ``verify``, with coincurve, and as a Nostr event with nostr-sdk; a share made
with any tampered input fails ``verify_signature_share`` and ``aggregate`` names its signer; t-1 shares never
make a valid signature. Keys and nonces come from a seed hypothesis draws, so failures replay.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from coincurve import PrivateKey, PublicKey, PublicKeyXOnly
from hypothesis import given
from hypothesis import strategies as st

from consensus.frost import (
    SECP256K1,
    SECP256K1_TR,
    InvalidContribution,
    KeyPackage,
    PublicKeyPackage,
    SignatureShare,
    aggregate,
    commit,
    sign,
    verify,
    verify_signature_share,
)
from consensus.frost.context import group_commitment, prepare
from consensus.frost.group import N, encode, scalar_bytes
from tests.consensus.frost_support import (
    EXAMPLES,
    Group,
    event_id,
    new_group,
    nostr_accepts,
    round_one,
    round_two,
    seeded_rng,
    sign_all,
    unsigned_event,
)


@st.composite
def signings(draw: st.DrawFn, min_t: int = 2) -> tuple[int, int, list[int], int]:
    """(t, n, signers, seed): a threshold, a group size, a signer set of size >= t, a seed."""
    n = draw(st.integers(min_t, 12))
    t = draw(st.integers(min_t, n))
    size = draw(st.integers(t, n))
    signers = sorted(draw(st.permutations(range(1, n + 1)))[:size])
    return t, n, signers, draw(st.integers(0, 2**32))


@EXAMPLES
@given(signings(), st.text(max_size=40))
def test_bip340_aggregate_verifies_with_coincurve_and_nostr_sdk(case: tuple, content: str) -> None:
    t, n, signers, seed = case
    group = new_group(SECP256K1_TR, t, n, seed)
    event = unsigned_event(group.public.xonly_public_key, content)
    message = event_id(event)
    signature = sign_all(group, signers, message, seed + 1)
    assert len(signature) == 64
    assert verify(SECP256K1_TR, message, signature, group.public.xonly_public_key)
    assert PublicKeyXOnly(group.public.xonly_public_key).verify(signature, message)
    assert nostr_accepts(event, signature)
    assert not nostr_accepts(unsigned_event(group.public.xonly_public_key, content + "."), signature)


@EXAMPLES
@given(signings(), st.binary(max_size=64))
def test_rfc_suite_aggregate_verifies(case: tuple, message: bytes) -> None:
    t, n, signers, seed = case
    group = new_group(SECP256K1, t, n, seed)
    signature = sign_all(group, signers, message, seed + 1)
    assert len(signature) == 65
    assert verify(SECP256K1, message, signature, group.public.group_public_key)
    # The same equation checked with coincurve's own objects: z*G == R + c*Y.
    r, z = signature[:33], signature[33:]
    challenge = SECP256K1.challenge(r, group.public.group_public_key, message)
    c_y = PublicKey(group.public.group_public_key).multiply(scalar_bytes(challenge))
    assert PublicKey.from_secret(z) == PublicKey.combine_keys([PublicKey(r), c_y])
    assert not verify(SECP256K1, message + b"!", signature, group.public.group_public_key)


TAMPERINGS = ["message", "other commitment", "own nonces", "signing share", "share value"]


def tampered_share(group: Group, run: object, victim: int, how: str, seed: int) -> SignatureShare:
    """The victim's share computed with one input changed (the others sign honestly)."""
    suite, kp = group.suite, group.key_packages[victim]
    message, commitments, nonces = run.message, list(run.commitments), run.nonces[victim]  # type: ignore[attr-defined]
    if how == "message":
        return sign(suite, message + b"x", commitments, nonces, kp)
    if how == "other commitment":
        k = next(k for k, c in enumerate(commitments) if c.identifier != victim)
        _, fresh = commit(suite, group.key_packages[commitments[k].identifier], seeded_rng(seed))
        commitments[k] = fresh
        return sign(suite, message, commitments, nonces, kp)
    if how == "own nonces":
        nonces, fresh = commit(suite, kp, seeded_rng(seed))
        commitments = [fresh if c.identifier == victim else c for c in commitments]
        return sign(suite, message, commitments, nonces, kp)
    if how == "signing share":
        forged_share = kp.signing_share % (N - 1) + 1
        forged = replace(kp, signing_share=forged_share,
                         verifying_share=PublicKey.from_secret(scalar_bytes(forged_share)).format())
        return sign(suite, message, commitments, nonces, forged)
    honest = sign(suite, message, commitments, nonces, kp)
    return SignatureShare(victim, (honest.z + 1) % N)


@EXAMPLES
@given(signings(), st.sampled_from([SECP256K1, SECP256K1_TR]), st.sampled_from(TAMPERINGS), st.data())
def test_tampered_share_is_caught_and_blamed(case: tuple, suite: object, how: str, data: st.DataObject) -> None:
    t, n, signers, seed = case
    group = new_group(suite, t, n, seed)  # type: ignore[arg-type]
    victim = data.draw(st.sampled_from(signers))
    run = round_one(group, signers, b"event id", seed + 1)
    shares = [tampered_share(group, run, victim, how, seed + 2) if c.identifier == victim
              else sign(group.suite, run.message, run.commitments, run.nonces[c.identifier],
                        group.key_packages[c.identifier])
              for c in run.commitments]
    for share in shares:
        if share.identifier == victim:
            with pytest.raises(InvalidContribution) as caught:
                verify_signature_share(group.suite, share, run.message, run.commitments, group.public)
            assert caught.value.signer == victim
        else:
            verify_signature_share(group.suite, share, run.message, run.commitments, group.public)
    with pytest.raises(InvalidContribution) as blamed:
        aggregate(group.suite, run.message, run.commitments, shares, group.public)
    assert blamed.value.signer == victim


def lowered(group: Group, threshold: int) -> Group:
    """The same shares, told that ``threshold`` signers suffice (what t-1 colluders would try)."""
    kps = {i: replace(kp, min_signers=threshold) for i, kp in group.key_packages.items()}
    public = replace(group.public, min_signers=threshold, vss_commitment=group.public.vss_commitment[:threshold])
    return Group(group.suite, kps, public)


@EXAMPLES
@given(signings(min_t=3), st.data())
def test_fewer_than_t_shares_never_sign(case: tuple, data: st.DataObject) -> None:
    t, n, signers, seed = case
    group = new_group(SECP256K1_TR, t, n, seed)
    few = sorted(data.draw(st.permutations(signers))[: t - 1])
    colluders = lowered(group, t - 1)
    event = unsigned_event(group.public.xonly_public_key, "forged")
    run = round_one(colluders, few, event_id(event), seed + 1)
    shares = round_two(colluders, run)
    for share in shares:  # each share is honest for its (too small) signer set...
        verify_signature_share(group.suite, share, run.message, run.commitments, colluders.public)
    with pytest.raises(InvalidContribution) as caught:  # ...but together they do not sign for the group key
        aggregate(group.suite, run.message, run.commitments, shares, colluders.public)
    assert caught.value.signer is None
    ordered, _, rhos = prepare(group.suite, run.message, run.commitments, group.public.group_public_key, t - 1)
    candidate = encode(group_commitment(ordered, rhos))[1:] + scalar_bytes(sum(s.z for s in shares) % N)
    assert not verify(SECP256K1_TR, run.message, candidate, group.public.xonly_public_key)
    assert not nostr_accepts(event, candidate)


@EXAMPLES
@given(st.integers(2, 12), st.integers(0, 2**32), st.binary(min_size=32, max_size=32))
def test_one_share_alone_never_signs(n: int, seed: int, message: bytes) -> None:
    """t = 2: a lone member can only make a signature under its own share, never under the group key."""
    group = new_group(SECP256K1_TR, 2, n, seed)
    for kp in group.key_packages.values():
        alone = PrivateKey(scalar_bytes(kp.signing_share)).sign_schnorr(message)
        assert not verify(SECP256K1_TR, message, alone, group.public.xonly_public_key)


def test_signer_sets_larger_than_t_and_any_order() -> None:
    group = new_group(SECP256K1_TR, 3, 7, seed=5)
    message = bytes(range(32))
    for signers in ([7, 2, 5], [1, 2, 3, 4, 5, 6, 7], [6, 4, 3, 2]):
        run = round_one(group, signers, message, seed=len(signers))
        run.commitments.reverse()  # the list order does not matter; identifiers do
        signature = aggregate(group.suite, message, run.commitments, round_two(group, run), group.public)
        assert verify(SECP256K1_TR, message, signature, group.public.xonly_public_key)


def test_public_key_package_survives_replace_checks() -> None:
    """``lowered`` above relies on dataclasses.replace re-running the checks of PublicKeyPackage."""
    group = new_group(SECP256K1_TR, 3, 4, seed=9)
    with pytest.raises(ValueError):
        replace(group.public, min_signers=2)  # VSS commitment length no longer matches
    assert isinstance(lowered(group, 2).public, PublicKeyPackage)
    assert isinstance(lowered(group, 2).key_packages[1], KeyPackage)
