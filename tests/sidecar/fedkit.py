"""Test federations from a real trusted-dealer keyset: the federation file, the members' key packages and
identity keys, FROST co-signing of an event, and a small TOML writer for hand-made (often broken) files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nostr_sdk import Keys

from consensus.federation import Timeouts
from consensus.frost import (
    SECP256K1_TR,
    KeyPackage,
    aggregate,
    commit,
    sign,
    trusted_dealer_keygen,
    vss_verify,
)
from consensus.nip90 import NostrEvent, UnsignedEvent
from sidecar.federation_file import FederationFile, MemberEntry


@dataclass(frozen=True)
class DealtFederation:
    file: FederationFile
    key_packages: dict[int, KeyPackage]
    identities: dict[int, Keys]

    def cosign(self, event: UnsignedEvent, signers: tuple[int, ...] | None = None) -> NostrEvent:
        """``event`` signed by the group key: a FROST round among ``signers`` (default: the first t)."""
        signers = signers or tuple(sorted(self.key_packages))[: self.file.threshold]
        message = event.event_id()
        rounds = {i: commit(SECP256K1_TR, self.key_packages[i]) for i in signers}
        commitments = [c for _, c in rounds.values()]
        shares = [sign(SECP256K1_TR, message, commitments, nonces, self.key_packages[i])
                  for i, (nonces, _) in rounds.items()]
        signature = aggregate(SECP256K1_TR, message, commitments, shares, self.file.public_key_package())
        return event.with_signature(signature)


def make_federation(threshold: int = 2, members: int = 3, **fields: Any) -> DealtFederation:
    shares, package = trusted_dealer_keygen(SECP256K1_TR, threshold, members)
    identities = {i: Keys.generate() for i in shares}
    entries = tuple(MemberEntry(i, f"member-{i}", identities[i].public_key().to_hex(), package.verifying_share(i))
                    for i in sorted(shares))
    values: dict[str, Any] = {
        "name": "test federation", "group_pubkey": package.xonly_public_key.hex(), "threshold": threshold,
        "kinds": (5050,), "digest_policy": "exact", "relays": ("ws://127.0.0.1:7000",), "members": entries,
        "vss_commitment": package.vss_commitment, "timeouts": Timeouts(),
    }
    values.update(fields)
    return DealtFederation(FederationFile(**values), {i: vss_verify(SECP256K1_TR, s) for i, s in shares.items()},
                          identities)


def dump_toml(doc: dict[str, Any]) -> str:
    """TOML for a document of scalars, arrays, tables and arrays of tables (JSON strings are TOML strings)."""
    lines: list[str] = []
    later: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(v) if isinstance(v, str) else repr(v)

    def pairs(table: dict[str, Any]) -> list[str]:
        return [f"{json.dumps(k)} = {value(x)}" for k, x in table.items()]

    for key, v in doc.items():
        if isinstance(v, dict):
            later += [f"[{key}]", *pairs(v)]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for entry in v:
                later += [f"[[{key}]]", *pairs(entry)]
        else:
            lines += pairs({key: v})
    return "\n".join(lines + later) + "\n"
