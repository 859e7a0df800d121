"""Keys: trusted-dealer key generation with Feldman VSS (RFC 9591 appendix C), and the key objects.

A dealer splits a group secret s (new, or an existing nsec) with a random polynomial f of degree t-1,
f(0) = s; member i gets f(i) and everyone gets the VSS commitment (a_k * G for each coefficient) so each
member checks its share (``vss_verify``). Identifiers are 1..65535.

Rules: signing shares are secret, so they never appear in a repr (the fields are excluded) and never reach a
variable-time point operation. Public objects are validated when built; their points are parsed once and
kept on the (frozen) object, outside equality and repr.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coincurve import PublicKeyXOnly

from consensus.errors import InvalidContribution
from consensus.frost.group import (
    MAX_IDENTIFIER,
    POINT_LEN,
    N,
    Point,
    base_mul,
    check_identifier,
    encode,
    hex_bytes,
    mul,
    point_from_bytes,
    point_sum,
)
from consensus.frost.suite import Ciphersuite

Rng = Callable[[int], bytes]


def random_scalar(rng: Rng) -> int:
    """A uniform nonzero scalar by rejection sampling 32-byte draws."""
    while True:
        draw = rng(32)
        if not isinstance(draw, bytes) or len(draw) != 32:
            raise ValueError("rng must return the number of bytes asked for")
        value = int.from_bytes(draw, "big")
        if 0 < value < N:
            return value


def _check_secret_share(identifier: object, signing_share: object) -> None:
    check_identifier(identifier)
    if type(signing_share) is not int or not 0 < signing_share < N:
        raise ValueError("signing share must be an integer in 1..n-1")


def _check_encoded(data: object, what: str) -> bytes:
    if not isinstance(data, bytes) or len(data) != POINT_LEN:
        raise ValueError(f"{what} must be {POINT_LEN} bytes")
    return data


def _vss_evaluate(commitment: list[Point], identifier: int) -> bytes | None:
    """sum_k C_k * i^k, encoded: the verifying share the VSS commitment promises member i."""
    terms: list[Point | None] = [commitment[0]]
    power = 1
    for point in commitment[1:]:
        power = power * identifier % N
        terms.append(mul(point, power))
    total = point_sum(terms)
    return None if total is None else encode(total)


@dataclass(frozen=True)
class SecretShare:
    """What the dealer sends member ``identifier``: its signing share f(i) (secret) and the VSS commitment."""

    identifier: int
    signing_share: int = field(repr=False)
    vss_commitment: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_secret_share(self.identifier, self.signing_share)
        object.__setattr__(self, "vss_commitment", tuple(self.vss_commitment))
        if len(self.vss_commitment) < 2:
            raise ValueError("VSS commitment must have at least 2 points (threshold >= 2)")
        for point in self.vss_commitment:
            _check_encoded(point, "VSS commitment point")


@dataclass(frozen=True)
class KeyPackage:
    """A member's signing key: its share (secret), its verifying share, the group key and the threshold."""

    identifier: int
    signing_share: int = field(repr=False)
    verifying_share: bytes
    group_public_key: bytes
    min_signers: int

    def __post_init__(self) -> None:
        _check_secret_share(self.identifier, self.signing_share)
        _check_encoded(self.verifying_share, "verifying share")
        _check_encoded(self.group_public_key, "group public key")
        if type(self.min_signers) is not int or not 2 <= self.min_signers <= MAX_IDENTIFIER:
            raise ValueError("min_signers must be an integer in 2..65535")
        own = base_mul(self.signing_share)
        if own is None or encode(own) != self.verifying_share:
            raise ValueError("verifying share does not match the signing share")
        try:
            point_from_bytes(self.group_public_key, None, "group public key")
        except InvalidContribution as exc:
            raise ValueError(exc.what) from None


