"""The benchmark's paths as they are deployed: every part a process of its own (``bench/e2e.py``, process mode).

- a public relay: a nostr-sdk relay (``sidecar.relay.EmbeddedRelay``) alone in a Python process, one per path,
  so its CPU is its own and every path gets the same kind of relay;
- the bare path: one ``dvm-sidecar example-dvm`` process on that relay;
- a federation: ``bench/processes.py``'s ``ProcessFederation`` (the key ceremony and federation file through
  the CLI, a ``dvm-sidecar run --config`` process and an ``example-dvm`` process per member) with a canary in
  each member's config, as an operator sets it, so ``/readyz`` answers 200 only once the member's DVM serves.

Every process is started from the main thread with PR_SET_PDEATHSIG, so it dies with the benchmark even when
the benchmark is killed; ``Deployed.stop()`` ends them all (SIGTERM, then SIGKILL), before Redis is stopped (a
sidecar told to stop while Redis is away waits for it). The customer stays in the benchmark's process; CPU is
read per role from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from nostr_sdk import EventBuilder, Filter, Keys, Kind, PublicKey, ReqTarget, Tag
from processes import CLI, KIND, ProcessFederation, die_with_parent

from consensus.nip90 import parse_job_request
from sidecar.config import load_federation
from sidecar.example_dvm import honest_answer
from sidecar.relay import connect_client, from_sdk_event

START_WITHIN = 120.0  # seconds for a process to come up, or a federation to be ready, on a loaded machine
CANARY_INPUT = "bench canary"
HANDLER_INFO_KIND = 31990  # the NIP-89 announcement a federation co-signs when it starts

# A relay alone in a process: prints its URL, then serves until SIGTERM (Python's default action: exit).
RELAY_PROGRAM = """
import asyncio
from sidecar.relay import EmbeddedRelay

async def main():
    async with EmbeddedRelay() as relay:
        print(relay.url, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent busy so far, whoever ran (Linux /proc/stat): with the
    benchmark's own figures, how much of the machine other work took."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = Path("/proc/stat").read_text().split()[1:9]
    return sum(int(v) for v in (user, nice, system, irq, softirq, steal)) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process's CPU time, every thread (the customer's Python and its nostr-sdk clients)."""
    times = os.times()
    return times.user + times.system


@dataclass
class Deployed:
    """One path's processes: its public relay's URL, whose results count, and its processes by role."""

    url: str
    provider: str  # x-only hex: the DVM's key (bare) or the group key (federated)
    roles: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each role (the sum over its processes)."""
        return {role: sum(cpu_seconds(p.pid) for p in procs) for role, procs in self.roles.items()}

    def stop(self) -> None:
        stop_processes(p for procs in self.roles.values() for p in procs)


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM to all at once (they shut down side by side), then SIGKILL to any still running at ``timeout``."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)


def wait_line(log: Path, prefix: str, proc: subprocess.Popen[bytes]) -> str:
    """The first line of ``log`` that starts with ``prefix``, once the process wrote it."""
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}; see {log}")
        time.sleep(0.05)
    raise RuntimeError(f"no line {prefix!r} in {log} within {START_WITHIN:g} s")


def relay(root: Path) -> Deployed:
    """A path's public relay, alone in its process; the path's other processes join its roles."""
    root.mkdir(parents=True, exist_ok=True)
    log = root / "relay.log"
    proc = spawn([sys.executable, "-c", RELAY_PROGRAM], log)
    deployed = Deployed("", "", {"relay": [proc]})
    try:
        deployed.url = wait_line(log, "ws://", proc)
    except BaseException:
        deployed.stop()
        raise
    return deployed


def bare(root: Path) -> Deployed:
    """A relay and one example DVM on it, with a fresh key (read from its banner)."""
    deployed = relay(root)
    try:
        log = root / "dvm.log"
        dvm = spawn([*CLI, "example-dvm", "--relay", deployed.url, "--ephemeral-key", "--kinds", str(KIND)], log)
        deployed.roles["dvms"] = [dvm]
        banner = wait_line(log, "example-dvm npub1", dvm)
        deployed.provider = PublicKey.parse(banner.split()[1]).to_hex()
    except BaseException:
        deployed.stop()
        raise
    return deployed


def ceremony(
    parts: Deployed, root: Path, transport: str, redis_url: str, timeouts: tuple[float, float, float, float]
) -> ProcessFederation:
    """A 2-of-3 federation on ``parts``' relay, set up through the CLI (keys, identities, federation file,
    member configs with a canary). It starts no process that outlives it, so it may run in any thread."""
    fed = ProcessFederation(root, public_relay=parts.url, redis_url=redis_url, transport=transport,
                            timeouts=timeouts, die_with_parent=True)
    parts.provider = load_federation(fed.root / "federation.toml").group_pubkey
    expected = canary_answer()
    for m in fed.members.values():
        with m.config.open("a") as config:
            config.write(f'[canary]\ninput = "{CANARY_INPUT}"\nexpected = "{expected}"\ntimeout_seconds = 2\n')
    return fed


def launch(parts: Deployed, fed: ProcessFederation) -> list[int]:
    """Start every member from this thread (it must outlive them: their PR_SET_PDEATHSIG follows it), each
    process joining ``parts``' roles as it starts; the members' HTTP ports."""
    parts.roles |= {"sidecars": [], "dvms": []}
    for member, m in fed.members.items():
        try:
            fed.start(member)
        finally:
            parts.roles["sidecars"] += [p for p in (m.sidecar,) if p is not None]
            parts.roles["dvms"] += [p for p in (m.dvm,) if p is not None]
    return [m.http_port for m in fed.members.values()]


def canary_answer() -> str:
    """What an honest example DVM answers to the canary the sidecar sends it."""
    request = EventBuilder(Kind(KIND), "").tags([Tag.parse(["i", CANARY_INPUT, "text"])]).finalize(Keys.generate())
    return honest_answer(parse_job_request(from_sdk_event(request)))


def wait_ready(ports: list[int]) -> None:
    """Until every member's ``/readyz`` answers 200: Redis answers, the public relay is connected, and the
    canary came back right (so its DVM serves)."""
    deadline = time.monotonic() + START_WITHIN
    waiting = list(ports)
    last = ""
    while waiting:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{waiting[0]}/readyz", timeout=5) as response:
                if response.status == 200:
                    waiting.pop(0)
                    continue
        except urllib.error.HTTPError as not_ready:
            last = not_ready.read().decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the member on port {waiting[0]} not ready within {START_WITHIN:g} s: {last}")
        time.sleep(0.2)


async def announced(url: str, group: str, timeout: float = START_WITHIN) -> None:
    """Until the federation's start-up announcement (NIP-89, co-signed) is on its relay, so that signing it
    does not run beside the measured jobs."""
    client = await connect_client(url)
    query = ReqTarget.auto([Filter().kind(Kind(HANDLER_INFO_KIND)).author(PublicKey.parse(group))])
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await client.fetch_events(query, timedelta(seconds=2)):
            if loop.time() >= deadline:
                raise RuntimeError(f"no NIP-89 announcement by {group[:16]} within {timeout:g} s")
            await asyncio.sleep(0.5)
    finally:
        await client.shutdown()
