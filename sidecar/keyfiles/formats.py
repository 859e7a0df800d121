"""The three key files: the public keyset, a member's encrypted share, an operator's encrypted identity key.

keyset (public, 0644):  format, version, suite, group_npub, group_public_key, threshold, members,
                        verifying_shares [{identifier, verifying_share}], vss_commitment [t points]
share (secret, 0600):   format, version, suite, identifier, group_npub, threshold, members, vss_commitment,
                        encrypted_signing_share (the share scalar as a NIP-49 ``ncryptsec1...``)
identity (secret, 0600): format, version, npub, encrypted_secret_key (``ncryptsec1...``)
Points are 33-byte compressed, lowercase hex. Loading checks consistency (npub against group key, verifying
shares against the VSS commitment, a share against its keyset), so a corrupt file is refused, not used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from nostr_sdk import EncryptedSecretKey, Keys, KeySecurity, NostrSdkError, PublicKey, SecretKey

from consensus.errors import InvalidContribution
from consensus.frost import SECP256K1_TR, KeyPackage, PublicKeyPackage, SecretShare, vss_verify
from sidecar.keyfiles.documents import (
    FORMAT_VERSION,
    IDENTITY_FORMAT,
    KEYSET_FORMAT,
    MAX_MEMBERS,
    SHARE_FORMAT,
    SUITE_NAME,
    KeyFileError,
    check_fields,
    int_field,
    list_field,
    ncryptsec_field,
    npub_field,
    point_value,
    points_field,
    read_document,
)

DEFAULT_KDF_LOG_N = 16  # NIP-49's recommended scrypt cost: 64 MiB and about a quarter second per key
MIN_KDF_LOG_N, MAX_KDF_LOG_N = 1, 22  # 2^22 takes 4 GiB of memory

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Keyset:
    """The public facts of a group key: everything in the keyset file, no secret."""

    public_key_package: PublicKeyPackage

    @property
    def group_npub(self) -> str:
        return PublicKey.from_bytes(self.public_key_package.xonly_public_key).to_bech32()

    @property
    def threshold(self) -> int:
        return self.public_key_package.min_signers

    @property
    def members(self) -> int:
        return len(self.public_key_package.verifying_shares)

    @property
    def identifiers(self) -> tuple[int, ...]:
        return tuple(identifier for identifier, _ in self.public_key_package.verifying_shares)

    def verifying_share(self, identifier: int) -> bytes | None:
        return dict(self.public_key_package.verifying_shares).get(identifier)


@dataclass(frozen=True)
class ShareFile:
    """The public part of a member's share file; the signing share itself stays encrypted."""

    identifier: int
    group_npub: str
    threshold: int
    members: int
    vss_commitment: tuple[bytes, ...]
    encrypted_signing_share: str = field(repr=False)


@dataclass(frozen=True)
class IdentityFile:
    """The public part of an identity key file: the operator's npub; the key itself stays encrypted."""

    npub: str
    encrypted_secret_key: str = field(repr=False)


def check_kdf_log_n(log_n: int) -> None:
    """``KeyFileError`` unless ``log_n`` is a usable scrypt cost."""
    if type(log_n) is not int or not MIN_KDF_LOG_N <= log_n <= MAX_KDF_LOG_N:
        raise KeyFileError(f"KDF cost log_n must be {MIN_KDF_LOG_N}..{MAX_KDF_LOG_N} "
                           f"(NIP-49 default {DEFAULT_KDF_LOG_N}), got {log_n}")


# ---------------------------------------------------------------------------------------------- writing


def encode_keyset(package: PublicKeyPackage) -> bytes:
    """The keyset file for ``package``."""
    return _dump({
        "format": KEYSET_FORMAT,
        "version": FORMAT_VERSION,
        "suite": SUITE_NAME,
        "group_npub": Keyset(package).group_npub,
        "group_public_key": package.group_public_key.hex(),
        "threshold": package.min_signers,
        "members": len(package.verifying_shares),
        "verifying_shares": [{"identifier": identifier, "verifying_share": share.hex()}
                             for identifier, share in package.verifying_shares],
        "vss_commitment": [point.hex() for point in package.vss_commitment],
    })


