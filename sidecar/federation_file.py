"""The federation file: the one public TOML file every member holds, the same bytes everywhere.

It names the federation's npub, the threshold, the served kinds, the digest policy, the public relays, the
protocol's time limits and each member (index, identity npub, verifying share), and embeds the public keyset
(every member's verifying share plus the VSS commitment), so no other public file needs to be shared.
Rules: no secret is ever in it; loading refuses anything inconsistent (the npub against the commitment, the
verifying shares against the commitment, indices, kinds, relays, policy) with one ``ConfigError`` line, and
``to_toml`` writes only what ``parse_federation`` accepts back unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nostr_sdk import NostrSdkError, PublicKey, RelayUrl

from consensus.errors import InvalidContribution
from consensus.federation import Federation, Timeouts
from consensus.frost import PublicKeyPackage, parse_point
from consensus.nip90 import REQUEST_KINDS, UnsignedEvent, build_handler_info
from consensus.policies import parse_policy
from sidecar.toml_fields import (
    fail,
    integer,
    parse_toml,
    pubkey,
    read_toml,
    reject_unknown,
    seconds,
    shown,
    table,
    text,
    type_name,
)

WHAT = "federation file"
MAX_MEMBERS = 65535
TOP_KEYS = ("name", "about", "announced_at", "group_npub", "threshold", "kinds", "digest_policy", "relays",
            "vss_commitment", "timeouts", "members")
MEMBER_KEYS = ("index", "name", "identity_npub", "verifying_share")
# [timeouts] key -> Timeouts field
TIMEOUT_KEYS = {"dvm_seconds": "dvm", "deadline_seconds": "deadline", "coordinator_seconds": "coordinator",
                "session_seconds": "session"}


@dataclass(frozen=True)
class MemberEntry:
    """One member: its FROST identifier, a label for people, its identity key (x-only hex), its verifying share."""

    index: int
    name: str
    identity_pubkey: str
    verifying_share: bytes

    @property
    def identity_npub(self) -> str:
        return PublicKey.parse(self.identity_pubkey).to_bech32()


@dataclass(frozen=True)
class FederationFile:
    """Everything in a federation file, checked; ``federation()`` gives the core's ``Federation``."""

    name: str
    group_pubkey: str
    threshold: int
    kinds: tuple[int, ...]
    digest_policy: str
    relays: tuple[str, ...]
    members: tuple[MemberEntry, ...]
    vss_commitment: tuple[bytes, ...]
    timeouts: Timeouts = field(default_factory=Timeouts)
    about: str = ""
    announced_at: int | None = None  # created_at of the NIP-89 announcement; None: the federation announces none

    @property
    def npub(self) -> str:
        return PublicKey.parse(self.group_pubkey).to_bech32()

    def public_key_package(self) -> PublicKeyPackage:
        return PublicKeyPackage(
            min_signers=self.threshold,
            group_public_key=self.vss_commitment[0],
            verifying_shares=tuple((m.index, m.verifying_share) for m in self.members),
            vss_commitment=self.vss_commitment,
        )

    def federation(self) -> Federation:
        return Federation(keys=self.public_key_package(), policy=parse_policy(self.digest_policy),
                          timeouts=self.timeouts)

    def handler_info(self) -> UnsignedEvent | None:
        """The federation's NIP-89 kind 31990 announcement, byte-identical at every member (its date is in the
        file), so the members co-sign it like a result; a changed file (kinds, name, about) announces anew."""
        if self.announced_at is None:
            return None
        metadata = {"name": self.name or "dvm-sidecar federation", "about": self.about}
        return build_handler_info(self.group_pubkey, self.kinds, metadata, f"dvm-sidecar-{self.group_pubkey[:16]}",
                                  created_at=self.announced_at)

    def identities(self) -> dict[int, str]:
        """Member index -> identity public key (x-only hex): who may sign peer messages as whom."""
        return {m.index: m.identity_pubkey for m in self.members}

    def to_toml(self) -> str:
        """The federation file's text, in the documented format."""
        lines = [
            "# The federation file: public, and the same copy at every member. It holds no secret.",
            "# Made by `dvm-sidecar federation init`; `dvm-sidecar federation show` prints it. Every key is",
            "# described in deploy/federation-example/README.md of the dvm-sidecar repository.",
            f"name = {_string(self.name)}",
            *([f"about = {_string(self.about)}"] if self.about else []),
            *([f"announced_at = {self.announced_at}"] if self.announced_at is not None else []),
            f"group_npub = {_string(self.npub)}",
            f"threshold = {self.threshold}",
            f"kinds = [{', '.join(map(str, self.kinds))}]",
            f"digest_policy = {_string(self.digest_policy)}",
            f"relays = [{', '.join(map(_string, self.relays))}]",
            "# The keyset: the VSS commitment (threshold points; the first is the group key) and, per member,",
            "# the verifying share. Members check their share files against these.",
            "vss_commitment = [",
            *(f'    "{point.hex()}",' for point in self.vss_commitment),
            "]",
            "",
            "[timeouts]",
            *(f"{key} = {float(getattr(self.timeouts, attr))!r}" for key, attr in TIMEOUT_KEYS.items()),
        ]
        for member in self.members:
            lines += ["", "[[members]]", f"index = {member.index}"]
            if member.name:
                lines.append(f"name = {_string(member.name)}")
            lines += [f"identity_npub = {_string(member.identity_npub)}",
                      f'verifying_share = "{member.verifying_share.hex()}"']
        return "\n".join(lines) + "\n"


