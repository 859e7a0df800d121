"""A member's side of FROST signing (RFC 9591 section 5): round one ``commit``, round two ``sign``.

Theory: in round one member i draws nonces (d_i, e_i) and publishes D_i = d_i*G, E_i = e_i*G. In round two,
given the message and the commitment list, everyone derives binding factors rho_j = H1(Y || H4(msg) ||
H5(list) || j), the group commitment R = sum(D_j + rho_j*E_j) and the challenge c; member i answers
z_i = d_i + rho_i*e_i + lambda_i*s_i*c. In the BIP-340 suite Y and R are taken with even y: s_i is negated when
the group key has odd y, and (d_i + rho_i*e_i) when R has odd y, exactly as the ZF ``frost-secp256k1-tr`` crate.

Rules: ``SigningNonces`` are single-use, in-memory-only objects; ``sign`` takes the secrets out before using them,
so a second call raises ``ValueError``, and they refuse to be pickled or copied. Secrets only reach coincurve
through ``PublicKey.from_secret``: the signer's own D_i + rho_i*E_i is computed as (d_i + rho_i*e_i)*G.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from coincurve import PublicKey

from consensus.errors import InvalidContribution
from consensus.frost.group import (
    N,
    base_mul,
    lagrange_coefficient,
    mul,
    point_sum,
    scalar_bytes,
)
from consensus.frost.keys import KeyPackage, Rng
from consensus.frost.messages import SignatureShare, SigningCommitments
from consensus.frost.suite import Ciphersuite


class SigningNonces:
    """Member's secret nonce pair for ONE signature, with the commitments it published for them."""

    __slots__ = ("_hiding", "_binding", "_commitments")

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

    def __reduce_ex__(self, protocol: object) -> object:
        raise TypeError("secret nonces live only in process memory: they cannot be pickled or copied")


def _nonce_generate(suite: Ciphersuite, secret: bytes, rng: Rng) -> int:
    """RFC 9591 nonce_generate: H3(random_bytes(32) || SerializeScalar(secret)), hedged with the share."""
    random_bytes = rng(32)
    if not isinstance(random_bytes, bytes) or len(random_bytes) != 32:
        raise ValueError("rng must return the number of bytes asked for")
    return suite.h3(random_bytes + secret)


def commit(suite: Ciphersuite, key_package: KeyPackage,
           rng: Rng = os.urandom) -> tuple[SigningNonces, SigningCommitments]:
    """Round one: fresh nonces (hiding first, then binding) and their public commitments."""
    if not isinstance(suite, Ciphersuite) or not isinstance(key_package, KeyPackage):
        raise ValueError("commit takes a Ciphersuite and a KeyPackage")
    secret = scalar_bytes(key_package.signing_share)
    while True:
        hiding = _nonce_generate(suite, secret, rng)
        binding = _nonce_generate(suite, secret, rng)
        hiding_point, binding_point = base_mul(hiding), base_mul(binding)
        if hiding_point is not None and binding_point is not None:  # a zero nonce: probability ~2^-255
            break
    commitments = SigningCommitments._from_points(key_package.identifier, hiding_point, binding_point)
    return SigningNonces(hiding, binding, commitments), commitments


def encode_commitment_list(commitments: Sequence[SigningCommitments]) -> bytes:
    """RFC 9591 encode_group_commitment_list: SerializeScalar(id) || D || E for each, in identifier order."""
    return b"".join(scalar_bytes(c.identifier) + c.hiding + c.binding for c in commitments)


def binding_factor_prefix(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
                          group_public_key: bytes) -> bytes:
    """enc(Y) || H4(msg) || H5(commitment list): the input of every binding factor but the identifier."""
    return (suite.signing_key(group_public_key) + suite.h4(message)
            + suite.h5(encode_commitment_list(commitments)))


def prepare(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
            group_public_key: bytes, min_signers: int) -> tuple[list[SigningCommitments], list[int]]:
    """Check a commitment list and return it in identifier order with each member's binding factor.

    ``ValueError`` for anything but commitment objects, duplicate identifiers, or fewer than ``min_signers``.
    """
    if not isinstance(suite, Ciphersuite):
        raise ValueError("suite must be a Ciphersuite")
    if not isinstance(message, bytes):
        raise ValueError("message must be bytes")
    if isinstance(commitments, (bytes, str)) or not all(isinstance(c, SigningCommitments) for c in commitments):
        raise ValueError("commitments must be a sequence of SigningCommitments")
    ordered = sorted(commitments, key=lambda c: c.identifier)
    if any(a.identifier == b.identifier for a, b in zip(ordered, ordered[1:])):
        raise ValueError("duplicate identifier in the commitment list")
    if len(ordered) < min_signers:
        raise ValueError(f"{len(ordered)} commitments, fewer than the {min_signers} signers needed")
    prefix = binding_factor_prefix(suite, message, ordered, group_public_key)
    return ordered, suite.h1_many(prefix, [scalar_bytes(c.identifier) for c in ordered])


def identity_commitment() -> InvalidContribution:
    # Binding factors make R depend on every commitment, so no member can steer it to the identity alone;
    # blame cannot be assigned to one member.
    return InvalidContribution(None, "the group commitment is the identity")


def sign(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments], nonces: SigningNonces,
         key_package: KeyPackage) -> SignatureShare:
    """Round two: this member's signature share on ``message`` for the signer set of ``commitments``.

    Raises ``ValueError`` if the nonces were already used, this member's commitment is missing from the list
    or differs from ``nonces.commitments``, identifiers repeat, or there are fewer than min_signers.
    The nonces are consumed (even if a later step fails), never reused.
    """
    if not isinstance(nonces, SigningNonces) or not isinstance(key_package, KeyPackage):
        raise ValueError("sign takes SigningNonces and a KeyPackage")
    if nonces.used:
        raise ValueError("signing nonces already used: one nonce pair signs exactly one message")
    ordered, rhos = prepare(suite, message, commitments, key_package.group_public_key, key_package.min_signers)
    me = key_package.identifier
    mine = [k for k, c in enumerate(ordered) if c.identifier == me]
    if not mine:
        raise ValueError(f"member {me}'s own commitment is not in the commitment list")
    index = mine[0]
    if ordered[index] != nonces.commitments:
        raise ValueError(f"member {me}'s commitment in the list is not the one made with these nonces")
    hiding, binding = nonces._take()

    own = (hiding + rhos[index] * binding) % N  # d_i + rho_i*e_i: the own term as one secret scalar
    others = [k for k in range(len(ordered)) if k != index]
    group_commitment = point_sum([base_mul(own)]
                                 + [ordered[k].hiding_point for k in others]
                                 + [mul(ordered[k].binding_point, rhos[k]) for k in others])
    if group_commitment is None:
        raise identity_commitment()
    r = group_commitment.format()
    share = key_package.signing_share
    if suite.bip340:
        if key_package.group_public_key[0] == 3:
            share = N - share
        if r[0] == 3:
            own = N - own
    challenge = suite.challenge(r, suite.signing_key(key_package.group_public_key), message)
    lam = lagrange_coefficient(me, [c.identifier for c in ordered])
    return SignatureShare(me, (own + lam * share * challenge) % N)


def group_commitment(ordered: Sequence[SigningCommitments], rhos: Sequence[int]) -> PublicKey:
    """R = sum_j D_j + rho_j*E_j (public values only), with one point addition call."""
    point = point_sum([c.hiding_point for c in ordered] + [mul(c.binding_point, rho) for c, rho in zip(ordered, rhos)])
    if point is None:
        raise identity_commitment()
    return point