def encode_share(share: SecretShare, package: PublicKeyPackage, passphrase: str, *,
                 kdf_log_n: int = DEFAULT_KDF_LOG_N, key_security: KeySecurity = KeySecurity.MEDIUM) -> bytes:
    """Member ``share.identifier``'s share file, the signing share encrypted under ``passphrase``."""
    check_kdf_log_n(kdf_log_n)
    secret = SecretKey.from_bytes(share.signing_share.to_bytes(32, "big"))
    return _dump({
        "format": SHARE_FORMAT,
        "version": FORMAT_VERSION,
        "suite": SUITE_NAME,
        "identifier": share.identifier,
        "group_npub": Keyset(package).group_npub,
        "threshold": package.min_signers,
        "members": len(package.verifying_shares),
        "vss_commitment": [point.hex() for point in share.vss_commitment],
        "encrypted_signing_share": EncryptedSecretKey(secret, passphrase, kdf_log_n, key_security).to_bech32(),
    })


def encode_identity(keys: Keys, passphrase: str, *, kdf_log_n: int = DEFAULT_KDF_LOG_N,
                    key_security: KeySecurity = KeySecurity.MEDIUM) -> bytes:
    """An identity key file for ``keys``, the secret key encrypted under ``passphrase``."""
    check_kdf_log_n(kdf_log_n)
    encrypted = EncryptedSecretKey(keys.secret_key(), passphrase, kdf_log_n, key_security)
    return _dump({
        "format": IDENTITY_FORMAT,
        "version": FORMAT_VERSION,
        "npub": keys.public_key().to_bech32(),
        "encrypted_secret_key": encrypted.to_bech32(),
    })


def _dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


# ---------------------------------------------------------------------------------------------- loading


def read_key_file(path: PathLike) -> Keyset | ShareFile | IdentityFile:
    """Any key file's public part, whichever of the three formats it has; no passphrase needed."""
    found, doc = read_document(path)
    if found == KEYSET_FORMAT:
        return _parse_keyset(doc, path)
    if found == SHARE_FORMAT:
        return _parse_share(doc, path)
    return _parse_identity(doc, path)


def load_keyset(path: PathLike) -> Keyset:
    """The keyset file at ``path``, checked field by field and for consistency."""
    return _parse_keyset(read_document(path, KEYSET_FORMAT)[1], path)


def read_share_file(path: PathLike) -> ShareFile:
    """The public part of the share file at ``path`` (no passphrase needed; the share stays encrypted)."""
    return _parse_share(read_document(path, SHARE_FORMAT)[1], path)


def read_identity_file(path: PathLike) -> IdentityFile:
    """The public part of the identity key file at ``path``: its npub."""
    return _parse_identity(read_document(path, IDENTITY_FORMAT)[1], path)


def load_share(path: PathLike, passphrase: str, keyset: Keyset) -> KeyPackage:
    """The member's signing key from the share file at ``path``, decrypted and verified against ``keyset``.

    Refused (``KeyFileError``) when the file belongs to another group or split, the passphrase is wrong, or the
    share does not match the keyset's VSS commitment and the member's verifying share.
    """
    label = f"share file {path}"
    share_file = read_share_file(path)
    if share_file.group_npub != keyset.group_npub:
        raise KeyFileError(f"{label} is for group {share_file.group_npub}, not the keyset's {keyset.group_npub}")
    if (share_file.threshold, share_file.members) != (keyset.threshold, keyset.members):
        raise KeyFileError(f"{label} is {share_file.threshold}-of-{share_file.members}, "
                           f"the keyset is {keyset.threshold}-of-{keyset.members}")
    expected = keyset.verifying_share(share_file.identifier)
    if expected is None:
        raise KeyFileError(f"{label}: member {share_file.identifier} is not in the keyset")
    if share_file.vss_commitment != keyset.public_key_package.vss_commitment:
        raise KeyFileError(f"{label}: its VSS commitment differs from the keyset's (a share of another split)")
    secret = _decrypt(share_file.encrypted_signing_share, passphrase, label, "share")
    try:
        key_package = vss_verify(SECP256K1_TR, SecretShare(
            identifier=share_file.identifier,
            signing_share=int.from_bytes(bytes.fromhex(secret.to_hex()), "big"),
            vss_commitment=share_file.vss_commitment,
        ))
    except (ValueError, InvalidContribution):
        raise KeyFileError(f"{label}: the share does not match the keyset's VSS commitment") from None
    if key_package.verifying_share != expected:
        raise KeyFileError(f"{label}: the share does not match member {share_file.identifier}'s verifying share")
    return key_package


