"""BIP-340 signing with one of this member's own keys (its identity key), straight through libsecp256k1.

Every peer envelope and every request forwarded to the DVM is signed with the identity key, several times a
job. nostr-sdk's ``Keys.sign_schnorr`` crosses into Rust through several foreign calls (buffers, a handle
clone, a string back), and coincurve's ``PrivateKey.sign_schnorr`` makes the keypair again and verifies the
signature on every call; here the keypair is made once and each signature is one call into the libsecp256k1
that coincurve bundles (``bench/peers.py`` times the three side by side).

The key's bytes are read from nostr-sdk once, to make the keypair, and dropped; the keypair lives in memory
that only this object refers to, and nothing here prints, pickles or logs it.
"""

from __future__ import annotations

import os
from typing import NoReturn

from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT
from nostr_sdk import Keys

from consensus.nip90 import NostrEvent, UnsignedEvent


class Signer:
    __slots__ = ("_keypair", "pubkey")

    def __init__(self, keys: Keys) -> None:
        self.pubkey: str = keys.public_key().to_hex()  # x-only hex, as events carry it
        self._keypair = ffi.new("secp256k1_keypair *")
        secret = bytes.fromhex(keys.secret_key().to_hex())
        try:
            if not lib.secp256k1_keypair_create(GLOBAL_CONTEXT.ctx, self._keypair, secret):
                raise ValueError("not a valid secret key")
        finally:
            del secret

    def sign(self, digest: bytes, *, aux: bytes | None = None) -> bytes:
        """The 64-byte BIP-340 signature of a 32-byte ``digest`` (an event id), with fresh auxiliary randomness
        (``aux``: given only by tests, to reproduce BIP-340's own vectors)."""
        if len(digest) != 32:
            raise ValueError("a BIP-340 signature here signs a 32-byte digest")
        if aux is None:
            aux = os.urandom(32)
        elif len(aux) != 32:
            raise ValueError("BIP-340 auxiliary randomness is 32 bytes")
        signature = ffi.new("unsigned char[64]")
        if not lib.secp256k1_schnorrsig_sign32(GLOBAL_CONTEXT.ctx, signature, digest, self._keypair, aux):
            raise ValueError("libsecp256k1 could not sign")
        return bytes(ffi.buffer(signature))

    def sign_event(self, unsigned: UnsignedEvent) -> NostrEvent:
        if unsigned.pubkey != self.pubkey:
            raise ValueError("the event's pubkey is not this key's")
        return unsigned.with_signature(self.sign(unsigned.event_id()))

    def __repr__(self) -> str:
        return f"Signer(pubkey={self.pubkey})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Signer holds a secret key: it is not pickled")