def _string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but TOML also wants DEL escaped."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def load_federation(path: str | os.PathLike[str]) -> FederationFile:
    """The federation file at ``path``, checked through and through (``ConfigError`` otherwise)."""
    return federation_from_dict(read_toml(path, WHAT), str(path))


def parse_federation(toml_text: str, where: str = WHAT) -> FederationFile:
    """A federation file's text, checked as ``load_federation`` checks a file; ``where`` names it in errors."""
    return federation_from_dict(parse_toml(toml_text, where, WHAT), where)


def federation_from_dict(doc: Mapping[str, Any], where: str) -> FederationFile:
    reject_unknown(doc, TOP_KEYS, where)
    for key in ("group_npub", "threshold", "kinds", "relays", "vss_commitment", "members"):
        if key not in doc:
            fail(where, key, "missing", "add it (`dvm-sidecar federation init` writes a complete file)")
    name = text(doc.get("name", ""), where, "name", empty=True)
    group_pubkey = pubkey(doc["group_npub"], where, "group_npub", npub_only=True)
    members = _members(doc["members"], where)
    n = len(members)
    threshold = integer(doc["threshold"], where, "threshold", 2, MAX_MEMBERS)
    if threshold > n:
        fail(where, "threshold", f"{threshold} is more than the {n} members",
             f"set a threshold of at most {n}, or list every member")
    kinds = _kinds(doc["kinds"], where)
    policy = text(doc.get("digest_policy", "exact"), where, "digest_policy", example='"exact"')
    try:
        parse_policy(policy)
    except ValueError:
        fail(where, "digest_policy", f"{shown(policy)} is not a digest policy",
             "use 'exact', 'json' or 'tag:NAME' (NAME: 1-64 letters, digits, '_', '.', ':' or '-')")
    relays = _relays(doc["relays"], where)
    commitment = _commitment(doc["vss_commitment"], threshold, where)
    if commitment[0][1:].hex() != group_pubkey:
        fail(where, "group_npub", "is not the group key of the keyset in vss_commitment",
             "use the group npub of this keyset (`dvm-sidecar keys show KEYSET` prints it)")
    federation = FederationFile(
        name=name, group_pubkey=group_pubkey, threshold=threshold, kinds=kinds, digest_policy=policy,
        relays=relays, members=members, vss_commitment=commitment,
        timeouts=_timeouts(doc.get("timeouts", {}), where),
        about=text(doc.get("about", ""), where, "about", empty=True),
        announced_at=None if "announced_at" not in doc else integer(
            doc["announced_at"], where, "announced_at", 1, 2**32 - 1),
    )
    try:
        federation.public_key_package().verify_vss()
    except (ValueError, InvalidContribution) as exc:
        fail(where, "members.verifying_share", f"{getattr(exc, 'what', exc)}",
             "copy the verifying shares and vss_commitment from one keyset file (`dvm-sidecar federation init`)")
    return federation


