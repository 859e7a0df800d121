"""The two FROST ciphersuites on secp256k1 and their hash functions H1..H5 (RFC 9591 section 6.5).

``SECP256K1`` is RFC 9591 FROST(secp256k1, SHA-256): 65-byte signatures (compressed R || z), challenge
H2(enc(R) || enc(Y) || msg). ``SECP256K1_TR`` is the BIP-340 suite of the ZcashFoundation ``frost-secp256k1-tr``
crate: context "FROST-secp256k1-SHA256-TR-v1", challenge the BIP-340 tagged hash over x(R) || x(Y) || msg,
the group key and R taken with even y (shares and nonces negated to match), 64-byte signatures, and NO Taproot
tweak: the Nostr public key is the untweaked group key.

The suites are immutable values; everything here is a pure function of its inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from consensus.frost.group import N, scalar_bytes

sha256 = hashlib.sha256
_Z_PAD_STATE = sha256(bytes(64))  # Z_pad, one SHA-256 block of zeros (RFC 9380 expand_message_xmd); only copied
_BIP340_CHALLENGE_PREFIX = 2 * sha256(b"BIP0340/challenge").digest()  # tagged hash: SHA256(tag) twice


def _field_hash_tails(dst: bytes) -> tuple[bytes, bytes, bytes]:
    """The constant tails of expand_message_xmd(SHA-256, len_in_bytes=48) for one DST (RFC 9380 5.3.1)."""
    dst_prime = dst + bytes((len(dst),))
    return b"\x00\x30\x00" + dst_prime, b"\x01" + dst_prime, b"\x02" + dst_prime


def _hash_to_field(prefix: bytes, suffixes: Iterable[bytes], tails: tuple[bytes, bytes, bytes]) -> list[int]:
    """hash_to_field(prefix || suffix, count=1) for each suffix: expand_message_xmd(SHA-256) to L = 48 bytes,
    reduced mod n. The shared prefix is absorbed once; this runs several times per signing, so it is one loop."""
    tail0, tail1, tail2 = tails
    absorbed = _Z_PAD_STATE  # only ever copied below
    if prefix:
        absorbed = absorbed.copy()
        absorbed.update(prefix)
    values = []
    for suffix in suffixes:
        h0 = absorbed.copy()
        h0.update(suffix + tail0)
        b0 = h0.digest()
        b1 = sha256(b0 + tail1).digest()
        b2 = sha256((int.from_bytes(b0, "big") ^ int.from_bytes(b1, "big")).to_bytes(32, "big") + tail2).digest()
        values.append(int.from_bytes(b1 + b2[:16], "big") % N)
    return values


@dataclass(frozen=True)
class Ciphersuite:
    """A FROST ciphersuite on secp256k1 with SHA-256; ``bip340`` selects the BIP-340 (x-only) variant."""

    name: str
    context: bytes
    bip340: bool

    def __post_init__(self) -> None:
        for label in ("rho", "chal", "nonce"):
            object.__setattr__(self, f"_{label}_tails", _field_hash_tails(self.context + label.encode()))
        object.__setattr__(self, "_msg_label", self.context + b"msg")
        object.__setattr__(self, "_com_label", self.context + b"com")

    @property
    def signature_length(self) -> int:
        return 64 if self.bip340 else 65

    def h1(self, data: bytes) -> int:
        """H1: the binding factor hash."""
        return _hash_to_field(b"", (data,), self._rho_tails)[0]  # type: ignore[attr-defined]

    def h1_many(self, prefix: bytes, suffixes: Iterable[bytes]) -> list[int]:
        """H1(prefix || suffix) for each suffix."""
        return _hash_to_field(prefix, suffixes, self._rho_tails)  # type: ignore[attr-defined]

    def h2(self, data: bytes) -> int:
        """H2: the challenge hash (BIP-340 tagged hash in the TR suite)."""
        if self.bip340:
            digest = sha256(_BIP340_CHALLENGE_PREFIX + data).digest()
            return int.from_bytes(digest, "big") % N
        return _hash_to_field(b"", (data,), self._chal_tails)[0]  # type: ignore[attr-defined]

    def h3(self, data: bytes) -> int:
        """H3: the nonce hash."""
        return _hash_to_field(b"", (data,), self._nonce_tails)[0]  # type: ignore[attr-defined]

    def h3_many(self, datas: Iterable[bytes]) -> list[int]:
        """H3 of each input."""
        return _hash_to_field(b"", datas, self._nonce_tails)  # type: ignore[attr-defined]

    def h4(self, message: bytes) -> bytes:
        """H4: the message hash."""
        return sha256(self._msg_label + message).digest()  # type: ignore[attr-defined,no-any-return]

    def h5(self, encoded_commitments: bytes) -> bytes:
        """H5: the commitment list hash."""
        return sha256(self._com_label + encoded_commitments).digest()  # type: ignore[attr-defined,no-any-return]

    def signing_key(self, group_public_key: bytes) -> bytes:
        """The group key as signing sees it: with even y in the BIP-340 suite (the ZF crate's ``into_even_y``)."""
        return b"\x02" + group_public_key[1:] if self.bip340 else group_public_key

    def challenge(self, group_commitment: bytes, group_public_key: bytes, message: bytes) -> int:
        """c = H2(enc(R) || enc(Y) || msg); x-only encodings in the BIP-340 suite (so either parity of Y works)."""
        if self.bip340:
            digest = sha256(_BIP340_CHALLENGE_PREFIX + group_commitment[1:] + group_public_key[1:] + message).digest()
            return int.from_bytes(digest, "big") % N
        return self.h2(group_commitment + group_public_key + message)

    def encode_signature(self, group_commitment: bytes, z: int) -> bytes:
        if self.bip340:
            return group_commitment[1:] + scalar_bytes(z)
        return group_commitment + scalar_bytes(z)


SECP256K1 = Ciphersuite("FROST(secp256k1, SHA-256)", b"FROST-secp256k1-SHA256-v1", bip340=False)
SECP256K1_TR = Ciphersuite("FROST(secp256k1, SHA-256) BIP-340", b"FROST-secp256k1-SHA256-TR-v1", bip340=True)
