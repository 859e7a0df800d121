"""A real Prometheus server for tests: the system's ``prometheus`` binary on 127.0.0.1, a temporary data dir.

It scrapes the given ``host:port`` targets every second with the job name of deploy/prometheus/prometheus.yml
(``dvm-sidecar``) and loads deploy/prometheus/alerts.yml, so the shipped alert rules are evaluated against
what it scrapes. Queries go through the HTTP API (``/api/v1/query``), asynchronously: the scraped sidecar may
run in the caller's own event loop. Use it as
``async with PrometheusServer(tmp_path, ["127.0.0.1:8080"]) as prom:``.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml

from tests.deploy.tools import PROMETHEUS_DIR, require

JOB = "dvm-sidecar"


class PrometheusError(RuntimeError):
    """The server did not start, or a query was refused."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    def __init__(self, work_dir: Path, targets: Sequence[str], *, scrape_interval: str = "1s") -> None:
        self.work_dir = Path(work_dir)
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROMETHEUS_DIR / "alerts.yml", self.work_dir / "alerts.yml")
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": self.targets}]}],
        }
        path = self.work_dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    async def start(self, timeout: float = 30.0) -> str:
        binary = require("prometheus", "apt-get install -y --no-install-recommends prometheus")
        config = self.write_config()
        self.port = _free_port()
        log = (self.work_dir / "prometheus.log").open("wb")
        self._proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.work_dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise PrometheusError(f"prometheus exited with {self._proc.returncode}: {self.log()}")
                try:
                    async with session.get(f"{self.url}/-/ready") as response:
                        if response.status == 200:
                            return self.url
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus not ready within {timeout} s: {self.log()}")

    def log(self) -> str:
        path = self.work_dir / "prometheus.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    async def api(self, path: str, **params: str) -> Any:
        """GET an API path; returns ``data``, or raises PrometheusError with Prometheus' own error text."""
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}{path}", params=params) as response:
            body = await response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result vector (or a one-element list for a scalar)."""
        data = await self.api("/api/v1/query", query=expr)
        result = data["result"]
        return result if data["resultType"] in ("vector", "matrix") else [{"value": result}]

    async def wait_for_scrapes(self, count: int = 2, timeout: float = 30.0) -> None:
        """Until every target has been scraped successfully ``count`` times (rates need two samples)."""
        deadline = time.monotonic() + timeout
        expr = f'count_over_time(up{{job="{JOB}"}}[1h]) >= {count} and up{{job="{JOB}"}} == 1'
        while time.monotonic() < deadline:
            if len(await self.query(expr)) == len(self.targets):
                return
            await asyncio.sleep(0.25)
        raise PrometheusError(f"targets {self.targets} not scraped {count} times within {timeout} s")

    async def metric_names(self) -> set[str]:
        return set(await self.api("/api/v1/label/__name__/values"))

    async def __aenter__(self) -> PrometheusServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
