"""The secp256k1 group as FROST uses it: order, strict parsing of points and scalars, point arithmetic.

Rules: every point and scalar that crosses the wire goes through ``parse_point`` / ``parse_scalar`` (or
``point_from_bytes``). A wrong length is the caller's mistake (``ValueError``); a well-framed but invalid value
(off the curve, the identity, a scalar >= n) is the sender's (``InvalidContribution``).

Point arithmetic calls libsecp256k1 through coincurve's own cffi binding (the ``lib`` its ``PublicKey`` wraps),
on ``Point`` handles (``secp256k1_pubkey *``), because the wrappers' per-call overhead is a large share of a
2-of-3 signing. The identity has no handle: these functions return ``None`` for it, where coincurve would raise.
Secret scalars only ever reach ``base_mul`` (libsecp256k1's constant-time generator multiplication); ``mul``
(``tweak_mul``, whose time depends on the scalar) is for public scalars and points only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from coincurve import PublicKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from consensus.errors import InvalidContribution

# Order of the secp256k1 group.
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
POINT_LEN = 33
SCALAR_LEN = 32
MAX_IDENTIFIER = 65535
_HEX_DIGITS = frozenset("0123456789abcdef")

Point = Any  # a cffi ``secp256k1_pubkey *``; never the identity
_CTX = GLOBAL_CONTEXT.ctx  # read-only after creation, like coincurve's own use of it
_COMPRESSED = lib.SECP256K1_EC_COMPRESSED


def check_identifier(identifier: object) -> int:
    """Return ``identifier`` if it is an int in 1..65535, else raise ``ValueError``."""
    if type(identifier) is not int or not 1 <= identifier <= MAX_IDENTIFIER:
        raise ValueError(f"identifier must be an integer in 1..{MAX_IDENTIFIER}, got {identifier!r}")
    return identifier


def point_from_bytes(data: bytes, signer: int | None, what: str = "point") -> Point:
    """Parse a 33-byte compressed point to a handle; the identity has no 33-byte encoding."""
    if not isinstance(data, bytes) or len(data) != POINT_LEN:
        raise ValueError(f"{what} must be {POINT_LEN} bytes")
    if data[0] not in (2, 3):
        raise InvalidContribution(signer, f"{what} is not a compressed point")
    point = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_parse(_CTX, point, data, POINT_LEN):
        raise InvalidContribution(signer, f"{what} is not a point on secp256k1")
    return point


def parse_point(data: bytes, signer: int | None, what: str = "point") -> PublicKey:
    """Parse a 33-byte compressed point strictly, as a coincurve ``PublicKey``."""
    return PublicKey(point_from_bytes(data, signer, what))


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


def encode(point: Point) -> bytes:
    """The 33-byte compressed encoding."""
    out = ffi.new("unsigned char[33]")
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, ffi.new("size_t *", POINT_LEN), point, _COMPRESSED)
    return ffi.buffer(out)[:]  # type: ignore[no-any-return]


def base_mul(scalar: int) -> Point | None:
    """scalar * G in constant time (safe for secrets), for 0 <= scalar < n; ``None`` for zero."""
    out = ffi.new("secp256k1_pubkey *")
    return out if lib.secp256k1_ec_pubkey_create(_CTX, out, scalar.to_bytes(SCALAR_LEN, "big")) else None


def mul(point: Point, scalar: int) -> Point | None:
    """Public scalar (0 <= scalar < n) times a public point, in variable time; ``None`` for zero."""
    out = ffi.new("secp256k1_pubkey *", point[0])
    return out if lib.secp256k1_ec_pubkey_tweak_mul(_CTX, out, scalar.to_bytes(SCALAR_LEN, "big")) else None


def point_sum(points: Sequence[Point | None]) -> Point | None:
    """Sum with one libsecp256k1 call; ``None`` stands for the identity, in and out."""
    present = [p for p in points if p is not None] if None in points else points
    if not present:
        return None
    out = ffi.new("secp256k1_pubkey *")
    return out if lib.secp256k1_ec_pubkey_combine(_CTX, out, present, len(present)) else None


def same_point(a: Point | None, b: Point | None) -> bool:
    """Equality of two points (``None`` the identity), compared by libsecp256k1 without serialising them."""
    if a is None or b is None:
        return a is b
    return lib.secp256k1_ec_pubkey_cmp(_CTX, a, b) == 0  # type: ignore[no-any-return]


def negate_encoded(point: bytes) -> bytes:
    """-P for a compressed encoding: the same x with the other y parity."""
    return bytes((point[0] ^ 1,)) + point[1:]


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


def lagrange_coefficients(identifiers: Sequence[int]) -> list[int]:
    """lambda_i at x = 0 for every i of ``identifiers`` (distinct), in that order, with ONE modular inverse.

    lambda_i = P / (x_i * prod_{j != i} (x_j - x_i)) with P the product of all x_j; the denominators are
    inverted together (Montgomery's trick), since a coordinator checking t shares needs all t coefficients.
    """
    product = 1
    for x in identifiers:
        product *= x
    denominators = []
    for x in identifiers:
        denominator = x
        for other in identifiers:
            if other != x:
                denominator *= other - x
        denominators.append(denominator % N)
    prefix = [1]  # prefix[k] = d_0 * ... * d_{k-1}
    for denominator in denominators:
        prefix.append(prefix[-1] * denominator % N)
    inverse = pow(prefix[-1], -1, N)  # 1 / (d_0 * ... * d_{k}) as k walks down
    coefficients = [0] * len(denominators)
    for k in range(len(denominators) - 1, -1, -1):
        coefficients[k] = product * inverse * prefix[k] % N
        inverse = inverse * denominators[k] % N
    return coefficients
