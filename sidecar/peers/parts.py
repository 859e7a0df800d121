"""Messages larger than one event carries, as numbered parts, and their reassembly with bounded memory.

Relays refuse events over 64 KiB (nostr-sdk's relay and strfry alike), and NIP-44 pads and base64 grows the
text, so one event carries at most ``PART_BYTES`` of payload; a larger message goes as up to ``max_parts``
events, each signed and checked on its own, tagged ``["part", index, count, sha256(payload)]``. Reassembly
keeps at most ``PENDING_PER_SENDER`` unfinished messages per member, each for one replay window, and checks
the digest before it delivers: a part from another message, or a forged one, cannot slip in.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, field

PART_BYTES = 40960  # NIP-44 pads 40960 to itself; the event is then ~55 KB, under the 64 KiB relays take
PENDING_PER_SENDER = 4


def max_parts(max_payload: int) -> int:
    # a split backs off up to 3 bytes to end on a UTF-8 character boundary
    return max(1, math.ceil(max_payload / (PART_BYTES - 3)))


def split_text(payload: bytes, part_bytes: int = PART_BYTES) -> list[str]:
    """UTF-8 ``payload`` as strings of at most ``part_bytes`` each, cut only between characters."""
    parts = []
    start = 0
    while start < len(payload):
        end = min(start + part_bytes, len(payload))
        while end < len(payload) and payload[end] & 0xC0 == 0x80:  # never cut inside a character
            end -= 1
        parts.append(payload[start:end].decode("utf-8"))
        start = end
    return parts


@dataclass(frozen=True)
class Part:
    index: int  # 1-based
    count: int
    digest: str  # sha256 of the whole payload, hex


@dataclass
class _Pending:
    count: int
    started: float
    message_id: str
    created_at: int
    pieces: dict[int, bytes] = field(default_factory=dict)


class PartMismatch(ValueError):
    """The parts put together do not hash to the digest they all carried."""


class Reassembly:
    def __init__(self, *, window: float) -> None:
        self.window = window
        self._pending: dict[int, OrderedDict[str, _Pending]] = {}  # sender -> digest -> parts so far

    def pending(self) -> int:
        return sum(len(by_digest) for by_digest in self._pending.values())

    def add(
        self, sender: int, part: Part, piece: bytes, *, message_id: str, created_at: int, now: float
    ) -> tuple[bytes, str, int] | None:
        """Store one part; the payload with the first part's id and time once all are in, else None.

        ``PartMismatch`` if the complete set does not hash to its digest.
        """
        for waiting in self._pending.values():  # at most members x PENDING_PER_SENDER entries
            for digest in [d for d, p in waiting.items() if p.started + self.window < now]:
                del waiting[digest]
        by_digest = self._pending.setdefault(sender, OrderedDict())
        pending = by_digest.get(part.digest)
        if pending is not None and pending.count != part.count:  # the sender contradicts itself: start over
            del by_digest[part.digest]
            pending = None
        if pending is None:
            while len(by_digest) >= PENDING_PER_SENDER:
                by_digest.popitem(last=False)
            pending = by_digest[part.digest] = _Pending(part.count, now, message_id, created_at)
        pending.pieces.setdefault(part.index, piece)
        if part.index == 1:
            pending.message_id, pending.created_at = message_id, created_at
        if len(pending.pieces) < pending.count:
            return None
        del by_digest[part.digest]
        payload = b"".join(pending.pieces[index] for index in range(1, pending.count + 1))
        if hashlib.sha256(payload).hexdigest() != part.digest:
            raise PartMismatch(f"the {pending.count} parts do not match their digest")
        return payload, pending.message_id, pending.created_at
