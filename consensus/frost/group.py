"""The secp256k1 group as FROST uses it: order, strict parsing of points and scalars, small helpers.

Rules: every point and scalar that crosses the wire goes through ``parse_point`` / ``parse_scalar``. A wrong
length is the caller's mistake (``ValueError``); a well-framed but invalid value (off the curve, the identity,
a scalar >= n) is the sender's (``InvalidContribution``). Secret scalars only ever reach coincurve through
``PublicKey.from_secret`` (constant time); ``multiply`` is for public scalars and points.
"""

from __future__ import annotations

from collections.abc import Iterable

from coincurve import PublicKey

from consensus.errors import InvalidContribution

# Order of the secp256k1 group.
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
POINT_LEN = 33
SCALAR_LEN = 32
MAX_IDENTIFIER = 65535
_HEX_DIGITS = frozenset("0123456789abcdef")


def check_identifier(identifier: object) -> int:
    """Return ``identifier`` if it is an int in 1..65535, else raise ``ValueError``."""
    if type(identifier) is not int or not 1 <= identifier <= MAX_IDENTIFIER:
        raise ValueError(f"identifier must be an integer in 1..{MAX_IDENTIFIER}, got {identifier!r}")
    return identifier


def parse_point(data: bytes, signer: int | None, what: str = "point") -> PublicKey:
    """Parse a 33-byte compressed point; never returns the identity (it has no 33-byte encoding)."""
    if not isinstance(data, bytes) or len(data) != POINT_LEN:
        raise ValueError(f"{what} must be {POINT_LEN} bytes")
    if data[0] not in (2, 3):
        raise InvalidContribution(signer, f"{what} is not a compressed point")
    try:
        return PublicKey(data)
    except ValueError:
        raise InvalidContribution(signer, f"{what} is not a point on secp256k1") from None


def parse_scalar(data: bytes, signer: int | None, what: str = "scalar", *, nonzero: bool = False) -> int:
    """Parse a 32-byte big-endian scalar, rejecting values >= n (and zero when ``nonzero``)."""
    if not isinstance(data, bytes) or len(data) != SCALAR_LEN:
        raise ValueError(f"{what} must be {SCALAR_LEN} bytes")
    value = int.from_bytes(data, "big")
    if value >= N or (nonzero and value == 0):
        raise InvalidContribution(signer, f"{what} is not a scalar in range")
    return value


def hex_bytes(text: object, length: int, what: str) -> bytes:
    """Strict hex: a str of exactly 2*length lowercase hex digits (no spaces, no prefix)."""
    if not isinstance(text, str) or len(text) != 2 * length or not set(text) <= _HEX_DIGITS:
        raise ValueError(f"{what} must be {2 * length} lowercase hex digits")
    return bytes.fromhex(text)


def scalar_bytes(value: int) -> bytes:
    return value.to_bytes(SCALAR_LEN, "big")


def mul(point: PublicKey, scalar: int) -> PublicKey | None:
    """Public scalar times public point; ``None`` stands for the identity (scalar zero)."""
    scalar %= N
    return point.multiply(scalar.to_bytes(SCALAR_LEN, "big")) if scalar else None


def base_mul(scalar: int) -> PublicKey | None:
    """scalar * G in constant time (safe for secrets); ``None`` for zero."""
    scalar %= N
    return PublicKey.from_secret(scalar.to_bytes(SCALAR_LEN, "big")) if scalar else None


def point_sum(points: Iterable[PublicKey | None]) -> PublicKey | None:
    """Sum with one ``combine_keys`` call; ``None`` for the identity (coincurve raises on it)."""
    present = [p for p in points if p is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    try:
        return PublicKey.combine_keys(present)
    except ValueError:
        return None


def negate_encoded(point: bytes) -> bytes:
    """-P for a compressed encoding: the same x with the other y parity."""
    return bytes((point[0] ^ 1,)) + point[1:]


def has_odd_y(point: bytes) -> bool:
    return point[0] == 3


def lagrange_coefficient(identifier: int, identifiers: Iterable[int]) -> int:
    """lambda_i at x = 0 over ``identifiers`` (which contains ``identifier``), with one modular inverse.

    Numerator and denominator are kept as exact integers: for small signer sets the denominator is small,
    and Python's inverse of a small number costs almost nothing.
    """
    numerator = 1
    denominator = 1
    for other in identifiers:
        if other != identifier:
            numerator *= other
            denominator *= other - identifier
    return numerator * pow(denominator, -1, N) % N
