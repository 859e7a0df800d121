"""Sealing and opening peer envelopes, the same on every transport.

An envelope is a Nostr event of kind ``PEER_MESSAGE_KIND`` (ephemeral: relays forward it and keep nothing),
signed by the sender's identity key, tagged ``["p", <recipient identity>]``, its content the NIP-44 (v2)
encryption of the payload to the recipient; a payload larger than one event carries goes as parts (``parts``).

Opening checks, cheapest first, and refuses with a ``Rejected`` naming one of ``REJECTION_REASONS``: the size
before anything is parsed (oversize); strict JSON of an event of our kind, addressed to this member (malformed);
a member's key (unknown_author); a ``created_at`` within the replay window of the clock (stale); the id
recomputed from exactly the fields read here, then nostr-sdk's ``Event.verify()`` on the same text (bad
signature: both views hash to one id, so they are one event); an id not seen before (replay); decryption
(malformed); the payload size again (oversize). Only a verified message is remembered, so junk costs no memory.

The event id is the message id. Secrets (the identity key) stay inside nostr-sdk objects and never reach a log,
an exception or a repr.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from nostr_sdk import Event, Keys, Nip44Version, NostrSdkError, PublicKey, nip44_decrypt, nip44_encrypt

from consensus.nip90 import MAX_EVENT_BYTES, UnsignedEvent, dumps_compact, loads_bounded
from sidecar.peers.base import Envelope, PeerDirectory, RejectionReason
from sidecar.peers.parts import PART_BYTES, Part, PartMismatch, Reassembly, max_parts, split_text
from sidecar.peers.replay import ReplayCache

PEER_MESSAGE_KIND = 25090  # ephemeral (20000-29999): relays pass it on and store nothing
EVENT_OVERHEAD = 640  # an envelope's JSON beyond its content: ids, keys, signature, tags, field names
REPLAY_RATE = 1000  # messages a second one member is expected to accept, at most, to size the replay cache

_FIELDS = frozenset({"id", "pubkey", "created_at", "kind", "tags", "content", "sig"})
_MAX_TIMESTAMP = 2**40  # beyond any clock; keeps the window arithmetic on small integers

log = logging.getLogger(__name__)


class Rejected(Exception):
    """A received envelope was dropped; ``reason`` is one of ``REJECTION_REASONS``."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason: RejectionReason = reason
        self.detail = detail


@dataclass(frozen=True)
class Checked:
    """An authenticated envelope, not yet decrypted."""

    sender: int
    message_id: str
    created_at: int
    content: str
    part: Part | None


def nip44_padded_len(length: int) -> int:
    """NIP-44 v2 ``calc_padded_len``."""
    if length <= 32:
        return 32
    next_power = 1 << (math.floor(math.log2(length - 1)) + 1)
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * (math.floor((length - 1) / chunk) + 1)


def event_bytes_bound(plaintext_bytes: int) -> int:
    """The largest envelope that carries ``plaintext_bytes``: NIP-44 (version, nonce, length, padded text, MAC)
    in base64, plus the event around it."""
    encrypted = 1 + 32 + 2 + nip44_padded_len(plaintext_bytes) + 32
    return 4 * math.ceil(encrypted / 3) + EVENT_OVERHEAD