def _array(value: object, where: str, field: str, fix: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        fail(where, field, f"must be a non-empty array, got {shown(value) if value == [] else type_name(value)}",
             fix)
    return value


def _members(value: object, where: str) -> tuple[MemberEntry, ...]:
    entries = _array(value, where, "members", "add one [[members]] table per member")
    if len(entries) > MAX_MEMBERS:
        fail(where, "members", f"{len(entries)} members is too many", f"at most {MAX_MEMBERS}")
    members: list[MemberEntry] = []
    for position, entry in enumerate(entries):
        label = f"members[{position}]"
        entry = table(entry, where, label)
        reject_unknown(entry, MEMBER_KEYS, where, f"{label}.")
        for key in ("index", "identity_npub", "verifying_share"):
            if key not in entry:
                fail(where, f"{label}.{key}", "missing", "add it under this [[members]] entry")
        members.append(MemberEntry(
            index=integer(entry["index"], where, f"{label}.index", 1, len(entries)),
            name=text(entry.get("name", ""), where, f"{label}.name", empty=True),
            identity_pubkey=pubkey(entry["identity_npub"], where, f"{label}.identity_npub", npub_only=True),
            verifying_share=_point(entry["verifying_share"], where, f"{label}.verifying_share"),
        ))
    by_index: dict[int, int] = {}
    by_identity: dict[str, int] = {}
    for member in members:
        if member.index in by_index:
            fail(where, "members.index", f"two members have index {member.index}",
                 f"number the {len(members)} members 1..{len(members)}, each once")
        if member.identity_pubkey in by_identity:
            fail(where, "members.identity_npub", f"members {by_identity[member.identity_pubkey]} and "
                 f"{member.index} have the same identity npub", "give every member its own identity key")
        by_index[member.index] = by_identity[member.identity_pubkey] = member.index
    return tuple(sorted(members, key=lambda m: m.index))


def _kinds(value: object, where: str) -> tuple[int, ...]:
    kinds = tuple(integer(kind, where, "kinds", REQUEST_KINDS.start, REQUEST_KINDS.stop - 1)
                  for kind in _array(value, where, "kinds", "write e.g. kinds = [5050]"))
    if len(set(kinds)) != len(kinds):
        fail(where, "kinds", "lists a kind twice", "list each job request kind once")
    return kinds


def _relays(value: object, where: str) -> tuple[str, ...]:
    relays = []
    for url in _array(value, where, "relays", 'write e.g. relays = ["wss://relay.example.com"]'):
        url = text(url, where, "relays", example='"wss://relay.example.com"')
        try:
            if not url.startswith(("ws://", "wss://")):
                raise ValueError
            RelayUrl.parse(url)
        except (ValueError, NostrSdkError):
            fail(where, "relays", f"{shown(url)} is not a relay URL", "write it as wss://host or ws://host:port")
        relays.append(url)
    if len(set(relays)) != len(relays):
        fail(where, "relays", "lists a relay twice", "list each relay once")
    return tuple(relays)


def _point(value: object, where: str, field: str) -> bytes:
    if not isinstance(value, str) or len(value) != 66 or value[:2] not in ("02", "03"):
        fail(where, field, "is not a compressed point", "give 66 lowercase hex characters starting 02 or 03")
    try:
        encoded = bytes.fromhex(value)
        if encoded.hex() != value:
            raise ValueError
        parse_point(encoded, None, field)
    except (ValueError, InvalidContribution):
        fail(where, field, "is not a point on secp256k1", "copy it again from the keyset file")
    return encoded


def _commitment(value: object, threshold: int, where: str) -> tuple[bytes, ...]:
    points = _array(value, where, "vss_commitment", "copy it from the keyset file: t points")
    if len(points) != threshold:
        fail(where, "vss_commitment", f"has {len(points)} points, the threshold is {threshold}",
             "a t-of-n keyset has exactly t; copy it from the keyset file")
    return tuple(_point(point, where, f"vss_commitment[{i}]") for i, point in enumerate(points))


def _timeouts(value: object, where: str) -> Timeouts:
    given = table(value, where, "timeouts")
    reject_unknown(given, TIMEOUT_KEYS, where, "timeouts.")
    values = {attr: seconds(given[key], where, f"timeouts.{key}")
              for key, attr in TIMEOUT_KEYS.items() if key in given}
    timeouts = Timeouts(**values)
    if timeouts.dvm >= timeouts.deadline:
        fail(where, "timeouts.dvm_seconds", f"{timeouts.dvm:g} is not shorter than deadline_seconds "
             f"{timeouts.deadline:g}", "a DVM answer after the deadline is wasted: make the deadline longer")
    if timeouts.session > timeouts.coordinator:
        fail(where, "timeouts.session_seconds", f"{timeouts.session:g} is longer than coordinator_seconds "
             f"{timeouts.coordinator:g}", "a coordinator must have time for at least one signing session")
    return timeouts
