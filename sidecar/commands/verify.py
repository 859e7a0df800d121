"""``dvm-sidecar verify``: is this event really the federation's? Checks one event JSON against a federation file.

Checked: a well-formed NIP-01 event whose id is recomputed from its content; the group key as its author; a
BIP-340 signature that verifies with two independent implementations (nostr-sdk's ``Event.verify()`` and our
``consensus.frost.verify``); and the shape of what a federation publishes: a NIP-90 job result (kind 6000-6999:
the embedded request, ``e`` = that request's id, ``p`` = its author), job feedback (kind 7000: one known
``status``, an ``e``) or a NIP-89 announcement (kind 31990: ``d``, ``k`` tags, JSON content).
Rules: every problem found is reported, one line each (the first that makes further checks meaningless stops
them); bad input is a problem line, never a crash.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nostr_sdk import Event, NostrSdkError

from consensus.frost import SECP256K1_TR
from consensus.frost import verify as frost_verify
from consensus.jsontext import dumps_compact, loads_bounded
from consensus.nip90 import (
    FEEDBACK_KIND,
    FEEDBACK_STATUSES,
    HANDLER_INFO_KIND,
    RESULT_KIND_OFFSET,
    RESULT_KINDS,
    NostrEvent,
    UnsignedEvent,
    parse_job_request,
)
from sidecar.commands import guarded
from sidecar.federation_file import FederationFile, load_federation

MAX_EVENT_INPUT = 1 << 20  # a result embeds its request: allow well beyond one relay's event limit
_FIELDS = ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")


@dataclass(frozen=True)
class Verdict:
    """``problems`` empty: the event is the federation's and well-formed; ``summary`` says what it is."""

    problems: tuple[str, ...]
    summary: str

    @property
    def ok(self) -> bool:
        return not self.problems


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verify = subparsers.add_parser(
        "verify", help="check that an event was co-signed by a federation and is well-formed",
        description="Check an event (JSON) against a federation file: id, author = the group key, BIP-340 "
                    "signature, and a well-formed NIP-90 result, feedback or NIP-89 announcement. Prints "
                    "'OK: ...' or one line per problem (exit code 1).")
    verify.add_argument("--federation", type=Path, required=True, metavar="FILE", help="the federation file")
    verify.add_argument("event", nargs="?", default="-", metavar="EVENT_FILE",
                        help="the event JSON; '-' (default) reads standard input")
    verify.set_defaults(handler=guarded("verify", run_verify))


def run_verify(args: argparse.Namespace) -> int:
    federation = load_federation(args.federation)
    if args.event == "-":
        data = sys.stdin.buffer.read(MAX_EVENT_INPUT + 1)
    else:
        with open(args.event, "rb") as stream:
            data = stream.read(MAX_EVENT_INPUT + 1)
    verdict = verify_event(data, federation)
    if verdict.ok:
        print(f"OK: {verdict.summary}")
        return 0
    for problem in verdict.problems:
        print(f"problem: {problem}")
    return 1


def verify_event(data: str | bytes, federation: FederationFile) -> Verdict:
    """Check one event's JSON text against ``federation``; every problem found, one line each."""
    problems: list[str] = []
    try:
        doc = loads_bounded(data, max_bytes=MAX_EVENT_INPUT, max_depth=3, what="the input")
    except ValueError as exc:
        return Verdict((f"not an event: {exc}",), "")
    event = _nip01(doc, problems)
    if event is None:
        return Verdict(tuple(problems), "")
    _signature(doc, event, federation, problems)
    summary = _shape(event, problems)
    who = f"the federation {federation.name} ({federation.npub})" if federation.name else federation.npub
    return Verdict(tuple(problems), f"{summary}, co-signed by {who}; event {doc['id']}")


def _nip01(doc: Any, problems: list[str]) -> UnsignedEvent | None:
    """The event's content as an ``UnsignedEvent`` if its form is right (id and sig checked for form only)."""
    if not isinstance(doc, dict):
        problems.append("not an event: the input is not a JSON object")
        return None
    missing = [name for name in _FIELDS if name not in doc]
    unknown = sorted(set(doc) - set(_FIELDS))
    if missing or unknown:
        what = "lacks " + ", ".join(missing) if missing else "has unknown field(s) " + ", ".join(unknown)
        problems.append(f"not a NIP-01 event: it {what}")
        return None
    try:
        event = UnsignedEvent(doc["pubkey"], doc["created_at"], doc["kind"], doc["tags"], doc["content"])
        event.serialize()
    except ValueError as exc:
        problems.append(f"not a NIP-01 event: {exc}")
        return None
    for name, pattern, size in (("id", _HEX64, 64), ("sig", _HEX128, 128)):
        if not isinstance(doc[name], str) or pattern.fullmatch(doc[name]) is None:
            problems.append(f"{name}: must be {size} lowercase hex characters")
    return None if problems else event