class EnvelopeCodec:
    def __init__(
        self,
        directory: PeerDirectory,
        identity_keys: Keys,
        *,
        replay_window: float = 120.0,
        clock: Callable[[], float] = time.time,
        max_payload: int = 65536,
    ) -> None:
        if identity_keys.public_key().to_hex() != directory.my_identity:
            raise ValueError(f"the identity key is not member {directory.me}'s in the federation directory")
        if not replay_window > 0:
            raise ValueError("the replay window must be a positive number of seconds")
        if type(max_payload) is not int or max_payload < 1:
            raise ValueError("max_payload must be a positive number of bytes")
        self.directory = directory
        self.window = float(replay_window)
        self.clock = clock
        self.max_payload = max_payload
        self.max_parts = max_parts(max_payload)
        self.max_event_bytes = min(MAX_EVENT_BYTES, event_bytes_bound(min(max_payload, PART_BYTES)))
        self._keys = identity_keys
        self._secret = identity_keys.secret_key()
        try:
            self._public = {m: PublicKey.parse(hex_) for m, hex_ in directory.identities.items()}
        except NostrSdkError as exc:
            raise ValueError(f"an identity in the directory is not a valid public key: {exc}") from None
        self._my_p_tag = ("p", directory.my_identity)
        self.seen = ReplayCache(max(1024, int(self.window * REPLAY_RATE)))
        self.reassembly = Reassembly(window=self.window)

    # -- sending

    def seal(self, recipient: int, payload: bytes) -> list[str]:
        """The envelope(s) carrying ``payload`` to ``recipient``, as event JSON (one unless it needs parts)."""
        if recipient not in self._public:
            raise ValueError(f"member {recipient!r} is not in the federation directory")
        if not isinstance(payload, (bytes, bytearray)) or not payload:
            raise ValueError("a peer message payload must be non-empty bytes")
        if len(payload) > self.max_payload:
            raise ValueError(f"a peer message of {len(payload)} bytes is over the {self.max_payload}-byte limit")
        try:
            texts = split_text(bytes(payload))
        except UnicodeDecodeError:
            raise ValueError("a peer message payload must be UTF-8 text (canonical JSON)") from None
        recipient_tag = ("p", self.directory.identities[recipient])
        digest = hashlib.sha256(payload).hexdigest() if len(texts) > 1 else ""
        created_at = int(self.clock())
        sealed = []
        for index, text in enumerate(texts, start=1):
            content = nip44_encrypt(self._secret, self._public[recipient], text, Nip44Version.V2)
            tags = (recipient_tag,) if not digest else (recipient_tag, ("part", str(index), str(len(texts)), digest))
            unsigned = UnsignedEvent(self.directory.my_identity, created_at, PEER_MESSAGE_KIND, tags, content)
            event_id = unsigned.event_id()
            sig = self._keys.sign_schnorr(event_id)
            sealed.append(dumps_compact({
                "id": event_id.hex(), "pubkey": unsigned.pubkey, "created_at": created_at,
                "kind": PEER_MESSAGE_KIND, "tags": [list(tag) for tag in tags], "content": content, "sig": sig,
            }))
        return sealed

    # -- receiving

    def check(self, raw: str | bytes, event: Event | None = None) -> Checked:
        """Authenticate one envelope (``Rejected`` if it fails); ``event`` is nostr-sdk's parse of ``raw``,
        when the transport already has one."""
        size = len(raw) if isinstance(raw, bytes) or raw.isascii() else len(raw.encode("utf-8", "surrogatepass"))
        if size > self.max_event_bytes:
            raise Rejected("oversize", f"{size} bytes, over the {self.max_event_bytes}-byte limit")
        try:
            data = loads_bounded(raw, max_bytes=self.max_event_bytes, max_depth=3, what="peer envelope")
        except ValueError as exc:
            raise Rejected("malformed", str(exc)) from None
        if not isinstance(data, dict) or data.keys() != _FIELDS:
            raise Rejected("malformed", "not an event object with exactly the NIP-01 fields")
        if data["kind"] != PEER_MESSAGE_KIND or type(data["kind"]) is not int:
            raise Rejected("malformed", f"kind {data['kind']!r} is not a peer message")
        pubkey = data["pubkey"]
        sender = self.directory.member_of(pubkey) if isinstance(pubkey, str) else None
        if sender is None:
            raise Rejected("unknown_author", "signed by a key that is not a member's")
        part = self._part(data["tags"])
        created_at = data["created_at"]
        if type(created_at) is not int or not 0 <= created_at < _MAX_TIMESTAMP:
            raise Rejected("malformed", "created_at is not a timestamp")
        now = self.clock()
        if abs(created_at - now) > self.window:
            raise Rejected("stale", f"created {created_at - now:+.0f} s from now, outside ±{self.window:g} s")
        content, message_id, sig = data["content"], data["id"], data["sig"]
        if not isinstance(content, str) or not isinstance(message_id, str) or not isinstance(sig, str):
            raise Rejected("malformed", "id, content and sig must be strings")
        try:
            unsigned = UnsignedEvent(pubkey, created_at, PEER_MESSAGE_KIND, data["tags"], content)
            computed = unsigned.event_id()
        except ValueError as exc:
            raise Rejected("malformed", str(exc)) from None
        if computed.hex() != message_id:
            raise Rejected("bad_signature", "the id does not match the event")
        if computed in self.seen:
            raise Rejected("replay", "message id seen before")
        try:
            verified = (event if event is not None else Event.from_json(raw if isinstance(raw, str) else raw.decode()))
            valid = verified.verify() and verified.id().to_hex() == message_id
        except (NostrSdkError, ValueError):
            valid = False
        if not valid:
            raise Rejected("bad_signature", "the signature does not verify")
        self.seen.add(computed, forget_after=created_at + self.window, now=now)
        return Checked(sender, message_id, created_at, content, part)

    def _part(self, tags: object) -> Part | None:
        """The part tag, after checking the tags are exactly ours: a ``p`` tag for this member, and ``part``."""
        if not isinstance(tags, list) or not 1 <= len(tags) <= 2 or tags[0] != list(self._my_p_tag):
            if isinstance(tags, list) and tags and isinstance(tags[0], list) and tags[0][:1] == ["p"]:
                raise Rejected("malformed", "not addressed to this member")
            raise Rejected("malformed", "tags must be one p tag for this member, then an optional part tag")
        if len(tags) == 1:
            return None
        tag = tags[1]
        if not (isinstance(tag, list) and len(tag) == 4 and tag[0] == "part" and all(isinstance(v, str) for v in tag)):
            raise Rejected("malformed", "the second tag must be [part, index, count, digest]")
        _, index, count, digest = tag
        if not (index.isdecimal() and count.isdecimal() and len(index) <= 3 and len(count) <= 3):
            raise Rejected("malformed", "part index and count must be small numbers")
        if int(count) > self.max_parts:
            raise Rejected("oversize", f"{count} parts, over the {self.max_parts}-part limit")
        if not 1 <= int(index) <= int(count) or int(count) < 2 or len(digest) != 64:
            raise Rejected("malformed", "part index out of range or digest malformed")
        return Part(int(index), int(count), digest)

    def open(self, checked: Checked) -> Envelope | None:
        """Decrypt an authenticated envelope: the message, or None while parts of it are still to come."""
        try:
            text = nip44_decrypt(self._secret, self._public[checked.sender], checked.content)
        except NostrSdkError:
            raise Rejected("malformed", "cannot be decrypted with this member's key") from None
        piece = text.encode("utf-8")
        limit = self.max_payload if checked.part is None else min(self.max_payload, PART_BYTES)
        if len(piece) > limit:
            raise Rejected("oversize", f"a payload of {len(piece)} bytes, over the {limit}-byte limit")
        if checked.part is None:
            return Envelope(checked.sender, piece, checked.message_id, checked.created_at)
        try:
            whole = self.reassembly.add(
                checked.sender, checked.part, piece,
                message_id=checked.message_id, created_at=checked.created_at, now=self.clock(),
            )
        except PartMismatch as exc:
            raise Rejected("malformed", str(exc)) from None
        if whole is None:
            return None
        payload, message_id, created_at = whole
        if len(payload) > self.max_payload:
            raise Rejected("oversize", f"a payload of {len(payload)} bytes, over the {self.max_payload}-byte limit")
        return Envelope(checked.sender, payload, message_id, created_at)
