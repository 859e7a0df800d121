"""Secrets: a whole federation of processes runs jobs with DEBUG logging, then everything it left where others
can look is searched for every secret it holds, in every form one could be written in. None may appear.

Secrets: each member's share scalar, the group's secret key (the shares interpolated), each operator's identity
key, each DVM's key, and every secret nonce any member drew (recorded by ``tests.reliability.witness``, which
runs the real ``dvm-sidecar run`` and only observes; the nonces are found nowhere else). Shares and nonces also
negated (BIP-340 signing may negate them). Forms: hex in either case (padded to 64 digits and not), decimal,
bech32 ``nsec``, and the raw 32 bytes in anything binary.

Searched: every member's log; ``/``, ``/healthz``, ``/readyz`` and ``/metrics`` of every member; a full dump of
Redis (every key, and every value of every type, streams included, and each key's ``DUMP`` serialization);
every file under the run's directories, Redis's own data files (snapshot and append-only file) included,
except the key files themselves (encrypted shares and identity keys; the example DVMs' key files); what the
``keys show`` and ``federation show`` commands print; and the command lines of the running processes.

Then share and identity files that group or others may read (or write) are refused by ``dvm-sidecar run``,
exit code 2, with one line that names the file and the fix and holds no secret.

In one process, the unit tests say the rest: secret nonces refuse to be pickled or copied
(``tests/consensus/test_frost_malformed.py``), no job state ever holds a secret nonce or share
(``tests/consensus/test_jobstate.py``), key files' texts and reprs hold no secret (``tests/sidecar/
test_keyfiles.py``); and here, a member holding nonces cannot be pickled or deep-copied either.
"""

from __future__ import annotations

import copy
import pickle
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from nostr_sdk import SecretKey

from consensus import frost
from consensus.federation import Federation
from consensus.frost.group import N
from consensus.quorum import Member
from sidecar.keyfiles import Keyset, load_identity, load_keyset, load_share
from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay
from tests.e2e.customer import Customer, assert_result
from tests.e2e.processes import CLI, PASSPHRASE, ProcessFederation, cli
from tests.reliability.record import record
from tests.reliability.watch import build_job, group_pubkey, start

pytestmark = pytest.mark.reliability

JOBS = 4
PAGES = ("/", "/healthz", "/readyz", "/metrics")
_HEX_RUN = re.compile(rb"[0-9a-f]{32,}")
_DIGIT_RUN = re.compile(rb"[0-9]{40,}")
_NSEC = re.compile(rb"nsec1[02-9ac-hj-np-z]{58}")


# --- what is secret, in every form ------------------------------------------------------------------------


def _forms(scalar: int) -> dict[str, bytes]:
    """How ``scalar`` could be written: hex (padded and not; searched case-folded), decimal, nsec, raw."""
    forms = {"hex": f"{scalar:064x}".encode(), "short hex": f"{scalar:x}".encode(), "decimal": str(scalar).encode(),
             "raw": scalar.to_bytes(32, "big")}
    forms["nsec"] = SecretKey.from_bytes(forms["raw"]).to_bech32().encode()
    return forms


def _secrets(fed: ProcessFederation, witness: Path) -> dict[str, int]:
    """Every secret of the run by name (the names are what a failure shows; never the values)."""
    keyset = load_keyset(fed.root / "keys" / "keyset.json")
    found: dict[str, int] = {}
    shares = {}
    for m in fed.members:
        package = load_share(fed.root / "keys" / f"share-{m}.json", PASSPHRASE, Keyset(keyset.public_key_package))
        shares[m] = package.signing_share
        found[f"member {m}'s share"] = package.signing_share
        identity = load_identity(fed.root / f"identity-{m}.json", PASSPHRASE)
        found[f"member {m}'s identity key"] = int(identity.secret_key().to_hex(), 16)
        nsec = fed.members[m].dvm_key_file.read_text().strip()
        found[f"member {m}'s DVM key"] = int(SecretKey.parse(nsec).to_hex(), 16)
    signers = sorted(shares)[: fed.t]
    found["the group's secret key"] = sum(
        shares[i] * frost.group.lagrange_coefficient(i, signers) for i in signers
    ) % N
    for path in sorted(witness.glob("nonces-*.txt")):
        for number, line in enumerate(path.read_text().split()):
            found[f"secret nonce {number} of process {path.stem}"] = int(line, 16)
    for name, value in list(found.items()):
        if "share" in name or "nonce" in name or "group" in name:
            found[f"{name}, negated"] = N - value
    return found


