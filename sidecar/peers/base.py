"""The peer transport interface: who the members are, what a received message is, and what a transport does.

A transport carries the quorum core's opaque message bytes between members. It is never trusted: every
message is a Nostr event signed by the sender's identity key and NIP-44 encrypted to the recipient, on every
transport alike, and the receiving side authenticates it before anything else sees it. Anything that fails is
dropped and counted under one of ``REJECTION_REASONS``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

RejectionReason = Literal[
    "unknown_author", "bad_signature", "stale", "replay", "malformed", "oversize", "overflow"
]
REJECTION_REASONS: tuple[RejectionReason, ...] = get_args(RejectionReason)

_XONLY_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PeerDirectory:
    """Everything about who is who: this member's index and every member's identity key (x-only hex)."""

    me: int
    identities: Mapping[int, str]
    _by_identity: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        identities = dict(self.identities)
        for member, identity in identities.items():
            if type(member) is not int or not 1 <= member <= 65535:
                raise ValueError(f"member index {member!r} must be an integer in 1..65535")
            if not isinstance(identity, str) or _XONLY_HEX.fullmatch(identity) is None:
                raise ValueError(f"identity of member {member} must be 64 lowercase hex characters (x-only)")
        by_identity = {identity: member for member, identity in identities.items()}
        if len(by_identity) != len(identities):
            raise ValueError("two members share one identity key: each member needs its own")
        if self.me not in identities:
            raise ValueError(f"this member ({self.me!r}) is not in the directory")
        object.__setattr__(self, "identities", identities)
        object.__setattr__(self, "_by_identity", by_identity)

    def member_of(self, identity: str) -> int | None:
        """The member index holding ``identity``, or None for a stranger."""
        return self._by_identity.get(identity)

    @property
    def my_identity(self) -> str:
        return self.identities[self.me]


@dataclass(frozen=True)
class Envelope:
    """One authenticated message: who sent it, its bytes, its id (the Nostr event id) and its signed time."""

    sender: int
    payload: bytes
    message_id: str
    created_at: int


class PeerTransport(Protocol):
    async def start(self) -> None:
        """Connect and start receiving; returns once the transport can send."""

    async def stop(self) -> None:
        """Stop receiving and release connections; ``messages()`` iterators end."""

    async def send(self, recipients: Sequence[int], payload: bytes) -> None:
        """One signed, encrypted message per recipient (each member once; this member included if named).

        ``ValueError`` for a caller's mistake (an unknown recipient, an empty, non-UTF-8 or oversize payload).
        Delivery is best effort, as a relay's is: a relay or Redis that is down is logged, not raised.
        """

    def messages(self) -> AsyncIterator[Envelope]:
        """Authenticated messages only, in arrival order, until the transport stops."""
