"""The public values of one signing session (RFC 9591 sections 4.4 and 4.5), computed once: ``SigningContext``.

Every party to a signing derives the same values from the message, the commitment list and the group key: the
binding factors rho_j = H1(Y || H4(msg) || H5(list) || j), the binding terms rho_j*E_j, the group commitment
R = sum(D_j + rho_j*E_j) and the challenge c. A coordinator that is also one of the signers would compute them
twice, in ``sign`` and in ``aggregate``; ``signing_context`` computes them once, and ``sign``, ``aggregate``,
``invalid_shares`` and ``verify_signature_share`` take the result as their optional ``context``.

Rules: a context holds no secret and is frozen; it is made only by ``signing_context`` (which checks the
commitment list and the key package exactly as the functions without a context do) and is the caller's to keep:
frost keeps no state. A function given a context first checks that it was made for the same suite, message,
commitment list and key (``ValueError`` otherwise), so the values of one session cannot sign or judge another.

Also here, for the paths without a context: ``prepare`` (the commitment list checks and the binding factors) and
``group_commitment``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from consensus.errors import InvalidContribution
from consensus.frost.group import Point, encode, mul, point_sum
from consensus.frost.keys import PublicKeyPackage
from consensus.frost.messages import SigningCommitments
from consensus.frost.suite import Ciphersuite

_by_identifier = attrgetter("identifier")


def encode_commitment_list(commitments: Sequence[SigningCommitments]) -> bytes:
    """RFC 9591 encode_group_commitment_list: SerializeScalar(id) || D || E for each, in identifier order."""
    return b"".join([c._encoded for c in commitments])  # type: ignore[attr-defined]


def binding_factor_prefix(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
                          group_public_key: bytes) -> bytes:
    """enc(Y) || H4(msg) || H5(commitment list): the input of every binding factor but the identifier."""
    return (suite.signing_key(group_public_key) + suite.h4(message)
            + suite.h5(encode_commitment_list(commitments)))


def _in_order(commitments: Sequence[SigningCommitments]) -> list[SigningCommitments]:
    try:
        return sorted(commitments, key=_by_identifier)
    except (TypeError, AttributeError):
        raise ValueError("commitments must be a sequence of SigningCommitments") from None


def prepare(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments], group_public_key: bytes,
            min_signers: int) -> tuple[list[SigningCommitments], list[int], list[int]]:
    """Check a commitment list; return it in identifier order, the identifiers, and each one's binding factor.

    ``ValueError`` for anything but commitment objects, duplicate identifiers, or fewer than ``min_signers``.
    """
    if type(suite) is not Ciphersuite or type(message) is not bytes:
        raise ValueError("need a Ciphersuite and a bytes message")
    ordered = _in_order(commitments)
    ids = [c.identifier for c in ordered]
    if len(ids) < min_signers or len(set(ids)) != len(ids) or any(type(c) is not SigningCommitments for c in ordered):
        if len(ids) < min_signers:
            raise ValueError(f"{len(ids)} commitments, fewer than the {min_signers} signers needed")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate identifier in the commitment list")
        raise ValueError("commitments must be a sequence of SigningCommitments")
    prefix = binding_factor_prefix(suite, message, ordered, group_public_key)
    return ordered, ids, suite.h1_many(prefix, [c._id_scalar for c in ordered])  # type: ignore[attr-defined]


def identity_commitment() -> InvalidContribution:
    # Binding factors make R depend on every commitment, so no member can steer it to the identity alone;
    # blame cannot be assigned to one member.
    return InvalidContribution(None, "the group commitment is the identity")


def group_commitment(ordered: Sequence[SigningCommitments], rhos: Sequence[int],
                     terms: Sequence[Point | None] | None = None) -> Point:
    """R = sum_j D_j + rho_j*E_j (public values only), with one point sum; ``terms`` are the rho_j*E_j if the
    caller already has them."""
    if terms is None:
        terms = [mul(c._binding_point, rho) for c, rho in zip(ordered, rhos)]  # type: ignore[attr-defined]
    total = point_sum([c._hiding_point for c in ordered] + list(terms))  # type: ignore[attr-defined]
    if total is None:
        raise identity_commitment()
    return total


@dataclass(frozen=True, init=False)
class SigningContext:
    """One session's public values: its suite, message and key package, the commitment list in identifier
    order, the identifiers, their binding factors, the encoded group commitment R and the challenge c.

    Made only by ``signing_context``; the binding terms and R as a point are kept outside the fields.
    """

    suite: Ciphersuite
    message: bytes
    public_key_package: PublicKeyPackage = field(repr=False)
    commitments: tuple[SigningCommitments, ...] = field(repr=False)
    identifiers: tuple[int, ...]
    binding_factors: tuple[int, ...] = field(repr=False)
    group_commitment: bytes
    challenge: int = field(repr=False)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickle and copy by the inputs; the points are computed again (they cannot be pickled).
        return signing_context, (self.suite, self.message, self.commitments, self.public_key_package)

    def check(self, suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments]) -> None:
        """``ValueError`` unless this context was made for this suite, message and commitment list (in any
        order), so a caller cannot use one session's values in another."""
        if suite is not self.suite and suite != self.suite:
            raise ValueError("the signing context was made for another suite")
        if type(message) is not bytes or message != self.message:
            raise ValueError("the signing context was made for another message")
        if commitments is not self.commitments and _in_order(commitments) != list(self.commitments):
            raise ValueError("the signing context was made for another commitment list")

    def check_key(self, public_key_package: PublicKeyPackage) -> None:
        """``ValueError`` unless this context was made with this public key package."""
        if public_key_package is not self.public_key_package and public_key_package != self.public_key_package:
            raise ValueError("the signing context was made for another public key package")


def signing_context(suite: Ciphersuite, message: bytes, commitments: Sequence[SigningCommitments],
                    public_key_package: PublicKeyPackage) -> SigningContext:
    """The public values of signing ``message`` with ``commitments``: t point multiplications and one sum.

    ``ValueError`` as ``aggregate`` for a commitment list that is not a valid signer set of the key package;
    ``InvalidContribution(None, ...)`` if R is the identity.
    """
    if not isinstance(public_key_package, PublicKeyPackage):
        raise ValueError("public_key_package must be a PublicKeyPackage")
    ordered, ids, rhos = prepare(suite, message, commitments, public_key_package.group_public_key,
                                 public_key_package.min_signers)
    if not public_key_package.has_members(ids):
        strangers = [i for i in ids if not public_key_package.has_member(i)]
        raise ValueError(f"{strangers} are not members of this key package")
    terms = tuple(mul(c._binding_point, rho) for c, rho in zip(ordered, rhos))  # type: ignore[attr-defined]
    r_point = group_commitment(ordered, rhos, terms)
    r = encode(r_point)
    context = object.__new__(SigningContext)
    context.__dict__.update(
        suite=suite, message=message, public_key_package=public_key_package, commitments=tuple(ordered),
        identifiers=tuple(ids), binding_factors=tuple(rhos), group_commitment=r,
        challenge=suite.challenge(r, public_key_package.group_public_key, message),
        _binding_terms=terms, _r_point=r_point,
    )
    return context
