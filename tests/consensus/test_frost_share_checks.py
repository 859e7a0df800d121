"""Checking every share of a session at once: ``invalid_shares`` names exactly the members whose share is wrong
(judged against ``verify_signature_share`` on each share), ``aggregate`` raises ``InvalidShares`` with the same
members, the caller's mistakes are ``ValueError`` as in ``aggregate``, and the batched Lagrange coefficients
are the one-by-one ones."""

from __future__ import annotations

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
    SigningCommitments,
    aggregate,
    invalid_shares,
    verify,
    verify_signature_share,
)
from consensus.frost.group import N, lagrange_coefficient, lagrange_coefficients
from tests.consensus.frost_support import EXAMPLES, Group, Round, new_group, round_one, round_two

SUITES = [SECP256K1, SECP256K1_TR]
G = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")


def session(suite: Ciphersuite, t: int, n: int, signers: list[int], seed: int) -> tuple[Group, Round,
                                                                                        list[SignatureShare]]:
    group = new_group(suite, t, n, seed)
    run = round_one(group, signers, b"event id %d" % seed, seed + 1)
    return group, run, round_two(group, run)


def spoiled(shares: list[SignatureShare], bad: set[int]) -> list[SignatureShare]:
    """The shares with those of ``bad`` changed (z + identifier: a different value for each)."""
    return [SignatureShare(s.identifier, (s.z + s.identifier) % N) if s.identifier in bad else s for s in shares]


def one_by_one(group: Group, run: Round, shares: list[SignatureShare]) -> tuple[int, ...]:
    """The independent judgement: every share checked on its own."""
    wrong = []
    for share in shares:
        try:
            verify_signature_share(group.suite, share, run.message, run.commitments, group.public)
        except InvalidContribution as exc:
            assert exc.signer == share.identifier
            wrong.append(share.identifier)
    return tuple(sorted(wrong))


@pytest.mark.parametrize("suite", SUITES, ids=["rfc", "bip340"])
def test_all_valid_shares_name_nobody_and_aggregate(suite: Ciphersuite) -> None:
    group, run, shares = session(suite, 3, 5, [5, 1, 4, 2], seed=3)
    assert invalid_shares(suite, run.message, run.commitments, shares, group.public) == ()
    signature = aggregate(suite, run.message, run.commitments, shares, group.public)
    assert verify(suite, run.message, signature, group.public.group_public_key)


@EXAMPLES
@given(st.integers(2, 9), st.data())
def test_exactly_the_invalid_shares_are_named(n: int, data: st.DataObject) -> None:
    suite = data.draw(st.sampled_from(SUITES))
    t = data.draw(st.integers(2, n))
    signers = sorted(data.draw(st.permutations(range(1, n + 1)))[: data.draw(st.integers(t, n))])
    bad = set(data.draw(st.lists(st.sampled_from(signers), min_size=1, unique=True)))
    group, run, honest = session(suite, t, n, signers, data.draw(st.integers(0, 2**32)))
    shares = spoiled(honest, bad)
    named = invalid_shares(suite, run.message, run.commitments, shares, group.public)
    assert named == tuple(sorted(bad)) == one_by_one(group, run, shares)
    with pytest.raises(InvalidShares) as caught:
        aggregate(suite, run.message, run.commitments, list(reversed(shares)), group.public)
    assert caught.value.signers == named
    assert caught.value.signer == named[0]


def test_aggregate_names_every_culprit_in_its_error() -> None:
    group, run, honest = session(SECP256K1_TR, 3, 6, [1, 2, 3, 5, 6], seed=8)
    shares = spoiled(honest, {2, 6})
    with pytest.raises(InvalidContribution) as caught:  # still an InvalidContribution for older callers
        aggregate(SECP256K1_TR, run.message, run.commitments, shares, group.public)
    error = caught.value
    assert isinstance(error, InvalidShares)
    assert (error.signer, error.signers) == (2, (2, 6))
    assert str(error) == "invalid contribution from member 2: signature share does not verify " \
                         "(nor do those of members 6)"
    copied = pickle.loads(pickle.dumps(error))
    assert (type(copied), copied.signers, str(copied)) == (InvalidShares, (2, 6), str(error))


