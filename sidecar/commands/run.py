"""``dvm-sidecar run --config FILE``: one member's sidecar, until SIGTERM or SIGINT.

Everything is checked before anything starts: the config and the federation file, the passphrase against the
share and identity files, the share against the federation's keys, the identity key against the member's entry.
A problem is one line on stderr and exit code 2; nothing secret is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sidecar import event_loop
from sidecar.config import ConfigError, FederationFile, SidecarConfig, load_config, load_federation
from sidecar.dvm import CanarySpec
from sidecar.keyfiles import Keyset, load_identity, load_share, read_passphrase
from sidecar.redis_client import connect
from sidecar.redis_server import RedisServer, RedisServerError
from sidecar.service import MemberSetup, Sidecar

log = logging.getLogger("dvm_sidecar")

REDIS_WAIT = 1.0  # seconds between attempts to reach Redis at start


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run this operator's sidecar",
        description="Run one member's sidecar next to the operator's DVM, configured by a TOML file "
        "(every value overridable by SIDECAR_<SECTION>_<KEY> environment variables).",
    )
    p.add_argument("--config", required=True, type=Path, help="the sidecar.toml of this member")
    p.set_defaults(handler=_run)


def prepare(config: SidecarConfig) -> tuple[FederationFile, MemberSetup]:
    """Load and cross-check everything a member runs with (ValueError, one line, on any problem)."""
    federation_file = load_federation(config.federation_file)
    config.check_federation(federation_file)
    federation = federation_file.federation()
    federation = dataclasses.replace(
        federation, timeouts=dataclasses.replace(federation.timeouts, dvm=config.dvm_timeout)
    )
    passphrase = read_passphrase(config.password_file)
    key_package = load_share(config.share_file, passphrase, Keyset(federation.keys))
    if key_package.identifier != config.index:
        raise ValueError(f"{config.share_file}: the share is member {key_package.identifier}'s, not {config.index}'s")
    identity = load_identity(config.identity_key_file, passphrase)
    identities = federation_file.identities()
    if identity.public_key().to_hex() != identities[config.index]:
        raise ValueError(
            f"{config.identity_key_file}: this identity key is not member {config.index}'s identity_npub "
            f"in {config.federation_file}"
        )
    canary = None
    if config.canary_expected is not None:
        canary = CanarySpec(
            kind=config.canary_kind, input=config.canary_input, expected=config.canary_expected,
            interval=config.canary_interval, timeout=config.canary_timeout,
        )
    setup = MemberSetup(
        federation=federation,
        identities=identities,
        relays=federation_file.relays,
        kinds=federation_file.kinds,
        key_package=key_package,
        identity=identity,
        dvm_pubkey=config.dvm_pubkey,
        dvm_mode=config.dvm_mode,
        transport=config.transport,
        accept_unaddressed=config.accept_unaddressed,
        private_relay_host=config.private_relay_host,
        private_relay_port=config.private_relay_port,
        canary=canary,
        http_host=config.http_host,
        http_port=config.http_port,
        job_ttl=config.job_ttl,
        max_request_age=config.max_request_age,
        replay_window=config.replay_window,
        handler_info=federation_file.handler_info(),
    )
    return federation_file, setup


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        federation_file, setup = prepare(config)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"dvm-sidecar run: {exc}", file=sys.stderr)
        return 2
    try:
        return event_loop.run(_serve(config, federation_file, setup))
    except RedisServerError as exc:
        print(f"dvm-sidecar run: {exc}", file=sys.stderr)
        return 2


async def _serve(config: SidecarConfig, federation_file: FederationFile, setup: MemberSetup) -> int:
    embedded = None
    url = config.redis_url
    if url is None:
        embedded = RedisServer(config.state_dir / "redis")
        url = embedded.start()
        log.warning("no [redis] url configured: using an embedded server in %s (fine for trials, "
                    "use a real Redis with AOF in production)", config.state_dir / "redis")
    client = connect(url)
    sidecar = Sidecar(setup, client)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        # Starting waits for Redis (compose may start it later; it may be restarting): a stop request must
        # end that wait, not queue behind it.
        if not await _unless_stopped(stopping, _start(sidecar, url)):
            return 0
        http = f", http {sidecar.http.url}" if sidecar.http is not None else ""
        print(
            f"dvm-sidecar: member {setup.me} of {federation_file.npub} ({setup.federation.threshold}-of-"
            f"{setup.federation.n}); DVM relay {sidecar.private_relay_url}{http}",
            flush=True,
        )
        event_loop.tune_gc()
        await stopping.wait()
    finally:
        with contextlib.suppress(Exception):
            await sidecar.stop()
        await client.aclose()
        if embedded is not None:
            embedded.stop()
    return 0


async def _start(sidecar: Sidecar, url: str) -> None:
    if not await sidecar.store.ping():
        log.warning("Redis at %s is not reachable; waiting for it", url)
        while not await sidecar.store.ping():
            await asyncio.sleep(REDIS_WAIT)
        log.info("Redis reachable")
    await sidecar.start()


async def _unless_stopped(stopping: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work`` until it ends (True) or a stop is asked for first (False: ``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return True