class Needles:
    """All forms of all secrets, indexed so that one pass over a haystack finds any of them: its runs of hex
    digits, of decimal digits and its nsec words are cut into every window a secret's text could fill."""

    def __init__(self, secrets: dict[str, int]) -> None:
        self.text: dict[bytes, str] = {}
        self.raw: dict[bytes, str] = {}
        for name, value in secrets.items():
            for form, needle in _forms(value).items():
                (self.raw if form == "raw" else self.text)[needle] = f"{name} ({form})"
        self.runs = [(pattern, sorted({len(n) for n in self.text if pattern.fullmatch(n)}))
                     for pattern in (_HEX_RUN, _DIGIT_RUN, _NSEC)]

    def find(self, haystack: bytes) -> set[str]:
        """The secrets in ``haystack`` (text searched case-folded; raw bytes as they are)."""
        hits: set[str] = set()
        folded = haystack.lower()
        for pattern, lengths in self.runs:
            for run in pattern.findall(folded):
                for length in lengths:
                    for at in range(len(run) - length + 1):
                        name = self.text.get(run[at : at + length])
                        if name is not None:
                            hits.add(name)
        hits.update(name for needle, name in self.raw.items() if needle in haystack)
        return hits


# --- where to look ----------------------------------------------------------------------------------------

KEY_FILES = re.compile(r"(share-\d+\.json|identity-\d+\.json|dvm-\d+\.nsec)$")


def _files(*roots: Path) -> Iterator[tuple[str, bytes]]:
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_socket() and not KEY_FILES.search(path.name):
                yield str(path), path.read_bytes()


async def _pages(fed: ProcessFederation) -> Iterator[tuple[str, bytes]]:
    found = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for m, member in fed.members.items():
            for page in PAGES:
                async with session.get(f"http://127.0.0.1:{member.http_port}{page}") as response:
                    found.append((f"member {m} {page}", await response.read()))
    return iter(found)


