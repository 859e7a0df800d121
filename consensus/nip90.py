"""Nostr events (NIP-01) and the NIP-90 job flow: every kind number and tag name of that flow lives here.

A successor flow (ephemeral request kinds, heartbeats) is an addition to this module, not a change elsewhere.
Rules kept here: pure functions and frozen types; no clock (``created_at`` is always an argument); no signing
or signature checks (the group signs through FROST, the shell verifies with nostr-sdk); every builder is
deterministic, so members that agree on the same inputs build the same event id.

Event ids are computed exactly as NIP-01 and nostr-sdk do: sha256 over the compact JSON array
``[0, pubkey, created_at, kind, tags, content]`` in UTF-8, with only ``"``, ``\\`` and control characters
escaped (``\\n``-style where JSON has one, ``\\u00xx`` otherwise). Strings that are not valid Unicode scalar
values (lone surrogates) cannot be encoded that way and are refused.

Parsing is strict and refuses with a ``ValueError`` that names the problem: oversize text before it is
parsed, nesting deeper than an event has, duplicate or unknown fields, wrong types, non-lowercase or mis-sized
hex, and an id that does not match the content.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from consensus.jsontext import dumps_compact, loads_bounded

if TYPE_CHECKING:
    from consensus.policies import ResultPayload

MAX_EVENT_BYTES = 65536

REQUEST_KINDS = range(5000, 6000)
RESULT_KINDS = range(6000, 7000)
RESULT_KIND_OFFSET = 1000
FEEDBACK_KIND = 7000
HANDLER_INFO_KIND = 31990  # NIP-89 handler information (addressable)

INPUT_TYPES = frozenset({"url", "event", "job", "text"})
FEEDBACK_STATUSES = frozenset({"payment-required", "processing", "error", "success", "partial"})

# Tags that tie a result or feedback to its request; a DVM's answer is compared without them.
LINKING_TAGS = frozenset({"request", "e", "p", "i", "relays"})
AMOUNT_TAG = "amount"
ENCRYPTED_TAG = "encrypted"

_EVENT_FIELDS = ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")
_EVENT_DEPTH = 3  # object > tags array > tag array
_MAX_TIMESTAMP = 2**63 - 1  # nostr-sdk keeps created_at as u64; refuse what JSON tooling cannot round-trip
_MAX_MSATS = 2**63 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_DIGITS = re.compile(r"[0-9]+")

Tags = tuple[tuple[str, ...], ...]


# ----------------------------------------------------------------------------------------------------
# Events (NIP-01)


def _check_hex(value: object, pattern: re.Pattern[str], field: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        size = 64 if pattern is _HEX64 else 128
        raise ValueError(f"{field} must be {size} lowercase hex characters")
    return value


def _check_int(value: object, low: int, high: int, field: str) -> int:
    if type(value) is not int or not low <= value <= high:  # bool is not an int here
        raise ValueError(f"{field} must be an integer in {low}..{high}")
    return value


def check_tags(value: object) -> Tags:
    """Tags as a tuple of non-empty tuples of strings; lists are accepted and converted."""
    if not isinstance(value, (list, tuple)):
        raise ValueError("tags must be an array of arrays of strings")
    tags = []
    for index, tag in enumerate(value):
        if not isinstance(tag, (list, tuple)) or not tag:
            raise ValueError(f"tag {index} must be a non-empty array of strings")
        if not all(isinstance(item, str) for item in tag):
            raise ValueError(f"tag {index} must hold only strings")
        tags.append(tuple(tag))
    return tuple(tags)


def _serialize_for_id(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> bytes:
    text = dumps_compact([0, pubkey, created_at, kind, [list(tag) for tag in tags], content])
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("event holds a string that is not valid Unicode (a lone surrogate)") from None


@dataclass(frozen=True)
class UnsignedEvent:
    """An event before signing; its id is what the author (the group key, through FROST) signs."""

    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str

    def __post_init__(self) -> None:
        _check_hex(self.pubkey, _HEX64, "pubkey")
        _check_int(self.created_at, 0, _MAX_TIMESTAMP, "created_at")
        _check_int(self.kind, 0, 65535, "kind")
        object.__setattr__(self, "tags", check_tags(self.tags))
        if not isinstance(self.content, str):
            raise ValueError("content must be a string")

    def serialize(self) -> bytes:
        """The NIP-01 serialization whose sha256 is the event id."""
        return _serialize_for_id(self.pubkey, self.created_at, self.kind, self.tags, self.content)

    def event_id(self) -> bytes:
        return self._id

    @cached_property
    def _id(self) -> bytes:  # an event is immutable: its id is computed once, however often it is asked for
        return hashlib.sha256(self.serialize()).digest()

    def with_signature(self, sig: bytes) -> NostrEvent:
        """The signed event; the signature is not checked here (the shell verifies with nostr-sdk)."""
        if not isinstance(sig, (bytes, bytearray)) or len(sig) != 64:
            raise ValueError("a BIP-340 signature is 64 bytes")
        # Built without NostrEvent's checks: they would check again the fields this event checked when it was
        # made, and hash it again for an id it already holds.
        event = object.__new__(NostrEvent)
        fields = {"id": self.event_id().hex(), "pubkey": self.pubkey, "created_at": self.created_at,
                  "kind": self.kind, "tags": self.tags, "content": self.content, "sig": bytes(sig).hex()}
        event.__dict__.update(fields)
        return event


@dataclass(frozen=True)
class NostrEvent:
    """A signed event whose id always matches its content (checked on construction); the signature is only
    checked for form here."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str
    sig: str

    def __post_init__(self) -> None:
        _check_hex(self.id, _HEX64, "id")
        _check_hex(self.sig, _HEX128, "sig")
        unsigned = self.unsigned()  # validates the remaining fields
        object.__setattr__(self, "tags", unsigned.tags)
        if unsigned.event_id().hex() != self.id:
            raise ValueError("id does not match the event's content (NIP-01 serialization)")

    @classmethod
    def from_json(cls, text: str | bytes, *, max_bytes: int = MAX_EVENT_BYTES) -> NostrEvent:
        data = loads_bounded(text, max_bytes=max_bytes, max_depth=_EVENT_DEPTH, what="event")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> NostrEvent:
        if not isinstance(data, dict):
            raise ValueError("an event must be a JSON object")
        missing = [name for name in _EVENT_FIELDS if name not in data]
        if missing:
            raise ValueError(f"event lacks field(s): {', '.join(missing)}")
        unknown = sorted(set(data) - set(_EVENT_FIELDS))
        if unknown:
            raise ValueError(f"event has unknown field(s): {', '.join(unknown)}")
        return cls(**{name: data[name] for name in _EVENT_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": [list(tag) for tag in self.tags],
            "content": self.content,
            "sig": self.sig,
        }

    def to_json(self) -> str:
        """Compact JSON in nostr-sdk's field order."""
        return self._json

    @cached_property
    def _json(self) -> str:  # written into every saved job state: computed once per event
        return dumps_compact(self.to_dict())

    def unsigned(self) -> UnsignedEvent:
        return UnsignedEvent(self.pubkey, self.created_at, self.kind, self.tags, self.content)

    def tag_values(self, name: str) -> tuple[tuple[str, ...], ...]:
        """The tags called ``name``, each without its name, in order."""
        return tuple(tag[1:] for tag in self.tags if tag[0] == name)


# ----------------------------------------------------------------------------------------------------
# Job requests (kind 5000-5999)


def is_request_kind(kind: int) -> bool:
    return kind in REQUEST_KINDS


def result_kind(request_kind: int) -> int:
    if not is_request_kind(request_kind):
        raise ValueError(f"kind {request_kind} is not a NIP-90 job request kind (5000-5999)")
    return request_kind + RESULT_KIND_OFFSET


@dataclass(frozen=True)
class JobInput:
    """One ``i`` tag: ``["i", data, type, relay, marker]``; relay and marker may be empty."""

    data: str
    type: str
    relay: str = ""
    marker: str = ""


@dataclass(frozen=True)
class JobRequest:
    """A parsed kind 5xxx request. For an encrypted request the inputs and params are in the ciphertext,
    so ``inputs`` and ``params`` are empty and ``encrypted`` is true."""

    event: NostrEvent
    kind: int
    inputs: tuple[JobInput, ...]
    params: tuple[tuple[str, str], ...]
    output: str | None
    bid: int | None
    relays: tuple[str, ...]
    service_providers: tuple[str, ...]
    encrypted: bool

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def customer(self) -> str:
        return self.event.pubkey

    @property
    def addressee(self) -> str | None:
        """The last ``p`` tag: the key that common DVM frameworks take the request to be for."""
        return self.service_providers[-1] if self.service_providers else None


def _single(event: NostrEvent, name: str) -> tuple[str, ...] | None:
    found = event.tag_values(name)
    if len(found) > 1:
        raise ValueError(f"request has {len(found)} {name!r} tags; at most one is allowed")
    return found[0] if found else None


def _parse_input(index: int, values: tuple[str, ...]) -> JobInput:
    if not 2 <= len(values) <= 4:
        raise ValueError(f'i tag {index} must be ["i", data, type, relay?, marker?]')
    data, kind, *rest = values
    if kind not in INPUT_TYPES:
        raise ValueError(f"i tag {index} has input type {kind!r}; expected one of {sorted(INPUT_TYPES)}")
    if kind in ("event", "job") and _HEX64.fullmatch(data) is None:
        raise ValueError(f"i tag {index} of type {kind!r} must hold a 64-hex event id")
    relay = rest[0] if rest else ""
    marker = rest[1] if len(rest) > 1 else ""
    return JobInput(data, kind, relay, marker)


def parse_job_request(event: NostrEvent) -> JobRequest:
    """Read a kind 5xxx request; a ``ValueError`` names the first malformed part."""
    if not is_request_kind(event.kind):
        raise ValueError(f"kind {event.kind} is not a NIP-90 job request kind (5000-5999)")
    inputs = tuple(_parse_input(index, values) for index, values in enumerate(event.tag_values("i")))
    params = []
    for index, values in enumerate(event.tag_values("param")):
        if len(values) != 2 or not values[0]:
            raise ValueError(f'param tag {index} must be ["param", key, value] with a non-empty key')
        params.append((values[0], values[1]))
    output = _single(event, "output")
    if output is not None and len(output) != 1:
        raise ValueError('output tag must be ["output", mime-type]')
    bid_tag = _single(event, "bid")
    bid = None
    if bid_tag is not None:
        if not bid_tag or _DIGITS.fullmatch(bid_tag[0]) is None or len(bid_tag[0]) > 19:
            raise ValueError('bid tag must be ["bid", msats] with msats a non-negative integer')
        bid = int(bid_tag[0])
        if bid > _MAX_MSATS:
            raise ValueError("bid is too large")
    relays = _single(event, "relays") or ()
    providers = []
    for index, values in enumerate(event.tag_values("p")):
        if not values or _HEX64.fullmatch(values[0]) is None:
            raise ValueError(f"p tag {index} must hold a 64-hex public key")
        providers.append(values[0])
    encrypted = bool(event.tag_values(ENCRYPTED_TAG))
    return JobRequest(
        event=event,
        kind=event.kind,
        inputs=inputs,
        params=tuple(params),
        output=output[0] if output else None,
        bid=bid,
        relays=tuple(relays),
        service_providers=tuple(providers),
        encrypted=encrypted,
    )


# ----------------------------------------------------------------------------------------------------
# A DVM's answer (kind 6xxx result or kind 7000 feedback)


@dataclass(frozen=True)
class DvmResult:
    """A DVM's result with the tags linking it to the request stripped: what digest policies look at."""

    content: str
    tags: Tags


@dataclass(frozen=True)
class DvmFeedback:
    status: str
    info: str


def _references(event: NostrEvent, request_id: str) -> bool:
    return any(values and values[0] == request_id for values in event.tag_values("e"))


def parse_dvm_response(
    event: NostrEvent, request_id: str, *, request_kind: int | None = None
) -> DvmResult | DvmFeedback:
    """A DVM's kind 6xxx result or kind 7000 feedback that references ``request_id`` in an ``e`` tag.

    With ``request_kind`` the result's kind must also be the matching result kind.
    """
    if not _references(event, request_id):
        raise ValueError("response does not reference the request in an e tag")
    if event.kind == FEEDBACK_KIND:
        statuses = event.tag_values("status")
        if len(statuses) != 1 or not statuses[0]:
            raise ValueError('feedback must carry exactly one ["status", status, info?] tag')
        status = statuses[0][0]
        if status not in FEEDBACK_STATUSES:
            raise ValueError(f"feedback status {status!r} is not one of {sorted(FEEDBACK_STATUSES)}")
        return DvmFeedback(status=status, info=statuses[0][1] if len(statuses[0]) > 1 else "")
    if event.kind not in RESULT_KINDS:
        raise ValueError(f"kind {event.kind} is neither a job result (6000-6999) nor feedback (7000)")
    if request_kind is not None and event.kind != result_kind(request_kind):
        raise ValueError(f"result kind {event.kind} does not answer request kind {request_kind}")
    kept = tuple(tag for tag in event.tags if tag[0] not in LINKING_TAGS)
    return DvmResult(content=event.content, tags=kept)


# ----------------------------------------------------------------------------------------------------
# What the group publishes (deterministic: the same inputs give the same event id on every member)


def _linking_tags(request: JobRequest) -> list[tuple[str, ...]]:
    return [("e", request.id), ("p", request.customer)]


def build_result_event(
    request: JobRequest, payload: ResultPayload, author: str, *, created_at: int
) -> UnsignedEvent:
    """The result for ``request``: the request itself, ``e``/``p`` links, the inputs (unless the request was
    encrypted), then the payload's tags; the payload's content as content."""
    tags: list[tuple[str, ...]] = [("request", request.event.to_json()), *_linking_tags(request)]
    if not request.encrypted:
        tags.extend(tag for tag in request.event.tags if tag[0] == "i")
    tags.extend(payload.tags)
    return UnsignedEvent(author, created_at, result_kind(request.kind), tuple(tags), payload.content)


def build_feedback_event(
    request: JobRequest, status: str, info: str, author: str, *, created_at: int, content: str = ""
) -> UnsignedEvent:
    if status not in FEEDBACK_STATUSES:
        raise ValueError(f"feedback status {status!r} is not one of {sorted(FEEDBACK_STATUSES)}")
    status_tag = ("status", status, info) if info else ("status", status)
    tags = (status_tag, *_linking_tags(request))
    return UnsignedEvent(author, created_at, FEEDBACK_KIND, tags, content)


def build_handler_info(
    author: str, kinds: Sequence[int], metadata: Mapping[str, object], d: str, *, created_at: int
) -> UnsignedEvent:
    """NIP-89 announcement: ``d`` identifier, one ``k`` tag per served request kind (sorted, unique), and the
    metadata (name, about, picture, nip90Params, ...) as canonical JSON content."""
    if not d:
        raise ValueError("the d identifier of a handler announcement must not be empty")
    if not kinds:
        raise ValueError("a handler announcement needs at least one request kind")
    for kind in kinds:
        if not isinstance(kind, int) or not is_request_kind(kind):
            raise ValueError(f"kind {kind!r} is not a NIP-90 job request kind (5000-5999)")
    try:
        content = json.dumps(
            dict(metadata), ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"handler metadata is not JSON-serializable: {exc}") from None
    tags = (("d", d), *(("k", str(kind)) for kind in sorted(set(kinds))))
    return UnsignedEvent(author, created_at, HANDLER_INFO_KIND, tags, content)


def reissue_request(request: JobRequest, *, author: str, dvm_pubkey: str, created_at: int) -> UnsignedEvent:
    """A copy of the customer's request for the operator's own DVM: same kind, content and tags, except that
    every ``p`` tag is replaced by one ``["p", dvm_pubkey]`` at the end (frameworks read the last ``p``) and
    the ``relays`` tag is dropped (the DVM answers on the private relay only)."""
    if request.encrypted:
        raise ValueError("an encrypted request cannot be reissued: its content is encrypted to another key")
    _check_hex(dvm_pubkey, _HEX64, "dvm_pubkey")
    tags = [tag for tag in request.event.tags if tag[0] not in ("p", "relays")]
    tags.append(("p", dvm_pubkey))
    return UnsignedEvent(author, created_at, request.kind, tuple(tags), request.event.content)
