"""The peer messages of the quorum protocol, with one canonical encoding and a strict decoder.

Who sent a message is not in it: the shell authenticates every message (a Nostr event signed by the member's
identity key) and hands the core the verified sender index. Everything a sender claims about itself inside a
message (a commitment's or share's identifier) must match that index, which the job state machine checks.

Encoding: compact JSON, keys in the fixed order of the dataclass fields, bytes as lowercase hex. Decoding
refuses oversize input before parsing, unknown or missing fields, wrong types, bad hex, and points or scalars
that are not valid on secp256k1; malformed structure is a ``ValueError``, an invalid point or scalar an
``InvalidContribution`` from the frost parsers (the caller names the sender).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from consensus.frost import SignatureShare, SigningCommitments
from consensus.policies import ResultPayload

MAX_MESSAGE_BYTES = 65536 + 4096  # a payload of the default cap plus the message around it


class Target(str, Enum):
    """What a signing session signs: the agreed result, an agreed DVM error, or the no-quorum error."""

    RESULT = "result"
    ERROR = "error"
    NO_QUORUM = "no_quorum"


@dataclass(frozen=True)
class Announce:
    """A member's view of its DVM's answer: the digest, the canonical payload (None for an error or timeout)
    and a fresh nonce commitment. Sent again with a new commitment when an old one is dead (after a restart,
    or when a coordinator asks for one that was already used)."""

    job_id: str
    digest: bytes
    payload: ResultPayload | None
    commitment: SigningCommitments


@dataclass(frozen=True)
class GiveUp:
    """A member's vote, after its deadline passed without agreement, to co-sign the no-quorum error; it
    carries a fresh commitment for that session."""

    job_id: str
    commitment: SigningCommitments


@dataclass(frozen=True)
class SignRequest:
    """The coordinator asks the listed signers to sign ``event_id`` with the listed commitments."""

    job_id: str
    session: int
    target: Target
    digest: bytes
    event_id: bytes
    commitments: tuple[SigningCommitments, ...]


@dataclass(frozen=True)
class Share:
    """A signer's signature share for a session, with a fresh commitment for the next one (ROAST)."""

    job_id: str
    session: int
    share: SignatureShare
    next_commitment: SigningCommitments


@dataclass(frozen=True)
class Done:
    """The coordinator tells every member that the job's event is co-signed, and by whom (a signer's share is
    inside a signature that verifies, so a member that told someone else a different digest is caught)."""

    job_id: str
    target: Target
    digest: bytes
    event_id: bytes
    signature: bytes
    signers: tuple[int, ...]


Message = Announce | GiveUp | SignRequest | Share | Done

_TYPE_NAMES: dict[type, str] = {
    Announce: "announce",
    GiveUp: "give_up",
    SignRequest: "sign_request",
    Share: "share",
    Done: "done",
}


def message_type(message: Message) -> str:
    """The message's wire name (also the metric label)."""
    return _TYPE_NAMES[type(message)]


def encode(message: Message) -> bytes:
    """The canonical encoding: equal messages give equal bytes."""
    body: dict[str, Any] = {"type": message_type(message), "job": message.job_id}
    if isinstance(message, Announce):
        body["digest"] = message.digest.hex()
        body["payload"] = None if message.payload is None else _payload_obj(message.payload)
        body["commitment"] = message.commitment.hex()
    elif isinstance(message, GiveUp):
        body["commitment"] = message.commitment.hex()
    elif isinstance(message, SignRequest):
        body["session"] = message.session
        body["target"] = message.target.value
        body["digest"] = message.digest.hex()
        body["event_id"] = message.event_id.hex()
        body["commitments"] = [c.hex() for c in message.commitments]
    elif isinstance(message, Share):
        body["session"] = message.session
        body["share"] = message.share.hex()
        body["next_commitment"] = message.next_commitment.hex()
    else:
        body["target"] = message.target.value
        body["digest"] = message.digest.hex()
        body["event_id"] = message.event_id.hex()
        body["signature"] = message.signature.hex()
        body["signers"] = list(message.signers)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _payload_obj(payload: ResultPayload) -> dict[str, Any]:
    return json.loads(payload.to_json())  # type: ignore[no-any-return]


