"""What the crash, outage and load tests observe of a federation of processes, from outside the processes:
each member's job records in Redis, every peer message on the wire, readiness and metrics over HTTP, and
memory (RSS).

The wire: on the ``redis`` peer transport every message a member sends is an envelope appended to the
recipient's inbox stream, where it stays (streams are capped at 10,000 entries, far above what these tests
send). ``read_wire`` opens every envelope with the recipient's identity key, exactly as the recipient does, so
the tests see each SIGN-REQUEST and each SHARE that left a process; ``share_reuse`` finds any commitment a
signer answered twice (a reused nonce pair gives its share away). A coordinator's request to itself and its own
share never leave its process, so they are not on the wire.

Nothing secret is printed: identity keys are loaded to open envelopes and stay in nostr-sdk objects.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from consensus.messages import Message, Share, SignRequest, decode
from consensus.nip90 import parse_job_request
from sidecar.config import load_federation
from sidecar.example_dvm import honest_answer
from sidecar.keyfiles import load_identity
from sidecar.peers.base import PeerDirectory
from sidecar.peers.envelope import EnvelopeCodec, Rejected
from sidecar.relay import from_sdk_event
from sidecar.store import StoreKeys
from tests.e2e.customer import Customer, Job
from tests.e2e.processes import CLI, PASSPHRASE, ProcessFederation

WIRE_WINDOW = 3600.0  # seconds: every envelope of a test is younger than this


def group_pubkey(fed: ProcessFederation) -> str:
    return load_federation(fed.root / "federation.toml").group_pubkey


def keys_of(fed: ProcessFederation, member: int) -> StoreKeys:
    """Member ``member``'s Redis key names, as its sidecar builds them (namespace: the group key's first 16)."""
    return StoreKeys(group_pubkey(fed)[:16], member)


def set_option(fed: ProcessFederation, member: int, section: str, key: str, value: str) -> None:
    """Write ``key = value`` (``value`` in TOML syntax) under ``[section]`` of the member's sidecar.toml,
    before the member starts."""
    config = fed.members[member].config
    text = config.read_text()
    header = f"[{section}]\n"
    if header in text:
        text = text.replace(header, f"{header}{key} = {value}\n", 1)
    else:
        text += f"{header}{key} = {value}\n"
    config.write_text(text)


def start(fed: ProcessFederation, *members: int, timeout: float = 60.0) -> None:
    """Start members (all by default, side by side) and wait until each one's DVM is serving: the example DVM
    subscribes from the moment it starts, so a job forwarded before that would never be answered."""
    chosen = members or tuple(fed.members)
    with ThreadPoolExecutor(len(chosen)) as pool:
        for done in [pool.submit(_start_one, fed, member, timeout) for member in chosen]:
            done.result()


def _start_one(fed: ProcessFederation, member: int, timeout: float) -> None:
    log = fed.members[member].log
    before = _banners(log)
    fed.start(member)
    _wait_banner(log, before, member, timeout)


def _wait_banner(log: Path, before: int, member: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _banners(log) <= before:
        assert time.monotonic() < deadline, f"member {member}'s DVM did not start within {timeout:g} s"
        time.sleep(0.05)


def restart_dvm(fed: ProcessFederation, member: int, timeout: float = 60.0) -> None:
    """Start the member's DVM process again after it was killed (its sidecar kept running), as
    ``ProcessFederation.start`` starts it, and wait until it serves."""
    m = fed.members[member]
    assert m.dvm is None or m.dvm.poll() is not None, f"member {member}'s DVM is still running"
    before = _banners(m.log)
    with m.log.open("ab") as log:
        m.dvm = subprocess.Popen(
            [*CLI, "example-dvm", "--relay", f"ws://127.0.0.1:{m.private_port}", "--nsec-file",
             str(m.dvm_key_file), *m.dvm_flags],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
    _wait_banner(m.log, before, member, timeout)


def pause_dvm(fed: ProcessFederation, member: int, paused: bool = True) -> None:
    """Freeze (SIGSTOP) or thaw (SIGCONT) the member's DVM process: a DVM that is slow exactly as long as a
    test needs. Requests forwarded meanwhile wait in its socket and are answered once it runs again."""
    dvm = fed.members[member].dvm
    assert dvm is not None and dvm.poll() is None, f"member {member}'s DVM is not running"
    os.kill(dvm.pid, signal.SIGSTOP if paused else signal.SIGCONT)


def _banners(log: Path) -> int:
    return log.read_text(errors="replace").count("example-dvm npub") if log.exists() else 0


# --- jobs --------------------------------------------------------------------------------------------------


def build_job(customer: Customer, fed: ProcessFederation, text: str, *, first: int | None = None) -> Job:
    """A request for ``text`` (not sent yet). With ``first``, one whose coordinator rotation starts with
    member ``first`` (a few tries: each rotation order is equally likely)."""
    federation = load_federation(fed.root / "federation.toml").federation()
    for attempt in range(200):
        event = customer.build(f"{text} ({attempt})")
        if first is None or federation.rotation(event.id().to_hex())[0] == first:
            return Job(event, honest_answer(parse_job_request(from_sdk_event(event))))
    raise AssertionError(f"no request with member {first} first in its rotation in 200 tries")


async def job_record(redis: aioredis.Redis, fed: ProcessFederation, member: int, job_id: str) -> dict[str, str]:
    """The member's job hash (phase, outcome, ...) without the state blob; {} if there is none."""
    raw = await redis.hgetall(keys_of(fed, member).job(job_id))
    return {_text(k): _text(v) for k, v in raw.items() if _text(k) != "state"}


