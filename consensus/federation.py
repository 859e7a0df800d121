"""What every member of a federation agrees on before any job: who the members are, the threshold, the group
key, the digest policy and the protocol's time limits. Public facts only; the same value on every member.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from consensus.frost import SECP256K1_TR, Ciphersuite, PublicKeyPackage
from consensus.policies import DigestPolicy, parse_policy


@dataclass(frozen=True)
class Timeouts:
    """Protocol time limits in seconds (time is always an input: these are durations, never clock reads).

    dvm: how long a member waits for its own DVM before announcing a timeout.
    deadline: from the request, how long the federation waits for t matching announcements before giving up
      and co-signing a kind 7000 error instead.
    coordinator: how long a coordinator has to get a job co-signed before the next member takes over.
    session: how long a coordinator waits on a signing session before it starts another one without the
      members that have not answered (ROAST); each such session leaves out at least one faulty member.
    """

    dvm: float = 30.0
    deadline: float = 60.0
    coordinator: float = 20.0
    session: float = 2.0

    def __post_init__(self) -> None:
        for name in ("dvm", "deadline", "coordinator", "session"):
            if not getattr(self, name) > 0:
                raise ValueError(f"timeout {name} must be positive")


@dataclass(frozen=True)
class Federation:
    """The public parameters shared by all members; members are the FROST identifiers 1..n."""

    keys: PublicKeyPackage
    policy: DigestPolicy = field(default_factory=lambda: parse_policy("exact"))
    timeouts: Timeouts = field(default_factory=Timeouts)
    suite: Ciphersuite = SECP256K1_TR
    max_payload: int = 65536

    def __post_init__(self) -> None:
        if self.keys.min_signers < 2:
            raise ValueError("threshold must be at least 2")
        if self.max_payload < 1024:
            raise ValueError("max_payload must be at least 1024 bytes")

    @property
    def threshold(self) -> int:
        return self.keys.min_signers

    @cached_property
    def members(self) -> tuple[int, ...]:
        return tuple(identifier for identifier, _ in self.keys.verifying_shares)

    @property
    def n(self) -> int:
        return len(self.keys.verifying_shares)

    @property
    def pubkey(self) -> str:
        """The federation's Nostr public key (x-only hex): the author of everything it publishes."""
        return self.keys.xonly_public_key.hex()

    @property
    def max_sessions(self) -> int:
        """Signing sessions one coordinator runs for one job: ROAST needs n - t + 1; the rest absorbs members
        that restarted and refreshed a commitment, which is not misbehaviour."""
        return 2 * (self.n - self.threshold + 1)

    @property
    def takeover_after(self) -> float:
        """How long a coordinator keeps the role: the configured time, but at least long enough to run the
        n - t + 1 sessions that ROAST may need against members that withhold their shares."""
        return max(self.timeouts.coordinator, (self.n - self.threshold + 2) * self.timeouts.session)

    def rotation(self, job_id: str) -> tuple[int, ...]:
        """The job's coordinator order: members sorted by a hash of the job id, so every member derives the
        same order and the load spreads over the federation."""
        seed = bytes.fromhex(job_id)
        return tuple(
            sorted(self.members, key=lambda m: hashlib.sha256(seed + m.to_bytes(2, "big")).digest())
        )
