"""``sidecar.schnorr.Signer``: BIP-340's own signing vectors (read from ../shared/vectors), and events it signs
verified by nostr-sdk as an independent implementation."""

from __future__ import annotations

import csv
import pickle

import pytest
from coincurve import PublicKeyXOnly
from nostr_sdk import Keys

from consensus.nip90 import UnsignedEvent
from sidecar.relay import to_sdk_event
from sidecar.schnorr import Signer
from tests.conftest import VECTORS


def signing_rows() -> list[dict[str, str]]:
    with (VECTORS / "bip340" / "test-vectors.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if r["secret key"] and len(r["message"]) == 64]


def test_the_vectors_have_signing_rows() -> None:
    assert len(signing_rows()) == 4


@pytest.mark.parametrize("row", signing_rows(), ids=lambda r: f"bip340-{r['index']}")
def test_bip340_signing_vector(row: dict[str, str]) -> None:
    signer = Signer(Keys.parse(row["secret key"].lower()))
    assert signer.pubkey == row["public key"].lower()
    signature = signer.sign(bytes.fromhex(row["message"]), aux=bytes.fromhex(row["aux_rand"]))
    assert signature.hex() == row["signature"].lower()


def test_a_signed_event_verifies_with_nostr_sdk() -> None:
    keys = Keys.generate()
    signer = Signer(keys)
    for n in range(20):
        event = signer.sign_event(UnsignedEvent(signer.pubkey, 1_700_000_000 + n, 5050, (("i", str(n), "text"),), ""))
        assert to_sdk_event(event).verify()
        assert to_sdk_event(event).author().to_hex() == keys.public_key().to_hex()


def test_fresh_randomness_each_time() -> None:
    signer = Signer(Keys.generate())
    digest = bytes(range(32))
    first, second = signer.sign(digest), signer.sign(digest)
    assert first != second
    key = PublicKeyXOnly(bytes.fromhex(signer.pubkey))
    assert key.verify(first, digest) and key.verify(second, digest)


def test_callers_mistakes() -> None:
    signer = Signer(Keys.generate())
    with pytest.raises(ValueError, match="32-byte digest"):
        signer.sign(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        signer.sign(bytes(32), aux=b"x")
    other = Keys.generate().public_key().to_hex()
    with pytest.raises(ValueError, match="not this key's"):
        signer.sign_event(UnsignedEvent(other, 1, 1, (), ""))


def test_the_key_stays_inside() -> None:
    keys = Keys.generate()
    signer = Signer(keys)
    secret = keys.secret_key().to_hex()
    assert secret not in repr(signer) and signer.pubkey in repr(signer)
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(signer)
    assert not hasattr(signer, "__dict__")