async def job_state(redis: aioredis.Redis, fed: ProcessFederation, member: int, job_id: str) -> dict[str, Any]:
    """The member's stored job state (public: phases, digests, commitments) as JSON; {} if there is none."""
    raw = await redis.hget(keys_of(fed, member).job(job_id), "state")
    return {} if raw is None else dict(json.loads(raw))


async def until(check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.01) -> bool:
    """Poll ``check`` until it is true (True) or ``timeout`` seconds passed (False); bounded in count too."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(int(timeout / every) + 1):
        if await check():
            return True
        if loop.time() >= deadline:
            break
        await asyncio.sleep(every)
    return False


# --- the wire ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireMessage:
    sender: int
    recipient: int
    message: Message


async def read_wire(redis: aioredis.Redis, fed: ProcessFederation) -> list[WireMessage]:
    """Every peer message in every member's inbox stream, opened with the recipient's key, in stream order."""
    out: list[WireMessage] = []
    for member in fed.members:
        codec = _codec(fed, member)
        for _entry_id, fields in await redis.xrange(keys_of(fed, member).inbox(member)):
            out += _open(codec, fields, member)
    return out


def _codec(fed: ProcessFederation, member: int) -> EnvelopeCodec:
    """Envelopes to ``member`` opened as ``member`` opens them (each test reads its inboxes afresh)."""
    identities = load_federation(fed.root / "federation.toml").identities()
    keys = load_identity(fed.root / f"identity-{member}.json", PASSPHRASE)
    return EnvelopeCodec(PeerDirectory(member, identities), keys, replay_window=WIRE_WINDOW)


def _open(codec: EnvelopeCodec, fields: Mapping[Any, Any], recipient: int) -> list[WireMessage]:
    raw = fields.get(b"e", fields.get("e"))
    try:
        envelopes = codec.open(codec.check(raw))
    except Rejected as rejected:
        raise AssertionError(f"an envelope in member {recipient}'s inbox does not open: {rejected}") from None
    return [WireMessage(e.sender, recipient, decode(e.payload)) for e in envelopes]


async def wait_for_message(
    redis: aioredis.Redis,
    fed: ProcessFederation,
    recipient: int,
    wanted: Callable[[WireMessage], bool],
    timeout: float,
) -> WireMessage:
    """The first message in ``recipient``'s inbox (from the start of the stream) that is ``wanted``, as soon as
    it is appended; AssertionError after ``timeout`` seconds."""
    codec = _codec(fed, recipient)
    key = keys_of(fed, recipient).inbox(recipient)
    last: bytes | str = "0-0"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(int(timeout / 0.05) + 2):
        left = deadline - loop.time()
        if left <= 0:
            break
        batches = await redis.xread({key: last}, count=256, block=max(1, int(min(left, 0.05) * 1000)))
        for _stream, entries in batches or ():
            for entry_id, fields in entries:
                last = entry_id
                for message in _open(codec, fields, recipient):
                    if wanted(message):
                        return message
    raise AssertionError(f"no such message reached member {recipient} within {timeout:g} s")


@dataclass(frozen=True)
class ShareAudit:
    shares: int  # SHARE messages seen on the wire
    requests: int  # SIGN-REQUESTs seen on the wire
    reused: tuple[str, ...]  # one line per commitment a signer answered more than once


def share_reuse(wire: list[WireMessage]) -> ShareAudit:
    """Match each SHARE to the SIGN-REQUEST it answers (coordinator, signer, job, session) and so to the
    signer's commitment; any commitment with two shares is reported."""
    commitment_of: dict[tuple[int, int, str, int], bytes] = {}
    requests = 0
    for w in wire:
        if isinstance(w.message, SignRequest):
            requests += 1
            for c in w.message.commitments:
                if c.identifier == w.recipient:
                    commitment_of[(w.sender, w.recipient, w.message.job_id, w.message.session)] = c.to_bytes()
    answered: dict[tuple[int, bytes], list[Share]] = {}
    shares = 0
    for w in wire:
        if not isinstance(w.message, Share):
            continue
        shares += 1
        key = (w.recipient, w.sender, w.message.job_id, w.message.session)
        commitment = commitment_of.get(key)
        if commitment is None:
            raise AssertionError(f"a share from member {w.sender} answers no sign request on the wire: {key}")
        answered.setdefault((w.sender, commitment), []).append(w.message)
    reused = tuple(
        f"member {signer} sent {len(found)} shares under commitment {commitment.hex()[:16]}…"
        for (signer, commitment), found in answered.items()
        if len(found) > 1
    )
    return ShareAudit(shares, requests, reused)


# --- HTTP and processes ------------------------------------------------------------------------------------


async def readiness(fed: ProcessFederation, member: int) -> dict[str, Any]:
    """The member's /readyz body ({"ready": ..., "checks": {...}}); {"ready": False} if it does not answer."""
    url = f"http://127.0.0.1:{fed.members[member].http_port}/readyz"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, session.get(url) as response:
            return dict(await response.json())
    except (aiohttp.ClientError, TimeoutError):
        return {"ready": False, "checks": {}}


async def metrics(fed: ProcessFederation, member: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The member's /metrics samples by (name, sorted labels)."""
    url = f"http://127.0.0.1:{fed.members[member].http_port}/metrics"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, session.get(url) as response:
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric_sum(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

