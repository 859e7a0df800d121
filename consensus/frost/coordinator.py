"""The coordinator's side of FROST (RFC 9591 section 5.3): share verification, aggregation, and ``verify``.

``aggregate`` computes R once (or takes it from the caller's ``SigningContext``), sums the shares and verifies
the final signature. Because the Lagrange-weighted verifying shares sum to the group key, a signature that
verifies proves the shares were good enough; only when it fails is every share checked on its own, to name the
culprits (as the ZF crate does). A share check is z_i*G == R_i + c*lambda_i*Y_i, with R_i = D_i + rho_i*E_i,
and in the BIP-340 suite R_i and Y_i negated when R or the group key has odd y. The context keeps the
rho_i*E_i computed for R, so checking all t shares costs t more multiplications and t base multiplications,
not t times R (``invalid_shares``; ``verify_signature_share`` is for one share alone).

Rules: the coordinator holds no secret; the caller's mistakes (sets that do not match, non-members) are
``ValueError``; bad shares are ``InvalidContribution(identifier, ...)``, from ``aggregate`` the subclass
``InvalidShares`` naming every culprit.
"""

from __future__ import annotations

from collections.abc import Sequence

from coincurve import PublicKeyXOnly

from consensus.errors import InvalidContribution
from consensus.frost.context import SigningContext, signing_context
from consensus.frost.group import (
    N,
    Point,
    base_mul,
    lagrange_coefficient,
    lagrange_coefficients,
    mul,
    point_from_bytes,
    point_sum,
    same_point,
)
from consensus.frost.keys import PublicKeyPackage
from consensus.frost.messages import SignatureShare, SigningCommitments
from consensus.frost.suite import Ciphersuite


class InvalidShares(InvalidContribution):
    """The signature shares of ``signers`` (identifier order, at least one) do not verify; ``signer`` is the
    first of them, so a caller that wants one name still has it."""

    def __init__(self, signers: tuple[int, ...]) -> None:
        others = f" (nor do those of members {', '.join(map(str, signers[1:]))})" if len(signers) > 1 else ""
        super().__init__(signers[0], f"signature share does not verify{others}")
        self.signers = signers

    def __reduce__(self) -> tuple[type[InvalidShares], tuple[tuple[int, ...]]]:
        return type(self), (self.signers,)


def _context(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
             public_key_package: PublicKeyPackage, context: SigningContext | None) -> SigningContext:
    """The caller's context once it is checked against the call, or a new one."""
    if context is None:
        return signing_context(suite, message, commitments, public_key_package)
    if type(context) is not SigningContext:
        raise ValueError("context must be a SigningContext")
    context.check(suite, message, commitments)
    context.check_key(public_key_package)
    return context


def _share_holds(context: SigningContext, k: int, share: SignatureShare, lam: int) -> bool:
    """z*G == R_k + c*lambda*Y_k for the k-th member of the session (BIP-340: R_k and Y_k with the parities of
    R and the group key)."""
    # z*G == sr*(D + rho*E) + sy*c*lam*Y  <=>  sr*z*G == D + rho*E + sr*sy*c*lam*Y   (sr, sy = +-1)
    bip340 = context.suite.bip340
    public = context.public_key_package
    sign_r = -1 if bip340 and context.group_commitment[0] == 3 else 1
    sign_y = -1 if bip340 and public.group_public_key[0] == 3 else 1
    lhs = base_mul(sign_r * share.z % N)
    rhs = point_sum([context.commitments[k].hiding_point, context._binding_terms[k],  # type: ignore[attr-defined]
                     mul(public.verifying_point(share.identifier), sign_r * sign_y * context.challenge * lam % N)])
    return same_point(lhs, rhs)