async def _redis_dump(redis: aioredis.Redis) -> Iterator[tuple[str, bytes]]:
    """Every key with every value (by type) and its DUMP serialization, as one haystack per key."""
    dumped = []
    async for key in redis.scan_iter(count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            value: object = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = await redis.xrange(key, "-", "+")
        else:
            value = f"unknown type {kind}"
        text = repr(value).encode() + b"\n" + (await redis.dump(key) or b"")
        dumped.append((f"redis {key.decode(errors='replace')} ({kind})", key + b"\n" + text))
    return iter(dumped)


def _printed(fed: ProcessFederation) -> Iterator[tuple[str, bytes]]:
    for m in fed.members:
        for path in (fed.root / "keys" / f"share-{m}.json", fed.root / f"identity-{m}.json"):
            yield f"keys show {path.name}", cli("keys", "show", str(path)).encode()
    yield "federation show", cli("federation", "show", str(fed.root / "federation.toml")).encode()


def _command_lines(fed: ProcessFederation) -> Iterator[tuple[str, bytes]]:
    for m, member in fed.members.items():
        for role, process in (("sidecar", member.sidecar), ("dvm", member.dvm)):
            assert process is not None and process.poll() is None
            yield f"member {m} {role} command line", Path(f"/proc/{process.pid}/cmdline").read_bytes()


def _search(needles: Needles, places: Iterable[tuple[str, bytes]]) -> tuple[list[tuple[str, str]], int, int]:
    """(where, which secret) for every secret found; how many places and bytes were searched."""
    leaks, count, size = [], 0, 0
    for where, haystack in places:
        count, size = count + 1, size + len(haystack)
        leaks += [(where, name) for name in sorted(needles.find(haystack))]
    return leaks, count, size


# --- the tests --------------------------------------------------------------------------------------------


async def test_no_secret_in_anything_a_federation_leaves_behind(
    process_federation: Callable[..., ProcessFederation], public_relay: EmbeddedRelay,
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    witness = tmp_path / "witness"  # outside the federation's and Redis's directories
    witness.mkdir()
    monkeypatch.setenv("WITNESS_NONCES", str(witness))
    fed = process_federation(transport="redis", log_level="DEBUG")
    for member in fed.members.values():
        member.program = [sys.executable, "-m", "tests.reliability.witness"]
    start(fed)
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        group = group_pubkey(fed)
        async with Customer(public_relay.url, group) as customer:
            jobs = [build_job(customer, fed, f"secret-free job {i}", first=1 + i % fed.n) for i in range(JOBS)]
            for job in jobs:
                await customer.send(job.request)
            outcomes = await customer.outcomes(jobs, timeout=60)
            for job in jobs:
                assert_result(outcomes[job.id], job, group)
        live = [*(await _pages(fed)), *(await _redis_dump(redis)), *_command_lines(fed)]
        await redis.save()  # the snapshot on disk too, beside the append-only file
    finally:
        await redis.aclose()
    fed.stop()  # every log written out
    secrets = _secrets(fed, witness)
    nonces = sum(1 for name in secrets if name.startswith("secret nonce") and "negated" not in name)
    assert nonces >= 2 * JOBS * fed.t, f"the witness saw only {nonces} nonces: is it running?"
    needles = Needles(secrets)
    places = [*live, *_files(fed.root, redis_server.data_dir), *_printed(fed)]
    assert any(where.endswith(".log") and b"DEBUG" in text for where, text in places), "no DEBUG log searched"
    leaks, count, size = _search(needles, places)
    assert not leaks, f"secrets found: {leaks[:20]}"
    record("secrets", secrets=len(secrets), nonces=nonces, places=count, bytes_searched=size, found=len(leaks))


def test_key_files_others_may_read_are_refused(
    tmp_path: Path, public_relay: EmbeddedRelay, redis_server: RedisServer
) -> None:
    fed = ProcessFederation(tmp_path / "fed", public_relay=public_relay.url, redis_url=redis_server.url)
    needles = Needles(_secrets(fed, tmp_path))
    share, identity = fed.root / "keys" / "share-1.json", fed.root / "identity-1.json"
    exposed = fed.root / "exposed-share.json"
    exposed.write_bytes(share.read_bytes())
    linked = fed.root / "linked-share.json"
    linked.symlink_to(exposed)  # the mode that counts is the file's, not the link's
    cases = [(share, 0o640, share), (share, 0o604, share), (share, 0o620, share), (identity, 0o644, identity),
             (identity, 0o660, identity), (exposed, 0o644, linked)]
    config = fed.members[1].config
    original = config.read_text()
    for path, mode, named in cases:
        path.chmod(mode)
        config.write_text(original.replace('share_file = "keys/share-1.json"', f'share_file = "{named.name}"')
                          if named == linked else original)
        done = subprocess.run([*CLI, "run", "--config", str(config)], capture_output=True, text=True, timeout=60)
        path.chmod(0o600)
        assert done.returncode == 2, (path.name, oct(mode), done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and str(named) in lines[0], done.stderr  # one line, naming the file given
        assert "accessible to other users" in lines[0] and f"chmod 600 {named}" in lines[0], lines[0]
        assert f"{mode:04o}" in lines[0], lines[0]
        assert not needles.find((done.stderr + done.stdout).encode())


def test_a_member_holding_secret_nonces_cannot_be_copied_out_of_its_process() -> None:
    shares, public = frost.trusted_dealer_keygen(frost.SECP256K1_TR, 2, 3)
    package = frost.vss_verify(frost.SECP256K1_TR, shares[1])
    member = Member(Federation(public), package)
    member.new_commitment("ab" * 32)
    for leak in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled or copied"):
            leak(member)
    nonces = member._nonces["ab" * 32]
    secrets = {"share": package.signing_share} | {
        f"nonce {i}": value for i, held in enumerate(nonces.values()) for value in (held._hiding, held._binding)
    }
    assert not Needles(secrets).find(repr(member).encode() + repr(list(nonces.values())).encode())
