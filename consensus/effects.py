"""What goes into the job state machine (inputs) and what comes out of it (effects).

The shell turns the world into inputs — a request seen on a relay, the own DVM's answer, an authenticated peer
message, a timer that fired — and carries out the effects in order: run the DVM, send messages, publish events,
set timers, record evidence, finish the job. Time is passed alongside each input, never read.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.messages import Message
from consensus.nip90 import DvmResult, JobRequest, NostrEvent, UnsignedEvent

# --- inputs ---


@dataclass(frozen=True)
class RequestSeen:
    """A job request (its signature already checked by the shell) addressed to the federation."""

    request: JobRequest

    @property
    def job_id(self) -> str:
        return self.request.event.id


@dataclass(frozen=True)
class CosignEvent:
    """An event every member builds the same way from the federation's shared settings (the NIP-89
    announcement): co-sign it once t members' own copies match. The job id is the event's id."""

    event: UnsignedEvent

    @property
    def job_id(self) -> str:
        return self.event.event_id().hex()


@dataclass(frozen=True)
class LocalResult:
    """The member's own DVM answered with a result."""

    job_id: str
    result: DvmResult


@dataclass(frozen=True)
class LocalError:
    """The member's own DVM failed (``reason`` "error") or did not answer in time ("timeout")."""

    job_id: str
    reason: str


@dataclass(frozen=True)
class PeerMessage:
    """A message from another member, authenticated by the shell (``sender`` is its verified index)."""

    sender: int
    message: Message

    @property
    def job_id(self) -> str:
        return self.message.job_id


@dataclass(frozen=True)
class TimerFired:
    job_id: str
    name: str  # dvm | deadline | takeover | session | expire


Input = RequestSeen | CosignEvent | LocalResult | LocalError | PeerMessage | TimerFired

# --- effects ---


@dataclass(frozen=True)
class RunDvm:
    """Forward the request to the member's own DVM."""

    job_id: str
    request: JobRequest


@dataclass(frozen=True)
class Send:
    recipients: tuple[int, ...]
    message: Message


@dataclass(frozen=True)
class Publish:
    """A co-signed event, ready for the public relays (the same event id on every member)."""

    job_id: str
    event: NostrEvent


@dataclass(frozen=True)
class SetTimer:
    """Feed ``TimerFired(job_id, name)`` at time ``at``; a later SetTimer of the same name replaces it."""

    job_id: str
    name: str
    at: float


@dataclass(frozen=True)
class Evidence:
    """A member misbehaved or diverged: kind is invalid_share, divergent, equivocation or invalid_message."""

    job_id: str
    member: int
    kind: str
    detail: str


@dataclass(frozen=True)
class Finished:
    """The job is over for this member: outcome is cosigned, dvm_error, timeout or no_quorum."""

    job_id: str
    outcome: str
    event: NostrEvent | None
    sessions: int


Effect = RunDvm | Send | Publish | SetTimer | Evidence | Finished