def test_a_share_for_another_message_or_commitment_list_is_named() -> None:
    """The check binds the share to the message and to every commitment, not just to the sender's own."""
    group, run, shares = session(SECP256K1_TR, 2, 3, [1, 2, 3], seed=11)
    assert invalid_shares(SECP256K1_TR, run.message + b"!", run.commitments, shares, group.public) == (1, 2, 3)
    other = round_one(group, [1, 2, 3], run.message, seed=99)
    mixed = [run.commitments[0], other.commitments[1], run.commitments[2]]
    assert invalid_shares(SECP256K1_TR, run.message, mixed, shares, group.public) == (1, 2, 3)


def test_inconsistent_key_package_is_nobodys_fault() -> None:
    """Shares honest for a (wrongly) lowered threshold each hold, but do not sign for the group key."""
    group, _, _ = session(SECP256K1_TR, 3, 4, [1, 2, 3], seed=5)
    lowered = Group(group.suite, {i: replace(kp, min_signers=2) for i, kp in group.key_packages.items()},
                    replace(group.public, min_signers=2, vss_commitment=group.public.vss_commitment[:2]))
    run = round_one(lowered, [1, 4], b"m", seed=6)
    shares = round_two(lowered, run)
    assert invalid_shares(SECP256K1_TR, run.message, run.commitments, shares, lowered.public) == ()
    with pytest.raises(InvalidContribution) as caught:
        aggregate(SECP256K1_TR, run.message, run.commitments, shares, lowered.public)
    assert caught.value.signer is None and not isinstance(caught.value, InvalidShares)


def test_caller_mistakes_are_value_errors() -> None:
    group, run, shares = session(SECP256K1_TR, 2, 3, [1, 3], seed=4)
    m, cs, public = run.message, run.commitments, group.public
    cases: list[tuple[str, Callable[[], object]]] = [
        ("a share missing", lambda: invalid_shares(SECP256K1_TR, m, cs, shares[:1], public)),
        ("a share twice", lambda: invalid_shares(SECP256K1_TR, m, cs, shares + shares[:1], public)),
        ("share of a non-signer", lambda: invalid_shares(SECP256K1_TR, m, cs, [shares[0], SignatureShare(2, 5)],
                                                         public)),
        ("shares as bytes", lambda: invalid_shares(SECP256K1_TR, m, cs, [s.to_bytes() for s in shares],  # type: ignore[misc]
                                                   public)),
        ("shares as one bytes", lambda: invalid_shares(SECP256K1_TR, m, cs, b"".join(s.to_bytes() for s in shares),  # type: ignore[arg-type]
                                                       public)),
        ("commitment of a non-member", lambda: invalid_shares(SECP256K1_TR, m, [*cs, SigningCommitments(9, G, G)],
                                                              [*shares, SignatureShare(9, 1)], public)),
        ("fewer commitments than t", lambda: invalid_shares(SECP256K1_TR, m, cs[:1], shares[:1], public)),
        ("a commitment twice", lambda: invalid_shares(SECP256K1_TR, m, [*cs, cs[0]], shares, public)),
        ("message not bytes", lambda: invalid_shares(SECP256K1_TR, m.hex(), cs, shares, public)),  # type: ignore[arg-type]
        ("no suite", lambda: invalid_shares(None, m, cs, shares, public)),  # type: ignore[arg-type]
        ("no key package", lambda: invalid_shares(SECP256K1_TR, m, cs, shares, None)),  # type: ignore[arg-type]
    ]
    for name, run_case in cases:
        with pytest.raises(ValueError):
            run_case()
            pytest.fail(f"no error for: {name}")


@given(st.lists(st.integers(1, 65535), min_size=1, max_size=70, unique=True))
def test_batched_lagrange_coefficients_are_the_one_by_one_ones(identifiers: list[int]) -> None:
    coefficients = lagrange_coefficients(identifiers)
    assert coefficients == [lagrange_coefficient(i, identifiers) for i in identifiers]
    assert sum(coefficients) % N == 1  # they interpolate the constant polynomial 1 at x = 0
