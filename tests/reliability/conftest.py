"""Federations of real processes (``dvm-sidecar run`` + ``dvm-sidecar example-dvm`` per member) on a real
Redis server and a real public relay, all on 127.0.0.1 and all stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay
from tests.e2e.processes import ProcessFederation

pytestmark = pytest.mark.reliability


@pytest.fixture
async def public_relay() -> AsyncIterator[EmbeddedRelay]:
    relay = EmbeddedRelay()
    await relay.start()
    yield relay
    await relay.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


@pytest.fixture
def process_federation(
    tmp_path: Path, public_relay: EmbeddedRelay, redis_server: RedisServer
) -> AsyncIterator[Callable[..., ProcessFederation]]:
    made: list[ProcessFederation] = []

    def make(**options: Any) -> ProcessFederation:
        fed = ProcessFederation(
            tmp_path / f"fed{len(made)}", public_relay=public_relay.url, redis_url=redis_server.url, **options
        )
        made.append(fed)
        return fed

    yield make  # type: ignore[misc]
    for fed in made:
        fed.stop()
