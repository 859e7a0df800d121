"""Sealing and opening peer envelopes, the same on every transport.

An envelope is a Nostr event of kind ``PEER_MESSAGE_KIND`` (ephemeral: relays forward it and keep nothing),
signed by the sender's identity key, tagged ``["p", <recipient identity>]``, its content the NIP-44 (v2)
encryption of the payload to the recipient. Two variants, each marked by a second tag: a payload larger than one
event carries goes as parts (``["part", index, count, digest]``, see ``parts``), and several small payloads for
one recipient may share one event as a JSON array of strings (``["batch", count]``): under load the sender
coalesces what is queued for a recipient (``outbox``), so the signature, the key agreement and the relay's work
are paid once for many messages.

Opening checks, cheapest first, and refuses with a ``Rejected`` naming one of ``REJECTION_REASONS``: the size
before anything is parsed (oversize); strict JSON of an event of our kind, addressed to this member (malformed);
a member's key (unknown_author); a ``created_at`` within the replay window of the clock (stale); the id
recomputed from exactly the fields read here (NIP-01 serialization), then the BIP-340 signature over that id
with the member's key (libsecp256k1 through coincurve; bad signature); an id not seen before
(replay); decryption and the batch's form (malformed); the payload size again (oversize). Only a verified event
is remembered, so junk costs no memory.

The message id is the event id (``<event id>/<index>`` for the messages of a batch). Secrets never reach a
log, an exception or a repr: the identity key's bytes are read only at start, to derive each member's NIP-44
conversation key (``nip44``) and to make the signing keypair (``sidecar.schnorr``), both kept in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coincurve import PublicKeyXOnly
from nostr_sdk import Keys

from consensus.jsontext import dumps_compact, loads_bounded
from consensus.nip90 import MAX_EVENT_BYTES
from sidecar.peers.base import Envelope, PeerDirectory, RejectionReason
from sidecar.peers.nip44 import ConversationKey, Nip44Error, padded_len
from sidecar.peers.parts import PART_BYTES, Part, PartMismatch, Reassembly, max_parts, split_text
from sidecar.peers.replay import ReplayCache
from sidecar.schnorr import Signer

PEER_MESSAGE_KIND = 25090  # ephemeral (20000-29999): relays pass it on and store nothing
EVENT_OVERHEAD = 640  # an envelope's JSON beyond its content: ids, keys, signature, tags, field names
REPLAY_RATE = 1000  # events a second one member is expected to accept, at most, to size the replay cache
MAX_BATCH = 64  # messages in one event

_FIELDS = frozenset({"id", "pubkey", "created_at", "kind", "tags", "content", "sig"})
_HEX128 = re.compile(r"[0-9a-f]{128}")
_MAX_TIMESTAMP = 2**40  # beyond any clock; keeps the window arithmetic on small integers

log = logging.getLogger(__name__)


class Rejected(Exception):
    """A received envelope was dropped; ``reason`` is one of ``REJECTION_REASONS``."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason: RejectionReason = reason
        self.detail = detail


@dataclass(frozen=True)
class Prepared:
    """A payload checked for sending: as text, and as the JSON string a batch holds (``size`` its UTF-8 bytes)."""

    payload: bytes
    text: str
    element: str
    size: int


@dataclass(frozen=True)
class Checked:
    """An authenticated envelope, not yet decrypted."""

    sender: int
    message_id: str
    created_at: int
    content: str
    part: Part | None
    batch: int  # messages in it if it is a batch, else 0


def event_bytes_bound(plaintext_bytes: int) -> int:
    """The largest envelope that carries ``plaintext_bytes``: NIP-44 (version, nonce, length, padded text, MAC)
    in base64, plus the event around it."""
    encrypted = 1 + 32 + 2 + padded_len(plaintext_bytes) + 32
    return 4 * math.ceil(encrypted / 3) + EVENT_OVERHEAD


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def event_id(pubkey: str, created_at: int, tags: Sequence[Sequence[str]], content: str) -> bytes:
    """NIP-01: sha256 of the compact JSON ``[0, pubkey, created_at, kind, tags, content]``."""
    serialized = dumps_compact([0, pubkey, created_at, PEER_MESSAGE_KIND, tags, content])
    return hashlib.sha256(serialized.encode("utf-8")).digest()


