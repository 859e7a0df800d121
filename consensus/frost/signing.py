"""A member's side of FROST signing (RFC 9591 section 5): round one ``commit``, round two ``sign``.

Theory: in round one member i draws nonces (d_i, e_i) and publishes D_i = d_i*G, E_i = e_i*G. In round two,
given the message and the commitment list, everyone derives binding factors rho_j = H1(Y || H4(msg) ||
H5(list) || j), the group commitment R = sum(D_j + rho_j*E_j) and the challenge c; member i answers
z_i = d_i + rho_i*e_i + lambda_i*s_i*c. In the BIP-340 suite Y and R are taken with even y: s_i is negated when
the group key has odd y, and (d_i + rho_i*e_i) when R has odd y, exactly as the ZF ``frost-secp256k1-tr`` crate.

Rules: ``SigningNonces`` are single-use, in-memory-only objects; ``sign`` takes the secrets out before using them,
so a second call raises ``ValueError``, and they refuse to be pickled or copied. Secrets only reach the curve
through ``base_mul`` (constant time): the signer's own D_i + rho_i*E_i is computed as (d_i + rho_i*e_i)*G.
This is the hot path of every signing: one pass over the list, one point sum, no repeated parsing. A signer that
also coordinates computes the session's public values once (``signing_context``) and passes them to ``sign``
and ``aggregate``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, SupportsIndex

from consensus.frost.context import SigningContext, identity_commitment, prepare
from consensus.frost.group import (
    N,
    Point,
    base_mul,
    encode,
    lagrange_coefficient,
    mul,
    point_sum,
)
from consensus.frost.keys import KeyPackage, Rng
from consensus.frost.messages import SignatureShare, SigningCommitments
from consensus.frost.suite import Ciphersuite


class SigningNonces:
    """Member's secret nonce pair for ONE signature, with the commitments it published for them."""

    __slots__ = ("_binding", "_commitments", "_hiding")

    def __init__(self, hiding: int, binding: int, commitments: SigningCommitments) -> None:
        self._hiding: int | None = hiding
        self._binding: int | None = binding
        self._commitments = commitments

    @property
    def commitments(self) -> SigningCommitments:
        return self._commitments

    @property
    def used(self) -> bool:
        return self._hiding is None

    def _take(self) -> tuple[int, int]:
        """Hand out the secrets once and forget them."""
        hiding, binding = self._hiding, self._binding
        if hiding is None or binding is None:
            raise ValueError("signing nonces already used: one nonce pair signs exactly one message")
        self._hiding = self._binding = None
        return hiding, binding

    def __repr__(self) -> str:
        return f"SigningNonces(identifier={self._commitments.identifier}, used={self.used})"

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        raise TypeError("secret nonces live only in process memory: they cannot be pickled or copied")


def commit(suite: Ciphersuite, key_package: KeyPackage,
           rng: Rng = os.urandom) -> tuple[SigningNonces, SigningCommitments]:
    """Round one: fresh nonces and their public commitments.

    RFC 9591 nonce_generate, hiding nonce first: H3(random_bytes(32) || SerializeScalar(signing share)), so a
    weak rng alone does not expose the share.
    """
    if type(suite) is not Ciphersuite or not isinstance(key_package, KeyPackage):
        raise ValueError("commit takes a Ciphersuite and a KeyPackage")
    secret = key_package.signing_share.to_bytes(32, "big")
    while True:
        hiding_random, binding_random = rng(32), rng(32)
        if type(hiding_random) is not bytes or type(binding_random) is not bytes \
                or len(hiding_random) != 32 or len(binding_random) != 32:
            raise ValueError("rng must return the number of bytes asked for")
        hiding, binding = suite.h3_many((hiding_random + secret, binding_random + secret))
        hiding_point, binding_point = base_mul(hiding), base_mul(binding)
        if hiding_point is not None and binding_point is not None:  # a zero nonce: probability ~2^-255
            break
    commitments = SigningCommitments._from_points(key_package.identifier, hiding_point, binding_point)
    return SigningNonces(hiding, binding, commitments), commitments


def sign(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments], nonces: SigningNonces,
         key_package: KeyPackage, context: SigningContext | None = None) -> SignatureShare:
    """Round two: this member's signature share on ``message`` for the signer set of ``commitments``.

    Raises ``ValueError`` if the nonces were already used, this member's commitment is missing from the list
    or differs from ``nonces.commitments``, identifiers repeat, or there are fewer than min_signers.
    The nonces are consumed once these checks pass, even if a later step fails: they are never reused.
    With a ``context`` (``signing_context`` of this message, list and group key, ``ValueError`` if not) its
    binding factors, R and challenge are used instead of computed: no point operation at all.
    """
    if type(nonces) is not SigningNonces or not isinstance(key_package, KeyPackage):
        raise ValueError("sign takes SigningNonces and a KeyPackage")
    if nonces.used:
        raise ValueError("signing nonces already used: one nonce pair signs exactly one message")
    group_key = key_package.group_public_key
    ordered: Sequence[SigningCommitments]
    ids: Sequence[int]
    rhos: Sequence[int]
    if context is None:
        ordered, ids, rhos = prepare(suite, message, commitments, group_key, key_package.min_signers)
    else:
        if type(context) is not SigningContext:
            raise ValueError("context must be a SigningContext")
        context.check(suite, message, commitments)
        public = context.public_key_package
        if group_key != public.group_public_key or key_package.min_signers != public.min_signers:
            raise ValueError("the signing context was made for another group key")
        ordered, ids, rhos = context.commitments, context.identifiers, context.binding_factors
    me = key_package.identifier
    if me not in ids:
        raise ValueError(f"member {me}'s own commitment is not in the commitment list")
    index = ids.index(me)
    mine = ordered[index]
    if mine is not nonces._commitments and mine != nonces._commitments:
        raise ValueError(f"member {me}'s commitment in the list is not the one made with these nonces")
    hiding, binding = nonces._take()

    own = (hiding + rhos[index] * binding) % N  # d_i + rho_i*e_i: the own term as one secret scalar
    if context is None:
        r = encode(_group_commitment_with(own, ordered, rhos, index))
        challenge = suite.challenge(r, group_key, message)  # x-only in BIP-340: the parity of Y does not enter
    else:
        r, challenge = context.group_commitment, context.challenge
    share = key_package.signing_share
    if suite.bip340:
        if group_key[0] == 3:
            share = N - share
        if r[0] == 3:
            own = N - own
    return SignatureShare._computed(me, (own + lagrange_coefficient(me, ids) * share * challenge) % N)


def _group_commitment_with(own: int, ordered: Sequence[SigningCommitments], rhos: Sequence[int],
                           index: int) -> Point:
    """R, with the signer's own D_i + rho_i*E_i computed as own*G (one constant-time base multiplication)."""
    points = [base_mul(own)]
    for k, c in enumerate(ordered):
        if k != index:
            points += (c._hiding_point, mul(c._binding_point, rhos[k]))  # type: ignore[attr-defined]
    total = point_sum(points)
    if total is None:
        raise identity_commitment()
    return total