_FIELDS: dict[str, tuple[str, ...]] = {
    "announce": ("type", "job", "digest", "payload", "commitment"),
    "give_up": ("type", "job", "commitment"),
    "sign_request": ("type", "job", "session", "target", "digest", "event_id", "commitments"),
    "share": ("type", "job", "session", "share", "next_commitment"),
    "done": ("type", "job", "target", "digest", "event_id", "signature", "signers"),
}


def decode(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, max_signers: int = 65535) -> Message:
    """Parse one message strictly. ``ValueError`` for malformed input; ``InvalidContribution`` (with no
    signer named: the caller knows the sender) for invalid points or scalars."""
    if len(data) > max_bytes:
        raise ValueError(f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"message is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(body, dict):
        raise ValueError("message must be a JSON object")
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise ValueError("unknown message type")
    expected = _FIELDS[kind]
    if set(body) != set(expected):
        extra = sorted(set(body) - set(expected))
        missing = sorted(set(expected) - set(body))
        raise ValueError(f"{kind}: unknown fields {extra}, missing fields {missing}")
    job_id = _hex(body, "job", 32).hex()
    if kind == "announce":
        raw_payload = body["payload"]
        payload = None
        if raw_payload is not None:
            if not isinstance(raw_payload, dict):
                raise ValueError("announce: payload must be an object or null")
            payload = ResultPayload.from_obj(raw_payload)  # the message's size bounds it already
        return Announce(job_id, _hex(body, "digest", 32), payload, _commitment(body["commitment"]))
    if kind == "give_up":
        return GiveUp(job_id, _commitment(body["commitment"]))
    if kind == "sign_request":
        raw = body["commitments"]
        if not isinstance(raw, list) or not 2 <= len(raw) <= max_signers:
            raise ValueError(f"sign_request: commitments must be a list of 2..{max_signers}")
        commitments = tuple(_commitment(item) for item in raw)
        return SignRequest(
            job_id, _session(body), _target(body), _hex(body, "digest", 32), _hex(body, "event_id", 32),
            commitments,
        )
    if kind == "share":
        share = _parsed(body["share"], SignatureShare.from_hex, "share")
        return Share(job_id, _session(body), share, _commitment(body["next_commitment"]))
    signers = body["signers"]
    if (
        not isinstance(signers, list)
        or not 2 <= len(signers) <= max_signers
        or any(type(m) is not int or not 1 <= m <= 65535 for m in signers)
        or len(set(signers)) != len(signers)
    ):
        raise ValueError("done: signers must be distinct member identifiers")
    return Done(
        job_id, _target(body), _hex(body, "digest", 32), _hex(body, "event_id", 32), _hex(body, "signature", 64),
        tuple(signers),
    )


def _hex(body: dict[str, Any], name: str, size: int) -> bytes:
    value = body[name]
    if not isinstance(value, str) or len(value) != 2 * size:
        raise ValueError(f"{name} must be {size} bytes of hex")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{name} is not hex") from None
    if raw.hex() != value:
        raise ValueError(f"{name} must be lowercase hex")
    return raw


def _session(body: dict[str, Any]) -> int:
    value = body["session"]
    if type(value) is not int or not 0 <= value < 2**31:
        raise ValueError("session must be an integer in 0..2^31-1")
    return value


def _target(body: dict[str, Any]) -> Target:
    try:
        return Target(body["target"])
    except ValueError:
        raise ValueError("unknown target") from None


def _commitment(value: Any) -> SigningCommitments:
    return _parsed(value, SigningCommitments.from_hex, "commitment")


def _parsed(value: Any, parse: Callable[[str], Any], name: str) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a hex string")
    return parse(value)
