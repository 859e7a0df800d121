"""NIP-44 version 2 encryption between two Nostr keys, with the conversation key computed once per peer.

nostr-sdk's ``nip44_encrypt``/``nip44_decrypt`` redo the key agreement on every call and cross the bindings with
every argument: ~230/260 µs a call on a 2-core machine, where this module's ~17/20 µs use the same primitives
(libsecp256k1 through coincurve for the one ECDH, HMAC-SHA256 from the standard library, ChaCha20 from
``cryptography``). The envelope codec encrypts and decrypts every peer message, so that difference is a large
part of a member's CPU per job. Interoperability with nostr-sdk is tested both ways.

A ``ConversationKey`` is a secret: whoever holds it reads the pair's messages. It never appears in a repr, log
or exception, and it lives only in the process's memory, like the key share.

    key = ConversationKey.derive(my_secret_bytes, their_xonly_public_bytes)
    payload = key.encrypt("text")          # base64, as the NIP specifies
    key.decrypt(payload) == "text"         # Nip44Error (a ValueError) for anything not valid
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os

from coincurve import PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

VERSION = 2
SALT = b"nip44-v2"
MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 65535
MIN_PAYLOAD, MAX_PAYLOAD = 132, 87472  # base64 characters (NIP-44 "decode_payload")
MIN_DECODED, MAX_DECODED = 99, 65603  # bytes: version, nonce, padded text, MAC
_COUNTER_ZERO = bytes(4)  # cryptography's ChaCha20 nonce is the 32-bit block counter, then the 96-bit nonce


class Nip44Error(ValueError):
    """A payload that is not a valid NIP-44 v2 message for this conversation key (says why, never the key)."""


def padded_len(length: int) -> int:
    """NIP-44 v2 ``calc_padded_len``: the plaintext length rounded up to its padding bucket."""
    if length <= 32:
        return 32
    next_power = 1 << (length - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((length - 1) // chunk + 1)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


class ConversationKey:
    """The NIP-44 v2 conversation key of two Nostr keys: the same from either side."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != 32:
            raise ValueError("a conversation key is 32 bytes")
        self._key = key

    @classmethod
    def derive(cls, secret: bytes, public_xonly: bytes) -> ConversationKey:
        """HKDF-extract (salt ``nip44-v2``) of the x coordinate of ``secret`` times the peer's point
        (``ValueError`` for a secret or public key that is not valid)."""
        if len(public_xonly) != 32:
            raise ValueError("a Nostr public key is 32 bytes (x only)")
        try:
            shared = PublicKey(b"\x02" + public_xonly).multiply(secret).format()[1:33]
        except (ValueError, TypeError):
            raise ValueError("not a valid secret key and x-only public key pair") from None
        return cls(_hmac(SALT, shared))

    def __repr__(self) -> str:
        return "ConversationKey(<secret>)"

    def _message_keys(self, nonce: bytes) -> tuple[bytes, bytes, bytes]:
        """HKDF-expand to 76 bytes: the ChaCha20 key, the ChaCha20 nonce and the HMAC key."""
        t1 = _hmac(self._key, nonce + b"\x01")
        t2 = _hmac(self._key, t1 + nonce + b"\x02")
        t3 = _hmac(self._key, t2 + nonce + b"\x03")
        okm = t1 + t2 + t3
        return okm[:32], okm[32:44], okm[44:76]

    def encrypt(self, plaintext: str, nonce: bytes | None = None) -> str:
        """The base64 payload; ``nonce`` (32 bytes) only for tests, else fresh from the OS."""
        data = plaintext.encode("utf-8")
        if not MIN_PLAINTEXT <= len(data) <= MAX_PLAINTEXT:
            raise ValueError(f"NIP-44 plaintext must be {MIN_PLAINTEXT}..{MAX_PLAINTEXT} bytes, not {len(data)}")
        nonce = os.urandom(32) if nonce is None else nonce
        if len(nonce) != 32:
            raise ValueError("a NIP-44 nonce is 32 bytes")
        chacha_key, chacha_nonce, hmac_key = self._message_keys(nonce)
        padded = len(data).to_bytes(2, "big") + data + bytes(padded_len(len(data)) - len(data))
        ciphertext = _chacha20(chacha_key, chacha_nonce, padded)
        mac = _hmac(hmac_key, nonce + ciphertext)
        return base64.b64encode(bytes([VERSION]) + nonce + ciphertext + mac).decode("ascii")

    def decrypt(self, payload: str) -> str:
        """The plaintext of a payload (``Nip44Error`` saying what is wrong if it is not valid)."""
        if not isinstance(payload, str) or not payload:
            raise Nip44Error("a NIP-44 payload must be a non-empty string")
        if payload[0] == "#":
            raise Nip44Error("unsupported NIP-44 version (the payload starts with '#')")
        if not MIN_PAYLOAD <= len(payload) <= MAX_PAYLOAD:
            raise Nip44Error(f"a NIP-44 payload is {MIN_PAYLOAD}..{MAX_PAYLOAD} characters, not {len(payload)}")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise Nip44Error("the NIP-44 payload is not base64") from None
        if not MIN_DECODED <= len(raw) <= MAX_DECODED:
            raise Nip44Error(f"a decoded NIP-44 payload is {MIN_DECODED}..{MAX_DECODED} bytes, not {len(raw)}")
        if raw[0] != VERSION:
            raise Nip44Error(f"unsupported NIP-44 version {raw[0]}")
        nonce, ciphertext, mac = raw[1:33], raw[33:-32], raw[-32:]
        chacha_key, chacha_nonce, hmac_key = self._message_keys(nonce)
        if not hmac.compare_digest(mac, _hmac(hmac_key, nonce + ciphertext)):
            raise Nip44Error("the NIP-44 MAC does not match (tampered, or not for this conversation)")
        padded = _chacha20(chacha_key, chacha_nonce, ciphertext)
        length = int.from_bytes(padded[:2], "big")
        if not MIN_PLAINTEXT <= length <= MAX_PLAINTEXT or len(padded) != 2 + padded_len(length):
            raise Nip44Error("the NIP-44 padding is not valid")
        try:
            return padded[2:2 + length].decode("utf-8")
        except UnicodeDecodeError:
            raise Nip44Error("the NIP-44 plaintext is not UTF-8") from None


def _chacha20(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """ChaCha20 (RFC 8439, block counter starting at 0) of ``data``: encryption and decryption alike."""
    return Cipher(algorithms.ChaCha20(key, _COUNTER_ZERO + nonce), mode=None).encryptor().update(data)
