"""The coordinator's side of FROST (RFC 9591 section 5.3): share verification, aggregation, and ``verify``.

``aggregate`` computes R once, sums the shares and verifies the final signature. Because the Lagrange-weighted
verifying shares sum to the group key, a signature that verifies proves the shares were good enough; only when
it fails is every share checked on its own, to name the culprits (as the ZF crate does). A share check is
z_i*G == R_i + c*lambda_i*Y_i, with R_i = D_i + rho_i*E_i, and in the BIP-340 suite R_i and Y_i negated when
R or the group key has odd y. The rho_i*E_i computed for R are kept, so checking all t shares costs t more
multiplications and t base multiplications, not t times R (``invalid_shares``; ``verify_signature_share`` is
for one share alone).

Rules: the coordinator holds no secret; the caller's mistakes (sets that do not match, non-members) are
``ValueError``; bad shares are ``InvalidContribution(identifier, ...)``, from ``aggregate`` the subclass
``InvalidShares`` naming every culprit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from coincurve import PublicKeyXOnly

from consensus.errors import InvalidContribution
from consensus.frost.group import (
    N,
    Point,
    base_mul,
    encode,
    lagrange_coefficient,
    lagrange_coefficients,
    mul,
    point_from_bytes,
    point_sum,
    same_point,
)
from consensus.frost.keys import PublicKeyPackage
from consensus.frost.messages import SignatureShare, SigningCommitments
from consensus.frost.signing import binding_terms, group_commitment, prepare
from consensus.frost.suite import Ciphersuite


def _prepare_for(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
                 public_key_package: PublicKeyPackage) -> tuple[list[SigningCommitments], list[int], list[int]]:
    if not isinstance(public_key_package, PublicKeyPackage):
        raise ValueError("public_key_package must be a PublicKeyPackage")
    ordered, ids, rhos = prepare(suite, message, commitments, public_key_package.group_public_key,
                                 public_key_package.min_signers)
    if not public_key_package.has_members(ids):
        strangers = [i for i in ids if not public_key_package.has_member(i)]
        raise ValueError(f"{strangers} are not members of this key package")
    return ordered, ids, rhos


class InvalidShares(InvalidContribution):
    """The signature shares of ``signers`` (identifier order, at least one) do not verify; ``signer`` is the
    first of them, so a caller that wants one name still has it."""

    def __init__(self, signers: tuple[int, ...]) -> None:
        others = f" (nor do those of members {', '.join(map(str, signers[1:]))})" if len(signers) > 1 else ""
        super().__init__(signers[0], f"signature share does not verify{others}")
        self.signers = signers

    def __reduce__(self) -> tuple[type[InvalidShares], tuple[tuple[int, ...]]]:
        return type(self), (self.signers,)


def _share_holds(suite: Ciphersuite, share: SignatureShare, commitment: SigningCommitments,
                 binding_term: Point | None, lam: int, challenge: int, r_odd: bool,
                 public_key_package: PublicKeyPackage) -> bool:
    # z*G == sr*(D + rho*E) + sy*c*lam*Y  <=>  sr*z*G == D + rho*E + sr*sy*c*lam*Y   (sr, sy = +-1)
    sign_r = -1 if suite.bip340 and r_odd else 1
    sign_y = -1 if suite.bip340 and public_key_package.group_public_key[0] == 3 else 1
    lhs = base_mul(sign_r * share.z % N)
    rhs = point_sum([commitment.hiding_point, binding_term,
                     mul(public_key_package.verifying_point(share.identifier), sign_r * sign_y * challenge * lam % N)])
    return same_point(lhs, rhs)


def verify_signature_share(suite: Ciphersuite, share: SignatureShare, message: bytes,
                           commitments: Sequence[SigningCommitments],
                           public_key_package: PublicKeyPackage) -> None:
    """Check one member's share; raises ``InvalidContribution(share.identifier, ...)`` if it is wrong.

    ``ValueError`` if the share's member has no commitment in the list or is not in the key package.
    To check many shares of one session, ``invalid_shares`` computes R once for all of them.
    """
    if type(share) is not SignatureShare:
        raise ValueError("share must be a SignatureShare")
    ordered, ids, rhos = _prepare_for(suite, message, commitments, public_key_package)
    if share.identifier not in ids:
        raise ValueError(f"member {share.identifier} has no commitment in the list")
    r = encode(group_commitment(ordered, rhos))
    challenge = suite.challenge(r, public_key_package.group_public_key, message)
    k = ids.index(share.identifier)
    if not _share_holds(suite, share, ordered[k], mul(ordered[k].binding_point, rhos[k]),
                        lagrange_coefficient(share.identifier, ids), challenge, r[0] == 3, public_key_package):
        raise InvalidContribution(share.identifier, "signature share does not verify")


class _Session(NamedTuple):
    ordered: list[SigningCommitments]
    ids: list[int]
    shares: list[SignatureShare]  # in identifier order, like ``ordered``
    terms: list[Point | None]  # rho_j*E_j
    r_point: Point


def _session(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
             shares: Sequence[SignatureShare], public_key_package: PublicKeyPackage) -> _Session:
    """The checks ``aggregate`` and ``invalid_shares`` share, then R with its binding terms kept."""
    ordered, ids, rhos = _prepare_for(suite, message, commitments, public_key_package)
    if isinstance(shares, (bytes, str)) or not all(type(s) is SignatureShare for s in shares):
        raise ValueError("shares must be a sequence of SignatureShare")
    by_id = {s.identifier: s for s in shares}
    if len(by_id) != len(shares) or sorted(by_id) != ids:
        raise ValueError("the shares must come from exactly the members of the commitment list, once each")
    terms = binding_terms(ordered, rhos)
    return _Session(ordered, ids, [by_id[i] for i in ids], terms, group_commitment(ordered, rhos, terms))


def _culprits(suite: Ciphersuite, message: bytes, session: _Session,
              public_key_package: PublicKeyPackage) -> tuple[int, ...]:
    """Every member whose share fails z_j*G == R_j + c*lambda_j*Y_j, with the session's R and binding terms:
    one multiplication and one base multiplication per share, one modular inverse for all the lambda_j."""
    r = encode(session.r_point)
    challenge = suite.challenge(r, public_key_package.group_public_key, message)
    checks = zip(session.ordered, session.shares, session.terms, lagrange_coefficients(session.ids))
    return tuple(c.identifier for c, share, term, lam in checks
                 if not _share_holds(suite, share, c, term, lam, challenge, r[0] == 3, public_key_package))


def invalid_shares(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
                   shares: Sequence[SignatureShare], public_key_package: PublicKeyPackage) -> tuple[int, ...]:
    """The identifiers of every member whose share does not verify, in identifier order; ``()`` if all do.

    The binding factors, R and the challenge are computed once for the whole session (``verify_signature_share``
    on each share would compute R t times). Errors as ``aggregate``: ``ValueError`` unless the shares come from
    exactly the members of the commitment list, all in the key package; ``InvalidContribution(None, ...)`` if
    the group commitment is the identity.
    """
    return _culprits(suite, message, _session(suite, message, commitments, shares, public_key_package),
                     public_key_package)


def aggregate(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
              shares: Sequence[SignatureShare], public_key_package: PublicKeyPackage) -> bytes:
    """Combine the signers' shares into the group signature (64 bytes BIP-340, or 65 in the RFC suite).

    ``ValueError`` unless the shares come from exactly the members of the commitment list, all in the key
    package. If the result does not verify: ``InvalidShares`` naming every member whose share is wrong (its
    ``signer`` is the first), or ``InvalidContribution(None, ...)`` if every share holds (an inconsistent key
    package) or R is the identity.
    """
    session = _session(suite, message, commitments, shares, public_key_package)
    r = encode(session.r_point)
    z = sum([s.z for s in session.shares]) % N
    signature = suite.encode_signature(r, z)
    if suite.bip340:
        if public_key_package.xonly_point.verify(signature, message):
            return signature
    elif _plain_holds(suite, session.r_point, r, z, public_key_package.group_point,
                      public_key_package.group_public_key, message):
        return signature
    culprits = _culprits(suite, message, session, public_key_package)
    if culprits:
        raise InvalidShares(culprits)
    raise InvalidContribution(None, "signature does not verify although every share does: "
                                    "the public key package is inconsistent")


def _plain_holds(suite: Ciphersuite, r_point: Point, r: bytes, z: int, y_point: Point, group_key: bytes,
                 message: bytes) -> bool:
    """RFC 9591 verification: z*G == R + c*Y."""
    return same_point(base_mul(z), point_sum([r_point, mul(y_point, suite.challenge(r, group_key, message))]))


def verify(suite: Ciphersuite, message: bytes, signature: bytes, group_public_key: bytes) -> bool:
    """Verify a group signature. BIP-340 suite: a 64-byte signature, key 32 bytes x-only or 33 compressed.

    Returns False for any invalid signature (wrong length, R or key not on the curve, z >= n);
    ``ValueError`` only for a message that is not bytes or a key of the wrong length.
    """
    if not isinstance(suite, Ciphersuite):
        raise ValueError("suite must be a Ciphersuite")
    if not isinstance(message, bytes) or not isinstance(group_public_key, bytes):
        raise ValueError("message and group public key must be bytes")
    key_lengths = (32, 33) if suite.bip340 else (33,)
    if len(group_public_key) not in key_lengths:
        raise ValueError(f"group public key must be {' or '.join(map(str, key_lengths))} bytes")
    if not isinstance(signature, bytes) or len(signature) != suite.signature_length:
        return False
    try:
        if suite.bip340:
            if len(group_public_key) == 33 and group_public_key[0] not in (2, 3):
                return False
            return PublicKeyXOnly(group_public_key[-32:]).verify(signature, message)
        r_point = point_from_bytes(signature[:33], None, "R")
        y_point = point_from_bytes(group_public_key, None, "group public key")
    except (ValueError, InvalidContribution):
        return False
    z = int.from_bytes(signature[33:], "big")
    return z < N and _plain_holds(suite, r_point, signature[:33], z, y_point, group_public_key, message)