def load_identity(path: PathLike, passphrase: str) -> Keys:
    """The operator's identity keys from the identity file at ``path``, decrypted with ``passphrase``."""
    label = f"identity file {path}"
    identity = read_identity_file(path)
    keys = Keys(_decrypt(identity.encrypted_secret_key, passphrase, label, "key"))
    if keys.public_key().to_bech32() != identity.npub:
        raise KeyFileError(f"{label}: the decrypted key does not belong to its npub (corrupt file)")
    return keys


def _decrypt(ncryptsec: str, passphrase: str, label: str, what: str) -> SecretKey:
    try:
        return EncryptedSecretKey.from_bech32(ncryptsec).decrypt(passphrase)
    except NostrSdkError:
        raise KeyFileError(f"wrong passphrase for {label} (or its encrypted {what} is corrupt)") from None


def _parse_keyset(doc: dict[str, Any], path: PathLike) -> Keyset:
    label = f"keyset file {path}"
    check_fields(doc, label, ("suite", "group_npub", "group_public_key", "threshold", "members", "verifying_shares",
                              "vss_commitment"))
    members = int_field(doc, "members", label, 2, MAX_MEMBERS)
    threshold = int_field(doc, "threshold", label, 2, members)
    verifying_shares: list[tuple[int, bytes]] = []
    for index, entry in enumerate(list_field(doc, "verifying_shares", label, members)):
        what = f"verifying_shares[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"identifier", "verifying_share"}:
            raise KeyFileError(f"{label}: {what!r} must be an object with 'identifier' and 'verifying_share'")
        identifier = int_field(entry, "identifier", label, 1, MAX_MEMBERS, what=f"{what}.identifier")
        if verifying_shares and identifier <= verifying_shares[-1][0]:
            raise KeyFileError(f"{label}: identifiers in 'verifying_shares' must be increasing and distinct")
        verifying_shares.append((identifier, point_value(entry["verifying_share"], label, f"{what}.verifying_share")))
    group_public_key = point_value(doc["group_public_key"], label, "group_public_key")
    vss_commitment = points_field(doc, "vss_commitment", label, threshold)
    if vss_commitment[0] != group_public_key:
        raise KeyFileError(f"{label}: 'vss_commitment' does not start with the group public key (corrupt file)")
    try:
        package = PublicKeyPackage(min_signers=threshold, group_public_key=group_public_key,
                                   verifying_shares=tuple(verifying_shares), vss_commitment=vss_commitment)
        package.verify_vss()
    except (ValueError, InvalidContribution) as exc:
        raise KeyFileError(f"{label}: {getattr(exc, 'what', exc)} (corrupt file)") from None
    keyset = Keyset(package)
    if npub_field(doc, "group_npub", label) != keyset.group_npub:
        raise KeyFileError(f"{label}: 'group_npub' is not the npub of 'group_public_key' (corrupt file)")
    return keyset


def _parse_share(doc: dict[str, Any], path: PathLike) -> ShareFile:
    label = f"share file {path}"
    check_fields(doc, label, ("suite", "identifier", "group_npub", "threshold", "members", "vss_commitment",
                              "encrypted_signing_share"))
    members = int_field(doc, "members", label, 2, MAX_MEMBERS)
    threshold = int_field(doc, "threshold", label, 2, members)
    return ShareFile(
        identifier=int_field(doc, "identifier", label, 1, MAX_MEMBERS),
        group_npub=npub_field(doc, "group_npub", label),
        threshold=threshold,
        members=members,
        vss_commitment=points_field(doc, "vss_commitment", label, threshold),
        encrypted_signing_share=ncryptsec_field(doc, "encrypted_signing_share", label),
    )


def _parse_identity(doc: dict[str, Any], path: PathLike) -> IdentityFile:
    label = f"identity file {path}"
    check_fields(doc, label, ("npub", "encrypted_secret_key"))
    return IdentityFile(npub=npub_field(doc, "npub", label),
                        encrypted_secret_key=ncryptsec_field(doc, "encrypted_secret_key", label))