@dataclass(frozen=True)
class PublicKeyPackage:
    """The group's public facts: threshold, group key, every member's verifying share, the VSS commitment.

    Building one checks its shape and parses every point (``InvalidContribution(None, ...)`` for an invalid
    point, ``ValueError`` otherwise); ``verify_vss`` also checks the verifying shares against the commitment.
    """

    min_signers: int
    group_public_key: bytes
    verifying_shares: tuple[tuple[int, bytes], ...]
    vss_commitment: tuple[bytes, ...]

    def __post_init__(self) -> None:
        pairs = tuple(self.verifying_shares)
        if not all(isinstance(pair, tuple | list) and len(pair) == 2 for pair in pairs):
            raise ValueError("verifying shares must be (identifier, share) pairs")
        shares = tuple(sorted((check_identifier(i), _check_encoded(s, "verifying share")) for i, s in pairs))
        object.__setattr__(self, "verifying_shares", shares)
        object.__setattr__(self, "vss_commitment", tuple(self.vss_commitment))
        if len({i for i, _ in shares}) != len(shares):
            raise ValueError("duplicate identifier in verifying shares")
        if type(self.min_signers) is not int or not 2 <= self.min_signers <= len(shares):
            raise ValueError("min_signers must be an integer with 2 <= min_signers <= max_signers")
        if len(self.vss_commitment) != self.min_signers:
            raise ValueError("VSS commitment must have min_signers points")
        _check_encoded(self.group_public_key, "group public key")
        if self.vss_commitment[0] != self.group_public_key:
            raise ValueError("VSS commitment does not start with the group public key")
        points = {i: point_from_bytes(s, None, f"verifying share of member {i}") for i, s in shares}
        vss = [point_from_bytes(_check_encoded(c, "VSS commitment point"), None, "VSS commitment point")
               for c in self.vss_commitment]
        object.__setattr__(self, "_points", points)
        object.__setattr__(self, "_share_bytes", dict(shares))
        object.__setattr__(self, "_vss_points", vss)
        object.__setattr__(self, "_xonly", PublicKeyXOnly(self.group_public_key[1:]))

    def __reduce__(self) -> tuple[type[PublicKeyPackage], tuple[Any, ...]]:
        # Pickle and copy by the public fields; the cached points are rebuilt (they cannot be pickled).
        return type(self), (self.min_signers, self.group_public_key, self.verifying_shares, self.vss_commitment)

    @property
    def max_signers(self) -> int:
        return len(self.verifying_shares)

    @property
    def identifiers(self) -> tuple[int, ...]:
        return tuple(i for i, _ in self.verifying_shares)

    @property
    def xonly_public_key(self) -> bytes:
        """The 32-byte x-only group key: the federation's Nostr public key."""
        return self.group_public_key[1:]

    @property
    def group_point(self) -> Point:
        return self._vss_points[0]  # type: ignore[attr-defined,no-any-return]

    @property
    def xonly_point(self) -> PublicKeyXOnly:
        """The group key as a coincurve BIP-340 verifier."""
        return self._xonly  # type: ignore[attr-defined,no-any-return]

    def has_member(self, identifier: int) -> bool:
        return identifier in self._points  # type: ignore[attr-defined]

    def has_members(self, identifiers: Iterable[int]) -> bool:
        return self._points.keys() >= set(identifiers)  # type: ignore[attr-defined,no-any-return]

    def verifying_share(self, identifier: int) -> bytes:
        share: bytes | None = self._share_bytes.get(identifier)  # type: ignore[attr-defined]
        if share is None:
            raise ValueError(f"{identifier!r} is not a member of this key package")
        return share

    def verifying_point(self, identifier: int) -> Point:
        point: Point | None = self._points.get(identifier)  # type: ignore[attr-defined]
        if point is None:
            raise ValueError(f"{identifier!r} is not a member of this key package")
        return point

    def verify_vss(self) -> None:
        """Check every verifying share against the VSS commitment (t point multiplications per member)."""
        for identifier, share in self.verifying_shares:
            expected = _vss_evaluate(self._vss_points, identifier)  # type: ignore[attr-defined]
            if expected != share:
                raise InvalidContribution(None, f"verifying share of member {identifier} does not match "
                                                "the VSS commitment")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: hex strings, verifying shares keyed by the decimal identifier."""
        return {
            "min_signers": self.min_signers,
            "group_public_key": self.group_public_key.hex(),
            "verifying_shares": {str(i): s.hex() for i, s in self.verifying_shares},
            "vss_commitment": [c.hex() for c in self.vss_commitment],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PublicKeyPackage:
        """Strict inverse of ``to_dict``: exactly those keys, canonical decimal identifiers, lowercase hex."""
        if not isinstance(data, Mapping) or set(data) != {"min_signers", "group_public_key",
                                                           "verifying_shares", "vss_commitment"}:
            raise ValueError("public key package must have exactly min_signers, group_public_key, "
                             "verifying_shares, vss_commitment")
        shares = data["verifying_shares"]
        commitment = data["vss_commitment"]
        if not isinstance(shares, Mapping) or not isinstance(commitment, list):
            raise ValueError("verifying_shares must be an object and vss_commitment a list")
        return cls(
            min_signers=data["min_signers"],
            group_public_key=hex_point(data["group_public_key"], "group public key"),
            verifying_shares=tuple((_decimal_identifier(i), hex_point(s, f"verifying share {i}"))
                                   for i, s in shares.items()),
            vss_commitment=tuple(hex_point(c, "VSS commitment point") for c in commitment),
        )


def hex_point(text: object, what: str) -> bytes:
    return hex_bytes(text, POINT_LEN, what)


def _decimal_identifier(text: object) -> int:
    if not isinstance(text, str) or not text.isdecimal() or not text.isascii() or text != str(int(text)):
        raise ValueError(f"identifier must be a canonical decimal string, got {text!r}")
    return check_identifier(int(text))


def trusted_dealer_keygen(
    suite: Ciphersuite,
    min_signers: int,
    max_signers: int,
    *,
    secret_key: bytes | None = None,
    rng: Rng = os.urandom,
) -> tuple[dict[int, SecretShare], PublicKeyPackage]:
    """Split a new group secret, or ``secret_key`` (32 bytes, e.g. an nsec), t-of-n for members 1..n.

    With ``secret_key`` the group public key is that key's public key (same x-only key, the npub). The group
    key may have odd y; the BIP-340 suite negates at signing time, as the ZF crate does.
    Raises ``ValueError`` unless 2 <= min_signers <= max_signers <= 65535 and the secret is in 1..n-1.
    """
    if not isinstance(suite, Ciphersuite):
        raise ValueError("suite must be a Ciphersuite")
    for value in (min_signers, max_signers):
        if type(value) is not int:
            raise ValueError("min_signers and max_signers must be integers")
    if not 2 <= min_signers <= max_signers <= MAX_IDENTIFIER:
        raise ValueError(f"need 2 <= min_signers <= max_signers <= {MAX_IDENTIFIER}, "
                         f"got {min_signers} of {max_signers}")
    if secret_key is None:
        secret = random_scalar(rng)
    else:
        if not isinstance(secret_key, bytes) or len(secret_key) != 32:
            raise ValueError("secret key must be 32 bytes")
        secret = int.from_bytes(secret_key, "big")
        if not 0 < secret < N:
            raise ValueError("secret key is not a valid secp256k1 secret key")
    while True:
        coefficients = [secret] + [random_scalar(rng) for _ in range(min_signers - 1)]
        shares = {i: _evaluate(coefficients, i) for i in range(1, max_signers + 1)}
        if all(shares.values()):  # a zero share has probability ~n/2^256; draw another polynomial
            break
    commitment = tuple(_public(a) for a in coefficients)
    public = PublicKeyPackage(
        min_signers=min_signers,
        group_public_key=commitment[0],
        verifying_shares=tuple((i, _public(s)) for i, s in shares.items()),
        vss_commitment=commitment,
    )
    return {i: SecretShare(i, s, commitment) for i, s in shares.items()}, public


def _evaluate(coefficients: Iterable[int], x: int) -> int:
    """f(x) by Horner's rule, coefficients from the constant term up."""
    value = 0
    for coefficient in reversed(list(coefficients)):
        value = (value * x + coefficient) % N
    return value


def _public(secret: int) -> bytes:
    point = base_mul(secret)
    assert point is not None  # callers pass nonzero scalars
    return encode(point)


def vss_verify(suite: Ciphersuite, share: SecretShare) -> KeyPackage:
    """Check a dealer's share against its VSS commitment and derive the member's ``KeyPackage``.

    Raises ``InvalidContribution(None, ...)`` (the dealer is not a member) if the share does not match.
    """
    if not isinstance(suite, Ciphersuite) or not isinstance(share, SecretShare):
        raise ValueError("vss_verify takes a Ciphersuite and a SecretShare")
    commitment = [point_from_bytes(c, None, "VSS commitment point") for c in share.vss_commitment]
    verifying_share = _public(share.signing_share)
    expected = _vss_evaluate(commitment, share.identifier)
    if expected != verifying_share:
        raise InvalidContribution(None, f"share for member {share.identifier} does not match the VSS commitment")
    return KeyPackage(
        identifier=share.identifier,
        signing_share=share.signing_share,
        verifying_share=verifying_share,
        group_public_key=share.vss_commitment[0],
        min_signers=len(share.vss_commitment),
    )