def _signature(doc: dict[str, Any], event: UnsignedEvent, federation: FederationFile,
               problems: list[str]) -> None:
    id_ok = event.event_id().hex() == doc["id"]
    if not id_ok:
        problems.append("id: does not match the event's content (NIP-01 serialization): the event was changed "
                        "after it was signed")
    if event.pubkey != federation.group_pubkey:
        problems.append(f"author: {event.pubkey} is not the federation's group key {federation.group_pubkey} "
                        f"({federation.npub}): the federation did not sign this event")
    ours = frost_verify(SECP256K1_TR, bytes.fromhex(doc["id"]), bytes.fromhex(doc["sig"]),
                        bytes.fromhex(event.pubkey))
    if not ours:
        problems.append("sig: the BIP-340 signature does not verify for the event's id and author")
    try:
        theirs = Event.from_json(dumps_compact(doc)).verify()
    except NostrSdkError as exc:
        problems.append(f"nostr-sdk cannot read the event: {' '.join(str(exc).split())}")
        return
    if theirs != (id_ok and ours):
        problems.append(f"nostr-sdk's Event.verify() says {theirs}, the FROST verifier and the id check say "
                        f"{id_ok and ours}: report this")


def _shape(event: UnsignedEvent, problems: list[str]) -> str:
    if event.kind in RESULT_KINDS:
        return _result(event, problems)
    if event.kind == FEEDBACK_KIND:
        return _feedback(event, problems)
    if event.kind == HANDLER_INFO_KIND:
        return _announcement(event, problems)
    problems.append(f"kind: {event.kind} is not what a federation publishes: a NIP-90 job result (6000-6999), "
                    f"feedback ({FEEDBACK_KIND}) or a NIP-89 announcement ({HANDLER_INFO_KIND})")
    return f"kind {event.kind} event"


def _values(event: UnsignedEvent, name: str) -> list[tuple[str, ...]]:
    return [tag[1:] for tag in event.tags if tag[0] == name]


def _linked_id(event: UnsignedEvent, problems: list[str]) -> str | None:
    """The first ``e`` tag's event id."""
    e_tags = _values(event, "e")
    if not e_tags or not e_tags[0] or _HEX64.fullmatch(e_tags[0][0]) is None:
        problems.append('e tag: missing or not ["e", <64-hex request id>]: the event names no request')
        return None
    return e_tags[0][0]


def _result(event: UnsignedEvent, problems: list[str]) -> str:
    summary = f"job result (kind {event.kind})"
    linked = _linked_id(event, problems)
    p_tags = _values(event, "p")
    if not p_tags or not p_tags[0] or _HEX64.fullmatch(p_tags[0][0]) is None:
        problems.append('p tag: missing or not ["p", <64-hex customer pubkey>]')
    requests = _values(event, "request")
    if len(requests) != 1 or len(requests[0]) != 1:
        problems.append(f'request tag: a job result carries exactly one ["request", <request JSON>], '
                        f"found {len(requests)}")
        return summary
    try:
        request = parse_job_request(NostrEvent.from_json(requests[0][0]))
    except ValueError as exc:
        problems.append(f"request tag: the embedded request is not a well-formed job request: {exc}")
        return summary
    summary += f" for request {request.id}"
    if request.kind + RESULT_KIND_OFFSET != event.kind:
        problems.append(f"kind: {event.kind} does not answer the embedded request's kind {request.kind}")
    if linked is not None and linked != request.id:
        problems.append(f"e tag: {linked} is not the embedded request's id {request.id}")
    if p_tags and p_tags[0] and p_tags[0][0] != request.customer:
        problems.append(f"p tag: {p_tags[0][0]} is not the customer (the embedded request's author "
                        f"{request.customer})")
    try:
        signed = Event.from_json(requests[0][0]).verify()
    except NostrSdkError:
        signed = False
    if not signed:
        problems.append("request tag: the embedded request's signature does not verify (not the customer's)")
    return summary


def _feedback(event: UnsignedEvent, problems: list[str]) -> str:
    linked = _linked_id(event, problems)
    statuses = _values(event, "status")
    status = statuses[0][0] if len(statuses) == 1 and statuses[0] else None
    if status not in FEEDBACK_STATUSES:
        problems.append(f'status tag: feedback carries exactly one ["status", <status>, <info>?] with a status '
                        f"in {sorted(FEEDBACK_STATUSES)}")
    for values in _values(event, "p"):
        if not values or _HEX64.fullmatch(values[0]) is None:
            problems.append('p tag: not ["p", <64-hex customer pubkey>]')
    return f"job feedback {status!r} for request {linked}"


def _announcement(event: UnsignedEvent, problems: list[str]) -> str:
    d_tags = _values(event, "d")
    if len(d_tags) != 1 or not d_tags[0] or not d_tags[0][0]:
        problems.append('d tag: an announcement carries exactly one non-empty ["d", <identifier>]')
    kinds = [values[0] if values else "" for values in _values(event, "k")]
    if not kinds:
        problems.append('k tag: an announcement names the kinds it serves, ["k", "5050"], at least one')
    for kind in kinds:
        if not (kind.isascii() and kind.isdecimal() and 5000 <= int(kind) <= 5999):
            problems.append(f"k tag: {kind[:20]!r} is not a job request kind (5000-5999)")
    if event.content:
        try:
            metadata = loads_bounded(event.content, max_bytes=MAX_EVENT_INPUT, max_depth=32, what="content")
        except ValueError as exc:
            metadata = None
            problems.append(f"content: {exc}")
        if metadata is not None and not isinstance(metadata, dict):
            problems.append("content: the announcement's metadata must be a JSON object")
    return f"NIP-89 announcement of kinds {', '.join(kinds)}"
