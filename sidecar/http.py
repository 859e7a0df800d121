"""The sidecar's HTTP side: ``/metrics``, ``/healthz``, ``/readyz`` and a status page for humans at ``/``.

Rules it keeps:
- read-only, and bound to 127.0.0.1 unless the operator asks for another address (a container binds 0.0.0.0
  and publishes the port on the host's loopback only).
- only public facts: the snapshot types below have no field that could carry a key, a share or a nonce; every
  string on the HTML page is escaped.
- ``/healthz`` answers 200 while the process serves requests. ``/readyz`` answers 200 only when every
  readiness check the service reports is true; a probe that raises or hangs past its timeout is a 503,
  never an error page.

The service plugs in through ``StatusSource``: an async readiness probe (named checks, by convention
``redis``, ``public_relay`` and ``canary``) and a synchronous snapshot of what the status page shows.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from sidecar.metrics import Metrics

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
READINESS_TIMEOUT = 2.0  # seconds; an orchestrator's probe usually gives up after a few


@dataclass(frozen=True)
class MemberStatus:
    """One federation member as this sidecar sees it. ``last_heard`` is Unix seconds, None if never."""

    index: int
    identity_npub: str
    is_self: bool
    last_heard: float | None


@dataclass(frozen=True)
class JobStatus:
    """One recent job. ``state`` is an outcome (``cosigned``, ``no_quorum``, ``dvm_error``, ``timeout``) once
    finished, else the phase it is in; ``request_id`` is the public request event id (hex)."""

    request_id: str
    kind: int
    state: str
    received_at: float
    finished_at: float | None


@dataclass(frozen=True)
class StatusSnapshot:
    """What the status page shows; ``now`` is the Unix time of the snapshot (ages are relative to it)."""

    federation_npub: str
    threshold: int
    members: tuple[MemberStatus, ...]
    recent_jobs: tuple[JobStatus, ...]
    version: str
    now: float


class StatusSource(Protocol):
    """What the service provides to the HTTP side."""

    async def readiness(self) -> Mapping[str, bool]:
        """Each readiness check by name (``redis``, ``public_relay``, ``canary``), True when it passes."""
        ...

    async def status(self) -> StatusSnapshot:
        """A snapshot for the status page (read when the page is asked for)."""
        ...


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: Mapping[str, bool]
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"ready": self.ready, "checks": dict(self.checks)}
        if self.error is not None:
            body["error"] = self.error
        return body


async def probe_readiness(source: StatusSource, timeout: float = READINESS_TIMEOUT) -> Readiness:
    """Run the source's checks within ``timeout``. No checks at all is not ready: nothing showed it works."""
    try:
        async with asyncio.timeout(timeout):
            checks = {str(name): bool(ok) for name, ok in (await source.readiness()).items()}
    except TimeoutError:
        return Readiness(False, {}, f"readiness checks took longer than {timeout:g} s")
    except Exception as exc:  # a failing probe means "not ready", whatever it was
        # The type only: an exception's text is not ours to show on a page.
        return Readiness(False, {}, f"readiness checks failed: {type(exc).__name__}")
    return Readiness(bool(checks) and all(checks.values()), checks)


def make_app(
    metrics: Metrics, source: StatusSource, *, readiness_timeout: float = READINESS_TIMEOUT
) -> web.Application:
    """The aiohttp application serving the four endpoints for one sidecar."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        readiness = await probe_readiness(source, readiness_timeout)
        return web.json_response(readiness.to_json(), status=200 if readiness.ready else 503)

    async def index(request: web.Request) -> web.Response:
        readiness = await probe_readiness(source, readiness_timeout)
        page = render_status_page(await source.status(), readiness)
        return web.Response(
            text=page,
            content_type="text/html",
            headers={
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    return app


@dataclass(frozen=True)
class HttpServer:
    """A started HTTP server; ``stop()`` closes it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_http(
    app: web.Application, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> HttpServer:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one) until ``stop()``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return HttpServer(runner, host, bound_port)


def _ago(now: float, then: float | None) -> str:
    if then is None or then <= 0:
        return "never"
    seconds = max(0.0, now - then)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def _row(*cells: str, header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"


def render_status_page(snapshot: StatusSnapshot, readiness: Readiness) -> str:
    """The status page as HTML; every value is escaped."""
    now = snapshot.now
    members = [_row("member", "identity", "last heard", header=True)] + [
        _row(f"{m.index}{' (this sidecar)' if m.is_self else ''}", m.identity_npub,
             "this sidecar" if m.is_self else _ago(now, m.last_heard))
        for m in snapshot.members
    ]
    jobs = [_row("request", "kind", "state", "received", "took", header=True)] + [
        _row(j.request_id, str(j.kind), j.state, _ago(now, j.received_at),
             "-" if j.finished_at is None else f"{max(0.0, j.finished_at - j.received_at):.2f} s")
        for j in snapshot.recent_jobs
    ]
    checks = [_row("check", "passing", header=True)] + [
        _row(name, "yes" if ok else "NO") for name, ok in readiness.checks.items()
    ]
    ready = "ready" if readiness.ready else "NOT READY"
    if readiness.error:
        ready += f" ({readiness.error})"
    taken = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    e = html.escape
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">
<title>dvm-sidecar {e(snapshot.federation_npub[:16])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-family:monospace}}</style></head>
<body><h1>dvm-sidecar</h1>
<p>Federation <code>{e(snapshot.federation_npub)}</code>:
{snapshot.threshold} of {len(snapshot.members)} members must agree. Version {e(snapshot.version)}.
Status at {e(taken)}: <strong>{e(ready)}</strong>.</p>
<h2>Readiness</h2><table>{"".join(checks)}</table>
<h2>Members</h2><table>{"".join(members)}</table>
<h2>Recent jobs</h2><table>{"".join(jobs)}</table>
</body></html>
"""
