"""Strict reading of key file documents: the file's mode, size, JSON, ``format``, ``version`` and fields.

Rules: every refusal is one ``KeyFileError`` line naming the file and the field; no value read from a file is
ever echoed (a corrupt file may hold anything, a secret included), only field names and our own numbers.
Files holding secrets are refused when group or others have any access to them.
"""

from __future__ import annotations

import json
import os
from stat import S_IMODE, S_ISREG
from typing import Any

from coincurve import PublicKey as Point
from nostr_sdk import EncryptedSecretKey, NostrSdkError, PublicKey

KEYSET_FORMAT = "dvm-sidecar-keyset"
SHARE_FORMAT = "dvm-sidecar-share"
IDENTITY_FORMAT = "dvm-sidecar-identity"
FORMAT_VERSION = 1
SUITE_NAME = "FROST-secp256k1-SHA256-TR-v1"
MAX_FILE_BYTES = 16 * 1024 * 1024  # 65535 members' verifying shares fit with room to spare
MAX_MEMBERS = 65535
SECRET_MODE, PUBLIC_MODE = 0o600, 0o644

FORMAT_KIND = {KEYSET_FORMAT: "keyset", SHARE_FORMAT: "share", IDENTITY_FORMAT: "identity"}
SECRET_FORMATS = frozenset({SHARE_FORMAT, IDENTITY_FORMAT})


class KeyFileError(ValueError):
    """A key file (or passphrase) cannot be used; the message is one line and never holds a secret."""


class _Malformed(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Malformed
    return result


def _no_constants(_: str) -> Any:
    raise _Malformed  # NaN and Infinity are not JSON


def read_document(path: str | os.PathLike[str], expected: str | None = None) -> tuple[str, dict[str, Any]]:
    """The format and JSON object of the key file at ``path``; ``expected`` = the one format accepted.

    Refused: a missing or unreadable file, a secret file others can access, more than ``MAX_FILE_BYTES``,
    anything but a UTF-8 JSON object without duplicate keys, an unknown format, another version or suite.
    """
    kind = FORMAT_KIND[expected] if expected else "key"
    label = f"{kind} file {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: a FIFO must not hang the open
    except FileNotFoundError:
        raise KeyFileError(f"{label} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {label}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not S_ISREG(mode):
        os.close(fd)
        raise KeyFileError(f"{label} is not a regular file")
    with os.fdopen(fd, "rb") as stream:
        try:
            data = stream.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise KeyFileError(f"cannot read {label}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise KeyFileError(f"{label} is larger than {MAX_FILE_BYTES} bytes (not a key file)")
    if not data.strip():
        raise KeyFileError(f"{label} is empty")
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise KeyFileError(f"{label} is not UTF-8 text (corrupt file?)") from None
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{label} is not valid JSON (truncated or corrupt): {exc.msg} "
                           f"(line {exc.lineno}, column {exc.colno})") from None
    except (_Malformed, RecursionError):
        raise KeyFileError(f"{label} is not valid JSON (duplicate keys, NaN or nesting too deep)") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"{label} is not a JSON object")
    found = doc.get("format")
    if not isinstance(found, str) or found not in FORMAT_KIND:
        raise KeyFileError(f"{path} is not a dvm-sidecar {kind} file (no or unknown 'format')")
    if expected is not None and found != expected:
        raise KeyFileError(f"{path} is a {FORMAT_KIND[found]} file, not a {kind} file")
    label = f"{FORMAT_KIND[found]} file {path}"
    if found in SECRET_FORMATS and mode & 0o077:
        raise KeyFileError(f"{label} is accessible to other users (mode {S_IMODE(mode):04o}); "
                           f"run: chmod 600 {path}")
    version = doc.get("version")
    if type(version) is not int:
        raise KeyFileError(f"{label}: 'version' must be an integer")
    if version != FORMAT_VERSION:
        raise KeyFileError(f"{label} has format version {version}; this dvm-sidecar reads version {FORMAT_VERSION}")
    if found != IDENTITY_FORMAT and doc.get("suite") != SUITE_NAME:
        raise KeyFileError(f"{label}: 'suite' must be {SUITE_NAME!r}")
    return found, doc


def check_fields(doc: dict[str, Any], label: str, names: tuple[str, ...]) -> None:
    """Every one of ``names`` present, and nothing else but ``format`` and ``version``."""
    allowed = {"format", "version", *names}
    for name in names:
        if name not in doc:
            raise KeyFileError(f"{label}: missing field {name!r}")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        shown = unknown[0] if unknown[0].isidentifier() and len(unknown[0]) <= 40 else "(unprintable)"
        raise KeyFileError(f"{label}: unknown field {shown!r}")


def int_field(doc: dict[str, Any], name: str, label: str, low: int, high: int, *, what: str = "") -> int:
    value = doc[name]
    if type(value) is not int or not low <= value <= high:
        raise KeyFileError(f"{label}: {what or name!r} must be an integer in {low}..{high}")
    return value


def list_field(doc: dict[str, Any], name: str, label: str, length: int) -> list[Any]:
    value = doc[name]
    if not isinstance(value, list) or len(value) != length:
        raise KeyFileError(f"{label}: {name!r} must be a list of {length} entries")
    return value


def point_value(value: Any, label: str, what: str) -> bytes:
    """A compressed secp256k1 point on the curve, as 66 lowercase hex characters."""
    if not isinstance(value, str) or len(value) != 66 or value[:2] not in ("02", "03"):
        raise KeyFileError(f"{label}: {what!r} must be a compressed point (66 hex characters)")
    try:
        encoded = bytes.fromhex(value)
        Point(encoded)
    except ValueError:
        raise KeyFileError(f"{label}: {what!r} is not a point on secp256k1 (corrupt file)") from None
    if encoded.hex() != value:
        raise KeyFileError(f"{label}: {what!r} must be lowercase hex")
    return encoded


def points_field(doc: dict[str, Any], name: str, label: str, length: int) -> tuple[bytes, ...]:
    values = list_field(doc, name, label, length)
    return tuple(point_value(value, label, f"{name}[{index}]") for index, value in enumerate(values))


def npub_field(doc: dict[str, Any], name: str, label: str) -> str:
    value = doc[name]
    try:
        if not isinstance(value, str) or not value.startswith("npub1") or PublicKey.parse(value).to_bech32() != value:
            raise ValueError
    except (ValueError, NostrSdkError):
        raise KeyFileError(f"{label}: {name!r} is not a valid npub") from None
    return value


def ncryptsec_field(doc: dict[str, Any], name: str, label: str) -> str:
    value = doc[name]
    try:
        if not isinstance(value, str) or not value.startswith("ncryptsec1"):
            raise ValueError
        EncryptedSecretKey.from_bech32(value)
    except (ValueError, NostrSdkError):
        raise KeyFileError(f"{label}: {name!r} is not a valid ncryptsec (NIP-49) string (corrupt file)") from None
    return value
