"""The federation file dates the NIP-89 announcement, so every member builds the same kind 31990 event."""

from __future__ import annotations

import dataclasses

import pytest
from nostr_sdk import Keys

from consensus import frost
from sidecar.config import ConfigError, FederationFile, MemberEntry, parse_federation


def _federation(**changes: object) -> FederationFile:
    _, package = frost.trusted_dealer_keygen(frost.SECP256K1_TR, 2, 3)
    members = tuple(
        MemberEntry(i, f"m{i}", Keys.generate().public_key().to_hex(), share)
        for i, share in package.verifying_shares
    )
    federation = FederationFile(
        name="fed", group_pubkey=package.xonly_public_key.hex(), threshold=2, kinds=(5050, 5001),
        digest_policy="exact", relays=("wss://relay.example",), members=members,
        vss_commitment=package.vss_commitment, about="hashes text", announced_at=1_790_000_000,
    )
    return dataclasses.replace(federation, **changes)  # type: ignore[arg-type]


def test_announcement_fields_round_trip_and_build_one_event() -> None:
    federation = _federation()
    again = parse_federation(federation.to_toml())
    assert again == federation
    event = again.handler_info()
    assert event is not None and event == federation.handler_info()
    assert event.kind == 31990 and event.pubkey == federation.group_pubkey
    assert event.created_at == 1_790_000_000
    assert ("k", "5050") in event.tags and ("k", "5001") in event.tags
    assert '"about":"hashes text"' in event.content


def test_no_date_no_announcement() -> None:
    assert _federation(announced_at=None).handler_info() is None
    assert "announced_at" not in _federation(announced_at=None).to_toml()


def test_a_changed_kind_list_is_a_new_announcement() -> None:
    assert _federation().handler_info() != _federation(kinds=(5050,)).handler_info()


def test_a_bad_date_is_refused_with_the_field_named() -> None:
    text = _federation().to_toml().replace("announced_at = 1790000000", 'announced_at = "soon"')
    with pytest.raises(ConfigError, match="announced_at"):
        parse_federation(text)