def verify_signature_share(suite: Ciphersuite, share: SignatureShare, message: bytes,
                           commitments: Sequence[SigningCommitments],
                           public_key_package: PublicKeyPackage, context: SigningContext | None = None) -> None:
    """Check one member's share; raises ``InvalidContribution(share.identifier, ...)`` if it is wrong.

    ``ValueError`` if the share's member has no commitment in the list or is not in the key package, or the
    ``context`` was made for another session. To check many shares of one session, ``invalid_shares``.
    """
    if type(share) is not SignatureShare:
        raise ValueError("share must be a SignatureShare")
    context = _context(suite, message, commitments, public_key_package, context)
    if share.identifier not in context.identifiers:
        raise ValueError(f"member {share.identifier} has no commitment in the list")
    k = context.identifiers.index(share.identifier)
    if not _share_holds(context, k, share, lagrange_coefficient(share.identifier, context.identifiers)):
        raise InvalidContribution(share.identifier, "signature share does not verify")


def _in_session_order(context: SigningContext, shares: Sequence[SignatureShare]) -> list[SignatureShare]:
    """The shares in identifier order; ``ValueError`` unless they come from exactly the session's signers."""
    if isinstance(shares, (bytes, str)) or not all(type(s) is SignatureShare for s in shares):
        raise ValueError("shares must be a sequence of SignatureShare")
    by_id = {s.identifier: s for s in shares}
    if len(by_id) != len(shares) or tuple(sorted(by_id)) != context.identifiers:
        raise ValueError("the shares must come from exactly the members of the commitment list, once each")
    return [by_id[i] for i in context.identifiers]


def _culprits(context: SigningContext, shares: Sequence[SignatureShare]) -> tuple[int, ...]:
    """Every member whose share (in identifier order) fails z_j*G == R_j + c*lambda_j*Y_j, with the context's
    R and binding terms: one multiplication and one base multiplication per share, one modular inverse for all
    the lambda_j."""
    lambdas = lagrange_coefficients(context.identifiers)
    return tuple(share.identifier for k, (share, lam) in enumerate(zip(shares, lambdas))
                 if not _share_holds(context, k, share, lam))


def invalid_shares(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
                   shares: Sequence[SignatureShare], public_key_package: PublicKeyPackage,
                   context: SigningContext | None = None) -> tuple[int, ...]:
    """The identifiers of every member whose share does not verify, in identifier order; ``()`` if all do.

    The binding factors, R and the challenge are computed once for the whole session (``verify_signature_share``
    on each share would compute R t times), or taken from ``context``. Errors as ``aggregate``: ``ValueError``
    unless the shares come from exactly the members of the commitment list, all in the key package, or if the
    context was made for another session; ``InvalidContribution(None, ...)`` if the group commitment is the
    identity.
    """
    context = _context(suite, message, commitments, public_key_package, context)
    return _culprits(context, _in_session_order(context, shares))


def aggregate(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
              shares: Sequence[SignatureShare], public_key_package: PublicKeyPackage,
              context: SigningContext | None = None) -> bytes:
    """Combine the signers' shares into the group signature (64 bytes BIP-340, or 65 in the RFC suite).

    ``ValueError`` unless the shares come from exactly the members of the commitment list, all in the key
    package, or if ``context`` was made for another session (with the right one, R is not computed again:
    the final verification is the only point operation). If the result does not verify: ``InvalidShares``
    naming every member whose share is wrong (its ``signer`` is the first), or ``InvalidContribution(None,
    ...)`` if every share holds (an inconsistent key package) or R is the identity.
    """
    context = _context(suite, message, commitments, public_key_package, context)
    ordered_shares = _in_session_order(context, shares)
    r = context.group_commitment
    z = sum([s.z for s in ordered_shares]) % N
    signature = suite.encode_signature(r, z)
    if suite.bip340:
        if public_key_package.xonly_point.verify(signature, message):
            return signature
    elif _plain_holds(suite, context._r_point, r, z, public_key_package.group_point,  # type: ignore[attr-defined]
                      public_key_package.group_public_key, message):
        return signature
    culprits = _culprits(context, ordered_shares)
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
