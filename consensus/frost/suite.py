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

_Z_PAD = bytes(64)  # one SHA-256 block of zeros, RFC 9380 expand_message_xmd
_FIELD_LEN = 48  # L = ceil((ceil(log2(n)) + 128) / 8) for secp256k1 (RFC 9380 hash_to_field)
_BIP340_CHALLENGE_TAG = hashlib.sha256(b"BIP0340/challenge").digest()


def _hash_to_field(prefix_state: hashlib._Hash, dst_prime: bytes, suffix: bytes) -> int:
    """hash_to_field(prefix || suffix, count=1) with expand_message_xmd(SHA-256), the prefix pre-absorbed."""
    h0 = prefix_state.copy()
    h0.update(suffix + b"\x00\x30\x00" + dst_prime)  # I2OSP(48, 2) || I2OSP(0, 1) || DST'
    b0 = h0.digest()
    b1 = hashlib.sha256(b0 + b"\x01" + dst_prime).digest()
    mixed = (int.from_bytes(b0, "big") ^ int.from_bytes(b1, "big")).to_bytes(32, "big")
    b2 = hashlib.sha256(mixed + b"\x02" + dst_prime).digest()
    return int.from_bytes(b1 + b2[: _FIELD_LEN - 32], "big") % N


@dataclass(frozen=True)
class Ciphersuite:
    """A FROST ciphersuite on secp256k1 with SHA-256; ``bip340`` selects the BIP-340 (x-only) variant."""

    name: str
    context: bytes
    bip340: bool

    @property
    def signature_length(self) -> int:
        return 64 if self.bip340 else 65

    def _dst_prime(self, label: bytes) -> bytes:
        dst = self.context + label
        return dst + bytes((len(dst),))

    def _h2f(self, label: bytes, data: bytes) -> int:
        state = hashlib.sha256(_Z_PAD)
        return _hash_to_field(state, self._dst_prime(label), data)

    def h1(self, data: bytes) -> int:
        """H1: the binding factor hash."""
        return self._h2f(b"rho", data)

    def h1_many(self, prefix: bytes, suffixes: Iterable[bytes]) -> list[int]:
        """H1(prefix || suffix) for each suffix, absorbing the shared prefix once."""
        state = hashlib.sha256(_Z_PAD + prefix)
        dst_prime = self._dst_prime(b"rho")
        return [_hash_to_field(state, dst_prime, suffix) for suffix in suffixes]

    def h2(self, data: bytes) -> int:
        """H2: the challenge hash (BIP-340 tagged hash in the TR suite)."""
        if self.bip340:
            digest = hashlib.sha256(_BIP340_CHALLENGE_TAG + _BIP340_CHALLENGE_TAG + data).digest()
            return int.from_bytes(digest, "big") % N
        return self._h2f(b"chal", data)

    def h3(self, data: bytes) -> int:
        """H3: the nonce hash."""
        return self._h2f(b"nonce", data)

    def h4(self, message: bytes) -> bytes:
        """H4: the message hash."""
        return hashlib.sha256(self.context + b"msg" + message).digest()

    def h5(self, encoded_commitments: bytes) -> bytes:
        """H5: the commitment list hash."""
        return hashlib.sha256(self.context + b"com" + encoded_commitments).digest()

    def signing_key(self, group_public_key: bytes) -> bytes:
        """The group key as signing sees it: with even y in the BIP-340 suite (the ZF crate's ``into_even_y``)."""
        return b"\x02" + group_public_key[1:] if self.bip340 else group_public_key

    def challenge(self, group_commitment: bytes, group_public_key: bytes, message: bytes) -> int:
        """c = H2(enc(R) || enc(Y) || msg); x-only encodings in the BIP-340 suite."""
        if self.bip340:
            return self.h2(group_commitment[1:] + group_public_key[1:] + message)
        return self.h2(group_commitment + group_public_key + message)

    def encode_signature(self, group_commitment: bytes, z: int) -> bytes:
        if self.bip340:
            return group_commitment[1:] + scalar_bytes(z)
        return group_commitment + scalar_bytes(z)


SECP256K1 = Ciphersuite("FROST(secp256k1, SHA-256)", b"FROST-secp256k1-SHA256-v1", bip340=False)
SECP256K1_TR = Ciphersuite("FROST(secp256k1, SHA-256) BIP-340", b"FROST-secp256k1-SHA256-TR-v1", bip340=True)
