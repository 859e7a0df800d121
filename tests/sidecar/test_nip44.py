"""NIP-44 v2 (``sidecar.peers.nip44``): the NIP's first example, and nostr-sdk as an independent implementation
decrypting what this module encrypts and the other way round."""

from __future__ import annotations

import base64

import pytest
from nostr_sdk import Keys, Nip44Version, nip44_decrypt, nip44_encrypt

from sidecar.peers.nip44 import MAX_PLAINTEXT, ConversationKey, Nip44Error, _chacha20, _hmac, padded_len

# The example in NIP-44 itself: secret keys 1 and 2, nonce 1, plaintext "a".
SPEC_SECRET_1 = (1).to_bytes(32, "big")
SPEC_PUBLIC_2 = bytes.fromhex("c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5")
SPEC_CONVERSATION_KEY = "c41c775356fd92eadc63ff5a0dc1da211b268cbea22316767095b2871ea1412d"
SPEC_PAYLOAD = ("AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABee0G5VSK0/9YypIObAtDKfYEAjD35uVkHyB0F4DwrcNaCXlCWZKaArsGrY"
                "6M9wnuTMxWfp1RTN9Xga8no+kF5Vsb")

ALICE, BOB, CAROL = Keys.generate(), Keys.generate(), Keys.generate()
SDK_MAX_PLAINTEXT = 65408  # nostr-sdk 0.45 refuses more ("message too long"), short of the NIP's 65535
TEXTS = ["a", "x" * 31, "y" * 32, "z" * 33, "é" * 100, "🍕" * 300, "q" * 1000, "w" * 20000, "m" * SDK_MAX_PLAINTEXT]


def conversation(me: Keys, them: Keys) -> ConversationKey:
    return ConversationKey.derive(bytes.fromhex(me.secret_key().to_hex()), bytes.fromhex(them.public_key().to_hex()))


def test_the_nip_example() -> None:
    key = ConversationKey.derive(SPEC_SECRET_1, SPEC_PUBLIC_2)
    assert key._key.hex() == SPEC_CONVERSATION_KEY
    assert key.encrypt("a", nonce=(1).to_bytes(32, "big")) == SPEC_PAYLOAD
    assert key.decrypt(SPEC_PAYLOAD) == "a"


def test_the_key_is_the_same_from_either_side() -> None:
    assert conversation(ALICE, BOB)._key == conversation(BOB, ALICE)._key != conversation(ALICE, CAROL)._key


@pytest.mark.parametrize("text", TEXTS, ids=lambda t: f"{len(t.encode())}B")
def test_nostr_sdk_reads_what_we_write_and_we_read_what_it_writes(text: str) -> None:
    ours = conversation(ALICE, BOB).encrypt(text)
    assert nip44_decrypt(BOB.secret_key(), ALICE.public_key(), ours) == text
    theirs = nip44_encrypt(BOB.secret_key(), ALICE.public_key(), text, Nip44Version.V2)
    assert conversation(ALICE, BOB).decrypt(theirs) == text
    assert len(ours) == len(theirs)  # the same padding bucket


@pytest.mark.parametrize("length", [1, 16, 32, 33, 64, 65, 100, 256, 257, 320, 383, 385, 512, 515, 1020, 1025, SDK_MAX_PLAINTEXT])
def test_padding_matches_nostr_sdk(length: int) -> None:
    payload = nip44_encrypt(ALICE.secret_key(), BOB.public_key(), "p" * length, Nip44Version.V2)
    assert len(base64.b64decode(payload)) - 1 - 32 - 2 - 32 == padded_len(length)


def test_the_largest_plaintext_the_nip_allows() -> None:
    key = conversation(ALICE, BOB)
    text = "L" * MAX_PLAINTEXT
    assert conversation(BOB, ALICE).decrypt(key.encrypt(text)) == text


def test_a_fresh_nonce_each_time() -> None:
    key = conversation(ALICE, BOB)
    assert key.encrypt("same") != key.encrypt("same")


def flip(payload: str, index: int) -> str:
    raw = bytearray(base64.b64decode(payload))
    raw[index] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(("payload", "why"), [
    (flip(SPEC_PAYLOAD, 40), "MAC"),  # the ciphertext
    (flip(SPEC_PAYLOAD, 5), "MAC"),  # the nonce
    (flip(SPEC_PAYLOAD, -1), "MAC"),  # the MAC
    (flip(SPEC_PAYLOAD, 0), "version"),
    ("#" + SPEC_PAYLOAD[1:], "version"),
    (SPEC_PAYLOAD[:100], "characters"),
    ("A" * 90000, "characters"),
    (SPEC_PAYLOAD[:-4] + "!!!!", "base64"),
    ("", "non-empty"),
])
def test_invalid_payloads_say_why(payload: str, why: str) -> None:
    with pytest.raises(Nip44Error, match=why):
        ConversationKey.derive(SPEC_SECRET_1, SPEC_PUBLIC_2).decrypt(payload)


def test_another_conversation_cannot_read_it() -> None:
    with pytest.raises(Nip44Error, match="MAC"):
        conversation(CAROL, BOB).decrypt(conversation(ALICE, BOB).encrypt("for bob"))


def test_bad_padding_is_refused_even_with_a_valid_mac() -> None:
    # A sender that claims a length its padding does not match: authenticated, but still not NIP-44.
    key = ConversationKey.derive(SPEC_SECRET_1, SPEC_PUBLIC_2)
    nonce = bytes(32)
    chacha_key, chacha_nonce, hmac_key = key._message_keys(nonce)
    ciphertext = _chacha20(chacha_key, chacha_nonce, (40).to_bytes(2, "big") + b"a" * 30 + bytes(32))
    forged = base64.b64encode(b"\x02" + nonce + ciphertext + _hmac(hmac_key, nonce + ciphertext)).decode()
    with pytest.raises(Nip44Error, match="padding"):
        key.decrypt(forged)


def test_callers_mistakes() -> None:
    key = ConversationKey.derive(SPEC_SECRET_1, SPEC_PUBLIC_2)
    with pytest.raises(ValueError, match="plaintext"):
        key.encrypt("")
    with pytest.raises(ValueError, match="plaintext"):
        key.encrypt("x" * (MAX_PLAINTEXT + 1))
    with pytest.raises(ValueError, match="nonce"):
        key.encrypt("x", nonce=b"short")
    with pytest.raises(ValueError, match="not a valid"):
        ConversationKey.derive(SPEC_SECRET_1, bytes(32))  # x = 0 is not on the curve
    with pytest.raises(ValueError, match="not a valid"):
        ConversationKey.derive(bytes(32), SPEC_PUBLIC_2)  # zero is not a secret key


def test_the_key_never_shows() -> None:
    key = ConversationKey.derive(SPEC_SECRET_1, SPEC_PUBLIC_2)
    assert SPEC_CONVERSATION_KEY not in repr(key) and SPEC_CONVERSATION_KEY not in str(key)
    with pytest.raises(Nip44Error) as failure:
        key.decrypt(flip(SPEC_PAYLOAD, 40))
    assert SPEC_CONVERSATION_KEY not in str(failure.value)
