"""Helpers for the FROST tests: a seeded rng, one whole signing, and a Nostr event checked by nostr-sdk."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nostr_sdk
from hypothesis import HealthCheck, settings

from consensus.frost import (
    Ciphersuite,
    KeyPackage,
    PublicKeyPackage,
    SignatureShare,
    SigningCommitments,
    SigningNonces,
    aggregate,
    commit,
    sign,
    trusted_dealer_keygen,
    vss_verify,
)

# Hypothesis settings for the FROST property tests: few examples (each is a whole signing), no deadline.
EXAMPLES = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    """A reproducible byte source for keys and nonces in tests (never for real keys)."""
    return random.Random(seed).randbytes


@dataclass
class Group:
    suite: Ciphersuite
    key_packages: dict[int, KeyPackage]
    public: PublicKeyPackage


def new_group(suite: Ciphersuite, t: int, n: int, seed: int, secret_key: bytes | None = None) -> Group:
    shares, public = trusted_dealer_keygen(suite, t, n, secret_key=secret_key, rng=seeded_rng(seed))
    return Group(suite, {i: vss_verify(suite, s) for i, s in shares.items()}, public)


@dataclass
class Round:
    message: bytes
    commitments: list[SigningCommitments]
    nonces: dict[int, SigningNonces]


def round_one(group: Group, signers: Sequence[int], message: bytes, seed: int) -> Round:
    rng = seeded_rng(seed)
    made = {i: commit(group.suite, group.key_packages[i], rng) for i in signers}
    return Round(message, [made[i][1] for i in signers], {i: made[i][0] for i in signers})


def round_two(group: Group, run: Round) -> list[SignatureShare]:
    return [sign(group.suite, run.message, run.commitments, run.nonces[c.identifier],
                 group.key_packages[c.identifier]) for c in run.commitments]


def sign_all(group: Group, signers: Sequence[int], message: bytes, seed: int) -> bytes:
    run = round_one(group, signers, message, seed)
    return aggregate(group.suite, message, run.commitments, round_two(group, run), group.public)


def unsigned_event(xonly: bytes, content: str, created_at: int | None = None) -> nostr_sdk.UnsignedEvent:
    """A kind-1 event by the group key, with its id computed: the id is the message FROST signs."""
    builder = nostr_sdk.EventBuilder(nostr_sdk.Kind(1), content)
    if created_at is not None:
        builder = builder.custom_created_at(nostr_sdk.Timestamp.from_secs(created_at))
    return builder.finalize_unsigned(nostr_sdk.PublicKey.parse(xonly.hex())).ensure_id()


def event_id(event: nostr_sdk.UnsignedEvent) -> bytes:
    return bytes.fromhex(event.id().to_hex())


def nostr_accepts(event: nostr_sdk.UnsignedEvent, signature: bytes) -> bool:
    """nostr-sdk's own check (id and BIP-340 signature); a malformed signature counts as rejected."""
    try:
        return bool(event.add_signature(signature.hex()).verify())
    except nostr_sdk.NostrSdkError:
        return False