def _conversation_keys(identity_keys: Keys, directory: PeerDirectory) -> dict[int, ConversationKey]:
    """Each member's NIP-44 conversation key with this member, derived once: the identity key's bytes are read
    here and dropped."""
    secret = bytes.fromhex(identity_keys.secret_key().to_hex())
    try:
        return {m: ConversationKey.derive(secret, bytes.fromhex(hex_)) for m, hex_ in directory.identities.items()}
    except ValueError:
        raise ValueError("an identity in the federation directory is not a valid public key") from None
    finally:
        del secret


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
        self.event_text_limit = min(max_payload, PART_BYTES)  # plaintext in one event: a payload, part or batch
        self.max_event_bytes = min(MAX_EVENT_BYTES, event_bytes_bound(self.event_text_limit))
        self._signer = Signer(identity_keys)
        self._conversations = _conversation_keys(identity_keys, directory)
        self._verifiers = {m: PublicKeyXOnly(bytes.fromhex(hex_)) for m, hex_ in directory.identities.items()}
        self._my_p_tag = ["p", directory.my_identity]
        self.seen = ReplayCache(max(1024, int(self.window * REPLAY_RATE)))
        self.reassembly = Reassembly(window=self.window)

    # -- sending

    def prepare(self, recipient: int, payload: bytes) -> Prepared:
        """Check a payload for ``recipient`` (``ValueError`` for a caller's mistake) and encode it once."""
        if recipient not in self._conversations:
            raise ValueError(f"member {recipient!r} is not in the federation directory")
        if not isinstance(payload, (bytes, bytearray)) or not payload:
            raise ValueError("a peer message payload must be non-empty bytes")
        if len(payload) > self.max_payload:
            raise ValueError(f"a peer message of {len(payload)} bytes is over the {self.max_payload}-byte limit")
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("a peer message payload must be UTF-8 text (canonical JSON)") from None
        element = json.dumps(text, ensure_ascii=False)
        return Prepared(bytes(payload), text, element, _utf8_len(element))

    def seal(self, recipient: int, batch: Sequence[Prepared]) -> list[str]:
        """The envelope(s) carrying ``batch`` to ``recipient``, as event JSON: one event, unless a single payload
        needs parts. A batch of several must fit one event (``batch_fits``)."""
        recipient_tag = ["p", self.directory.identities[recipient]]
        if len(batch) == 1:
            texts = [batch[0].text] if len(batch[0].payload) <= PART_BYTES else split_text(batch[0].payload)
            digest = hashlib.sha256(batch[0].payload).hexdigest() if len(texts) > 1 else ""
            extra = [[["part", str(i), str(len(texts)), digest]] for i in range(1, len(texts) + 1)] if digest else [[]]
        elif self.batch_fits(batch):
            texts = ["[" + ",".join(item.element for item in batch) + "]"]
            extra = [[["batch", str(len(batch))]]]
        else:
            raise ValueError(f"a batch of {len(batch)} messages does not fit one event")
        created_at = int(self.clock())
        sealed = []
        for text, more_tags in zip(texts, extra):
            content = self._conversations[recipient].encrypt(text)
            tags = [recipient_tag, *more_tags]
            digest_bytes = event_id(self.directory.my_identity, created_at, tags, content)
            sealed.append(dumps_compact({
                "id": digest_bytes.hex(), "pubkey": self.directory.my_identity, "created_at": created_at,
                "kind": PEER_MESSAGE_KIND, "tags": tags, "content": content,
                "sig": self._signer.sign(digest_bytes).hex(),
            }))
        return sealed

    def batch_fits(self, batch: Sequence[Prepared]) -> bool:
        """Whether these messages fit one event together (a JSON array: brackets and commas)."""
        size = sum(item.size for item in batch) + len(batch) + 1
        return len(batch) <= MAX_BATCH and size <= self.event_text_limit

    # -- receiving

    def check(self, raw: str | bytes) -> Checked:
        """Authenticate one envelope given as event JSON (``Rejected`` if it fails)."""
        size = len(raw) if isinstance(raw, bytes) else _utf8_len(raw)
        if size > self.max_event_bytes:
            raise Rejected("oversize", f"{size} bytes, over the {self.max_event_bytes}-byte limit")
        try:
            data = loads_bounded(raw, max_bytes=self.max_event_bytes, max_depth=3, what="peer envelope")
        except (ValueError, UnicodeError) as exc:
            raise Rejected("malformed", str(exc)) from None
        return self.check_event(data, size)

    def check_event(self, data: object, size: int) -> Checked:
        """Authenticate one envelope a relay client already parsed; ``size`` is the bytes it came in."""
        if size > self.max_event_bytes:
            raise Rejected("oversize", f"{size} bytes, over the {self.max_event_bytes}-byte limit")
        if not isinstance(data, dict) or data.keys() != _FIELDS:
            raise Rejected("malformed", "not an event object with exactly the NIP-01 fields")
        if type(data["kind"]) is not int or data["kind"] != PEER_MESSAGE_KIND:
            raise Rejected("malformed", f"kind {data['kind']!r} is not a peer message")
        pubkey = data["pubkey"]
        sender = self.directory.member_of(pubkey) if isinstance(pubkey, str) else None
        if sender is None:
            raise Rejected("unknown_author", "signed by a key that is not a member's")
        tags = data["tags"]
        part, batch = self._second_tag(tags)
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
            computed = event_id(pubkey, created_at, tags, content)
        except UnicodeEncodeError:
            raise Rejected("malformed", "content is not valid Unicode") from None
        if computed.hex() != message_id:
            raise Rejected("bad_signature", "the id does not match the event")
        if computed in self.seen:
            raise Rejected("replay", "message id seen before")
        if _HEX128.fullmatch(sig) is None or not self._verifiers[sender].verify(bytes.fromhex(sig), computed):
            raise Rejected("bad_signature", "the signature does not verify")
        self.seen.add(computed, forget_after=created_at + self.window, now=now)
        return Checked(sender, message_id, created_at, content, part, batch)

    def _second_tag(self, tags: object) -> tuple[Part | None, int]:
        """Check the tags are exactly ours (a ``p`` tag for this member, then ``part`` or ``batch``) and read them."""
        if not isinstance(tags, list) or not 1 <= len(tags) <= 2 or tags[0] != self._my_p_tag:
            if isinstance(tags, list) and tags and isinstance(tags[0], list) and tags[0][:1] == ["p"]:
                raise Rejected("malformed", "not addressed to this member")
            raise Rejected("malformed", "tags must be one p tag for this member, then an optional part or batch tag")
        if len(tags) == 1:
            return None, 0
        tag = tags[1]
        if not isinstance(tag, list) or not all(isinstance(v, str) and v.isascii() for v in tag):
            raise Rejected("malformed", "the second tag must be an array of ASCII strings")
        if len(tag) == 2 and tag[0] == "batch" and tag[1].isdecimal() and len(tag[1]) <= 3:
            if not 2 <= int(tag[1]) <= MAX_BATCH:
                raise Rejected("malformed", f"a batch holds 2..{MAX_BATCH} messages")
            return None, int(tag[1])
        if not (len(tag) == 4 and tag[0] == "part"):
            raise Rejected("malformed", "the second tag must be [part, index, count, digest] or [batch, count]")
        _, index, count, digest = tag
        if not (index.isdecimal() and count.isdecimal() and len(index) <= 3 and len(count) <= 3):
            raise Rejected("malformed", "part index and count must be small numbers")
        if int(count) > self.max_parts:
            raise Rejected("oversize", f"{count} parts, over the {self.max_parts}-part limit")
        if not 1 <= int(index) <= int(count) or int(count) < 2 or len(digest) != 64:
            raise Rejected("malformed", "part index out of range or digest malformed")
        return Part(int(index), int(count), digest), 0

    def open(self, checked: Checked) -> list[Envelope]:
        """Decrypt an authenticated envelope: the messages it completes (none while parts are still to come)."""
        try:
            text = self._conversations[checked.sender].decrypt(checked.content)
        except Nip44Error as exc:
            raise Rejected("malformed", f"cannot be decrypted with this member's key: {exc}") from None
        piece = text.encode("utf-8")
        if len(piece) > self.event_text_limit:
            raise Rejected("oversize", f"{len(piece)} bytes in one event, over the {self.event_text_limit}-byte limit")
        if checked.batch:
            return self._unbatch(checked, text)
        if checked.part is None:
            return [Envelope(checked.sender, piece, checked.message_id, checked.created_at)]
        try:
            whole = self.reassembly.add(
                checked.sender, checked.part, piece,
                message_id=checked.message_id, created_at=checked.created_at, now=self.clock(),
            )
        except PartMismatch as exc:
            raise Rejected("malformed", str(exc)) from None
        if whole is None:
            return []
        payload, message_id, created_at = whole
        if len(payload) > self.max_payload:
            raise Rejected("oversize", f"a payload of {len(payload)} bytes, over the {self.max_payload}-byte limit")
        return [Envelope(checked.sender, payload, message_id, created_at)]

    def _unbatch(self, checked: Checked, text: str) -> list[Envelope]:
        try:
            items = loads_bounded(text, max_bytes=self.event_text_limit, max_depth=1, what="batch")
        except ValueError as exc:
            raise Rejected("malformed", str(exc)) from None
        if not isinstance(items, list) or len(items) != checked.batch or not all(isinstance(i, str) and i for i in items):
            raise Rejected("malformed", f"a batch must be an array of {checked.batch} non-empty strings")
        try:
            payloads = [item.encode("utf-8") for item in items]
        except UnicodeEncodeError:
            raise Rejected("malformed", "a batched message is not valid Unicode") from None
        return [
            Envelope(checked.sender, payload, f"{checked.message_id}/{index}", checked.created_at)
            for index, payload in enumerate(payloads)
        ]
