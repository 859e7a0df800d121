"""``SigningContext``: a session's public values computed once give exactly the shares, signatures and verdicts
of the functions that compute them themselves; a context is refused (``ValueError``) by any call of another
session (message, commitment list, suite or key), before a nonce is spent; bad shares are still named."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.frost import (
    SECP256K1,
    SECP256K1_TR,
    Ciphersuite,
    InvalidContribution,
    InvalidShares,
    SignatureShare,
    SigningContext,
    aggregate,
    invalid_shares,
    sign,
    signing_context,
    verify,
    verify_signature_share,
)
from consensus.frost.group import N
from tests.consensus.frost_support import EXAMPLES, Group, Round, new_group, round_one, round_two

SUITES = [SECP256K1, SECP256K1_TR]


def context_of(group: Group, run: Round) -> SigningContext:
    return signing_context(group.suite, run.message, run.commitments, group.public)


def signed_with(group: Group, run: Round, context: SigningContext) -> list[SignatureShare]:
    return [sign(group.suite, run.message, run.commitments, run.nonces[c.identifier],
                 group.key_packages[c.identifier], context) for c in run.commitments]


@EXAMPLES
@given(st.integers(2, 8), st.data())
def test_a_context_gives_the_same_shares_signature_and_verdicts(n: int, data: st.DataObject) -> None:
    suite = data.draw(st.sampled_from(SUITES))
    t = data.draw(st.integers(2, n))
    signers = data.draw(st.permutations(range(1, n + 1)))[: data.draw(st.integers(t, n))]
    seed = data.draw(st.integers(0, 2**32))
    group = new_group(suite, t, n, seed)
    message = b"event id %d" % seed
    plain_run = round_one(group, signers, message, seed + 1)
    same_run = round_one(group, signers, message, seed + 1)  # the same nonces again: a nonce pair signs once
    plain = round_two(group, plain_run)
    context = context_of(group, same_run)
    assert signed_with(group, same_run, context) == plain
    signature = aggregate(suite, message, same_run.commitments, plain, group.public, context)
    assert signature == aggregate(suite, message, plain_run.commitments, plain, group.public)
    assert verify(suite, message, signature, group.public.group_public_key)
    assert invalid_shares(suite, message, same_run.commitments, plain, group.public, context) == ()
    for share in plain:
        verify_signature_share(suite, share, message, same_run.commitments, group.public, context)


def test_a_context_records_the_session() -> None:
    group = new_group(SECP256K1_TR, 2, 3, seed=1)
    run = round_one(group, [3, 1], b"m", seed=2)
    context = context_of(group, run)
    assert (context.suite, context.message, context.public_key_package) == (SECP256K1_TR, b"m", group.public)
    assert context.identifiers == (1, 3)
    assert context.commitments == tuple(sorted(run.commitments, key=lambda c: c.identifier))
    assert len(context.binding_factors) == 2 and all(0 < rho < N for rho in context.binding_factors)
    assert len(context.group_commitment) == 33 and 0 <= context.challenge < N
    assert "binding_factors" not in repr(context)


def test_a_context_is_made_only_by_signing_context_and_copies_by_its_inputs() -> None:
    group = new_group(SECP256K1_TR, 2, 3, seed=3)
    run = round_one(group, [1, 2], b"m", seed=4)
    context = context_of(group, run)
    with pytest.raises(TypeError):
        SigningContext(SECP256K1_TR, b"m")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        replace(context, message=b"other")
    with pytest.raises(AttributeError):
        context.message = b"other"  # type: ignore[misc]
    expected = round_two(group, run)
    for copied in (pickle.loads(pickle.dumps(context)), copy.deepcopy(context)):
        assert copied == context and hash(copied) == hash(context)
        assert signed_with(group, round_one(group, [1, 2], b"m", seed=4), copied) == expected


def test_a_context_of_another_session_is_refused_before_a_nonce_is_spent() -> None:
    group = new_group(SECP256K1_TR, 2, 4, seed=5)
    run = round_one(group, [1, 2, 3], b"event", seed=6)
    shares = round_two(group, round_one(group, [1, 2, 3], b"event", seed=6))
    other = round_one(group, [1, 2, 3], b"event", seed=7)
    other_group = new_group(SECP256K1_TR, 2, 4, seed=8)
    m, cs, public = run.message, run.commitments, group.public
    sessions = {
        "another message": context_of(group, Round(b"other", cs, {})),
        "another commitment": context_of(group, Round(m, [cs[0], other.commitments[1], cs[2]], {})),
        "one commitment fewer": context_of(group, Round(m, cs[:2], {})),
        "one commitment more": context_of(group, Round(m, [*cs, round_one(group, [4], m, seed=9).commitments[0]],
                                                       {})),
        "another suite": signing_context(SECP256K1, m, cs, public),
        "another key": signing_context(SECP256K1_TR, m, cs, other_group.public),
    }
    calls: dict[str, Callable[[SigningContext], object]] = {
        "sign": lambda context: sign(SECP256K1_TR, m, cs, run.nonces[1], group.key_packages[1], context),
        "aggregate": lambda context: aggregate(SECP256K1_TR, m, cs, shares, public, context),
        "invalid_shares": lambda context: invalid_shares(SECP256K1_TR, m, cs, shares, public, context),
        "verify_signature_share": lambda context: verify_signature_share(SECP256K1_TR, shares[0], m, cs, public,
                                                                         context),
    }
    for name, context in sessions.items():
        for call, run_call in calls.items():
            with pytest.raises(ValueError, match="signing context was made for another"):
                run_call(context)
                pytest.fail(f"{call} took the context of {name}")
    assert not run.nonces[1].used
    right = context_of(group, run)
    assert sign(SECP256K1_TR, m, list(reversed(cs)), run.nonces[1], group.key_packages[1], right) == shares[0]


def test_a_context_for_another_key_package_of_the_same_group_key_is_refused() -> None:
    group = new_group(SECP256K1_TR, 2, 3, seed=10)
    run = round_one(group, [1, 2], b"m", seed=11)
    shares = round_two(group, round_one(group, [1, 2], b"m", seed=11))
    fewer = replace(group.public, verifying_shares=group.public.verifying_shares[:2])
    context = signing_context(SECP256K1_TR, b"m", run.commitments, fewer)
    with pytest.raises(ValueError, match="another public key package"):
        aggregate(SECP256K1_TR, b"m", run.commitments, shares, group.public, context)


@pytest.mark.parametrize("suite", SUITES, ids=["rfc", "bip340"])
def test_bad_shares_are_still_named_with_a_context(suite: Ciphersuite) -> None:
    group = new_group(suite, 3, 5, seed=12)
    run = round_one(group, [5, 1, 4, 2], b"event", seed=13)
    honest = round_two(group, run)
    shares = [replace(s, z=(s.z + 1) % N) if s.identifier in (2, 5) else s for s in honest]
    context = context_of(group, run)
    with pytest.raises(InvalidShares) as caught:
        aggregate(suite, run.message, run.commitments, shares, group.public, context)
    assert caught.value.signers == (2, 5)
    assert invalid_shares(suite, run.message, run.commitments, shares, group.public, context) == (2, 5)
    share_of = {s.identifier: s for s in shares}
    with pytest.raises(InvalidContribution) as one:
        verify_signature_share(suite, share_of[2], run.message, run.commitments, group.public, context)
    assert one.value.signer == 2
    verify_signature_share(suite, share_of[4], run.message, run.commitments, group.public, context)


def test_making_a_context_checks_the_signer_set_as_aggregate_does() -> None:
    group = new_group(SECP256K1_TR, 3, 4, seed=14)
    run = round_one(group, [1, 2, 3], b"m", seed=15)
    cs = run.commitments
    for name, commitments in [("fewer than t", cs[:2]), ("a commitment twice", [*cs, cs[0]]),
                              ("not commitments", [c.to_bytes() for c in cs])]:
        with pytest.raises(ValueError):
            signing_context(SECP256K1_TR, b"m", commitments, group.public)  # type: ignore[arg-type]
            pytest.fail(f"no error for: {name}")
    for name, args in [("message not bytes", ("m", group.public)), ("no key package", (b"m", None))]:
        with pytest.raises(ValueError):
            signing_context(SECP256K1_TR, args[0], cs, args[1])  # type: ignore[arg-type]
            pytest.fail(f"no error for: {name}")
    three = new_group(SECP256K1_TR, 3, 3, seed=16)
    with pytest.raises(ValueError, match="not members"):
        signing_context(SECP256K1_TR, b"m", round_one(group, [1, 2, 4], b"m", 17).commitments, three.public)
    with pytest.raises(ValueError, match="must be a SigningContext"):
        aggregate(SECP256K1_TR, b"m", cs, round_two(group, run), group.public, object())  # type: ignore[arg-type]
