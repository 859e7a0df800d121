"""Peer transports: the quorum core's messages between members, authenticated whatever carries them.

``make_transport("nostr" | "redis", ...)`` builds one; both seal and open envelopes the same way
(``sidecar.peers.envelope``) and share the receiving pipeline (``sidecar.peers.inbox``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from nostr_sdk import Keys

from sidecar.peers import ffi
from sidecar.peers.base import REJECTION_REASONS, Envelope, PeerDirectory, PeerTransport, RejectionReason
from sidecar.peers.envelope import PEER_MESSAGE_KIND, EnvelopeCodec
from sidecar.peers.inbox import Inbox
from sidecar.peers.nostr_transport import NostrTransport
from sidecar.peers.redis_transport import RedisTransport, default_inbox_key

TRANSPORTS = ("nostr", "redis")

__all__ = [
    "PEER_MESSAGE_KIND",
    "REJECTION_REASONS",
    "TRANSPORTS",
    "Envelope",
    "PeerDirectory",
    "PeerTransport",
    "RejectionReason",
    "make_transport",
]


def _ignore(reason: str) -> None:
    pass


def make_transport(
    kind: str,
    *,
    directory: PeerDirectory,
    identity_keys: Keys,
    relays: Sequence[str] = (),
    redis: aioredis.Redis | None = None,
    inbox_key: Callable[[int], str] | None = None,
    seen_key: str | None = None,
    rejections: Callable[[str], None] = _ignore,
    replay_window: float = 120.0,
    clock: Callable[[], float] = time.time,
    max_payload: int = 65536,
) -> PeerTransport:
    """A peer transport of ``kind``; ``ValueError`` names what is missing or wrong.

    ``rejections(reason)`` is called once per dropped message, ``reason`` in ``REJECTION_REASONS``.
    ``redis``, when given, also records accepted message ids in the sorted set ``seen_key`` (replay protection
    across restarts); the ``redis`` transport requires it and names each member's inbox ``inbox_key(member)``.
    """
    if kind not in TRANSPORTS:
        raise ValueError(f"unknown peer transport {kind!r}: use one of {', '.join(TRANSPORTS)}")
    ffi.install()
    codec = EnvelopeCodec(
        directory, identity_keys, replay_window=replay_window, clock=clock, max_payload=max_payload
    )
    inbox = Inbox(codec, rejections=rejections, redis=redis, seen_key=seen_key)
    if kind == "nostr":
        return NostrTransport(codec, inbox, relays)
    if redis is None:
        raise ValueError("the redis peer transport needs a Redis client")
    return RedisTransport(codec, inbox, redis, inbox_key=inbox_key or default_inbox_key)
