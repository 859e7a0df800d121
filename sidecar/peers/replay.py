"""The in-memory record of peer message ids already accepted, bounded in size whatever arrives.

Only authenticated messages are recorded (a stranger's junk never gets this far), each until its signed
``created_at`` leaves the replay window, after which the window check refuses it anyway. Entries are kept in
arrival order and expire from the front; past ``capacity`` the oldest go first, so a member flooding valid
messages costs memory no larger than the bound (the Redis record, when the transport has one, still covers
what was evicted).
"""

from __future__ import annotations

from collections import OrderedDict


class ReplayCache:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a replay cache needs room for at least one message id")
        self.capacity = capacity
        # message id -> when it may be forgotten, in arrival order (OrderedDict: O(1) at the front, where a
        # plain dict would rescan the holes its deletions leave)
        self._expiry: OrderedDict[bytes, float] = OrderedDict()
        self.forgot_early_at: float | None = None  # when an id was last dropped before its time (the cache full)

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, message_id: bytes) -> bool:
        return message_id in self._expiry

    def add(self, message_id: bytes, *, forget_after: float, now: float) -> None:
        """Remember ``message_id`` until ``forget_after`` (seconds since the epoch); ``now`` drives expiry."""
        expiry = self._expiry
        while expiry:
            oldest = next(iter(expiry.values()))
            if oldest >= now and len(expiry) < self.capacity:
                break
            if oldest >= now:
                self.forgot_early_at = now
            expiry.popitem(last=False)
        expiry[message_id] = forget_after
