"""The two public objects members send while signing, with their wire encodings.

``SigningCommitments`` (round one): identifier (2 bytes, big-endian) || hiding || binding (33-byte compressed
points), 68 bytes. ``SignatureShare`` (round two): identifier (2 bytes) || z (32 bytes), 34 bytes.

Rules: parsing is strict. A wrong length or an identifier outside 1..65535 is a framing error (``ValueError``);
an invalid point or scalar is the named member's fault (``InvalidContribution(identifier, ...)``). Building an
object validates it the same way, and its points are parsed once and kept on the frozen object.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.errors import InvalidContribution
from consensus.frost.group import (
    POINT_LEN,
    SCALAR_LEN,
    N,
    Point,
    check_identifier,
    encode,
    hex_bytes,
    parse_scalar,
    point_from_bytes,
    scalar_bytes,
)

COMMITMENTS_LEN = 2 + 2 * POINT_LEN
SHARE_LEN = 2 + SCALAR_LEN


def _frame(data: object, length: int, what: str) -> tuple[int, bytes]:
    """Split ``identifier || body`` after checking the length; the identifier must be 1..65535."""
    if not isinstance(data, bytes) or len(data) != length:
        raise ValueError(f"{what} must be {length} bytes")
    return check_identifier(int.from_bytes(data[:2], "big")), data[2:]


def _cache(identifier: int, hiding: bytes, binding: bytes, hiding_point: Point,
           binding_point: Point) -> dict[str, object]:
    """Derived values kept on a frozen object (outside its fields): parsed points and the RFC 9591 encodings."""
    id_scalar = scalar_bytes(identifier)
    return {"_hiding_point": hiding_point, "_binding_point": binding_point, "_id_scalar": id_scalar,
            "_encoded": id_scalar + hiding + binding}


@dataclass(frozen=True)
class SigningCommitments:
    """Member ``identifier``'s round-one commitments to its hiding and binding nonces (D_i, E_i)."""

    identifier: int
    hiding: bytes
    binding: bytes

    def __post_init__(self) -> None:
        check_identifier(self.identifier)
        hiding_point = point_from_bytes(self.hiding, self.identifier, "hiding commitment")
        binding_point = point_from_bytes(self.binding, self.identifier, "binding commitment")
        self.__dict__.update(_cache(self.identifier, self.hiding, self.binding, hiding_point, binding_point))

    @classmethod
    def _from_points(cls, identifier: int, hiding: Point, binding: Point) -> SigningCommitments:
        """Build from points this process computed itself (no re-parsing)."""
        self = object.__new__(cls)
        hiding_bytes, binding_bytes = encode(hiding), encode(binding)
        id_scalar = scalar_bytes(identifier)
        self.__dict__.update(identifier=identifier, hiding=hiding_bytes, binding=binding_bytes,
                             _hiding_point=hiding, _binding_point=binding, _id_scalar=id_scalar,
                             _encoded=id_scalar + hiding_bytes + binding_bytes)
        return self

    def __reduce__(self) -> tuple[type[SigningCommitments], tuple[int, bytes, bytes]]:
        # Pickle and copy by the public fields; the cached points are rebuilt (they cannot be pickled).
        return type(self), (self.identifier, self.hiding, self.binding)

    @property
    def hiding_point(self) -> Point:
        return self._hiding_point  # type: ignore[attr-defined]

    @property
    def binding_point(self) -> Point:
        return self._binding_point  # type: ignore[attr-defined]

    def to_bytes(self) -> bytes:
        return self.identifier.to_bytes(2, "big") + self.hiding + self.binding

    @classmethod
    def from_bytes(cls, data: bytes) -> SigningCommitments:
        identifier, body = _frame(data, COMMITMENTS_LEN, "signing commitments")
        return cls(identifier, body[:POINT_LEN], body[POINT_LEN:])

    def hex(self) -> str:
        return self.to_bytes().hex()

    @classmethod
    def from_hex(cls, text: str) -> SigningCommitments:
        return cls.from_bytes(hex_bytes(text, COMMITMENTS_LEN, "signing commitments"))


@dataclass(frozen=True)
class SignatureShare:
    """Member ``identifier``'s round-two signature share z_i (a public scalar)."""

    identifier: int
    z: int

    def __post_init__(self) -> None:
        check_identifier(self.identifier)
        if type(self.z) is not int or self.z < 0:
            raise ValueError("signature share must be a non-negative integer")
        if self.z >= N:
            raise InvalidContribution(self.identifier, "signature share is not a scalar in range")

    @classmethod
    def _computed(cls, identifier: int, z: int) -> SignatureShare:
        """Build from values this process computed itself (already in range)."""
        self = object.__new__(cls)
        self.__dict__.update(identifier=identifier, z=z)
        return self

    def to_bytes(self) -> bytes:
        return self.identifier.to_bytes(2, "big") + scalar_bytes(self.z)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignatureShare:
        identifier, body = _frame(data, SHARE_LEN, "signature share")
        return cls(identifier, parse_scalar(body, identifier, "signature share"))

    def hex(self) -> str:
        return self.to_bytes().hex()

    @classmethod
    def from_hex(cls, text: str) -> SignatureShare:
        return cls.from_bytes(hex_bytes(text, SHARE_LEN, "signature share"))
