"""A federation of real processes, set up exactly as an operator would: the key ceremony and the federation file
through the CLI, one ``dvm-sidecar run --config`` process and one ``dvm-sidecar example-dvm`` process per
member, on a Redis server and a public relay given by the caller, on 127.0.0.1.

Shared by the benchmark (``bench/e2e.py``) and the tests (``tests/e2e/processes.py`` re-exports it), so both
measure and test the federation the same way. Members can be killed (SIGKILL, as a crash) and started again;
everything started is stopped by ``stop()``. With ``die_with_parent`` each process is also killed when the
thread that started it ends (Linux's PR_SET_PDEATHSIG), so a run killed from outside leaves nothing behind:
start such members from a thread that lives as long as they should, never from a pool's worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nostr_sdk import Keys

from sidecar.redis_server import RedisServer
from sidecar.relay import free_port

CLI = [sys.executable, "-m", "sidecar.cli"]
PASSPHRASE = "correct horse battery staple"
KIND = 5050


def cli(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "SIDECAR_PASSPHRASE": PASSPHRASE}
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"dvm-sidecar {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def die_with_parent() -> None:
    """In a child before exec: SIGKILL when the thread that started it ends. SIGKILL, not SIGTERM: Redis dies
    with the same parent, and a sidecar told to stop while Redis is away waits for Redis to come back."""
    with contextlib.suppress(OSError):  # not Linux: stop() is the only way
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class MemberProcess:
    index: int
    config: Path
    dvm_key_file: Path
    private_port: int
    http_port: int
    log: Path
    sidecar: subprocess.Popen[bytes] | None = None
    dvm: subprocess.Popen[bytes] | None = None
    dvm_flags: list[str] = field(default_factory=list)
    program: list[str] = field(default_factory=lambda: list(CLI))  # what runs `run --config` (a test may wrap it)


class ProcessFederation:
    def __init__(
        self,
        root: Path,
        *,
        members: int = 3,
        threshold: int = 2,
        public_relay: str,
        redis_url: str,
        transport: str = "nostr",
        wrong: frozenset[int] = frozenset(),
        timeouts: tuple[float, float, float, float] = (10, 20, 10, 2),
        log_level: str = "INFO",
        die_with_parent: bool = False,
    ) -> None:
        self.root = root
        self.die_with_parent = die_with_parent
        root.mkdir(parents=True, exist_ok=True)
        self.n, self.t = members, threshold
        keys_dir = root / "keys"
        cli("keys", "new", "-t", str(threshold), "-n", str(members), "--out", str(keys_dir), "--kdf-log-n", "4")
        self.identities: dict[int, Keys] = {}
        args = ["federation", "init", "--keyset", str(keys_dir / "keyset.json"), "--relay", public_relay,
                "--kind", str(KIND), "--out", str(root / "federation.toml"),
                "--dvm-timeout", str(timeouts[0]), "--deadline", str(timeouts[1]),
                "--coordinator-timeout", str(timeouts[2]), "--session-timeout", str(timeouts[3])]
        self.members: dict[int, MemberProcess] = {}
        for m in range(1, members + 1):
            ident = root / f"identity-{m}.json"
            cli("keys", "identity", "--out", str(ident), "--kdf-log-n", "4")
            npub = cli("keys", "show", str(ident)).split("npub1", 1)[1].split()[0]
            args += ["--member", f"{m}=npub1{npub}"]
            dvm_keys = Keys.generate()
            dvm_key_file = root / f"dvm-{m}.nsec"
            fd = os.open(dvm_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, dvm_keys.secret_key().to_bech32().encode())
            os.close(fd)
            password = root / "password"
            if not password.exists():
                fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, PASSPHRASE.encode())
                os.close(fd)
            member = MemberProcess(m, root / f"sidecar-{m}.toml", dvm_key_file, free_port(), free_port(),
                                   root / f"member-{m}.log", dvm_flags=["--wrong"] if m in wrong else [])
            member.config.write_text(
                f'federation_file = "federation.toml"\nlog_level = "{log_level}"\n'
                f'[member]\nindex = {m}\nshare_file = "keys/share-{m}.json"\n'
                f'identity_key_file = "identity-{m}.json"\npassword_file = "password"\n'
                f'[redis]\nurl = "{redis_url}"\n'
                f'[dvm]\npubkey = "{dvm_keys.public_key().to_hex()}"\ntimeout_seconds = {timeouts[0]}\n'
                f'[private_relay]\nhost = "127.0.0.1"\nport = {member.private_port}\n'
                f'[peers]\ntransport = "{transport}"\n'
                f'[http]\nhost = "127.0.0.1"\nport = {member.http_port}\n'
            )
            self.members[m] = member
        cli(*args)

    def start(self, member: int) -> None:
        m = self.members[member]
        preexec = die_with_parent if self.die_with_parent else None
        with m.log.open("ab") as log:  # the children keep their own copies of the descriptor
            m.sidecar = subprocess.Popen([*m.program, "run", "--config", str(m.config)], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, preexec_fn=preexec)
            self._wait_port(m.http_port, m.sidecar)
            m.dvm = subprocess.Popen(
                [*CLI, "example-dvm", "--relay", f"ws://127.0.0.1:{m.private_port}", "--nsec-file",
                 str(m.dvm_key_file), *m.dvm_flags],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=preexec,
            )

    def start_all(self) -> None:
        for member in self.members:
            self.start(member)

    def kill(self, member: int, sig: int = signal.SIGKILL) -> None:
        m = self.members[member]
        for proc in (m.dvm, m.sidecar):
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)
                proc.wait(timeout=30)
        m.sidecar = m.dvm = None

    def stop(self) -> None:
        for member in self.members:
            self.kill(member, signal.SIGTERM)

    @staticmethod
    def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the sidecar exited with {proc.returncode}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the sidecar did not listen on {port} within {timeout} s")


__all__ = [
    "CLI", "KIND", "PASSPHRASE", "MemberProcess", "ProcessFederation", "RedisServer", "cli", "die_with_parent",
]
