"""A whole federation in one process, on embedded parts: what the demo, the end-to-end tests and the benchmark
stand on.

Real parts only: a Redis-compatible server process, nostr-sdk relays on 127.0.0.1, FROST keys from a trusted
dealer, and per member a ``Sidecar`` with its own private relay and an ``ExampleDvm`` behind it. Members can be
stopped and started again on the same Redis (a crash and restart of one operator).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from nostr_sdk import Keys, PublicKey

from consensus import frost
from consensus.federation import Federation, Timeouts
from sidecar.example_dvm import ExampleDvm
from sidecar.redis_client import connect
from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay
from sidecar.service import MemberSetup, Sidecar

KIND = 5050
DEMO_TIMEOUTS = Timeouts(dvm=15, deadline=25, coordinator=10, session=3)


@dataclass(frozen=True)
class LocalOptions:
    members: int = 3
    threshold: int = 2
    wrong: frozenset[int] = frozenset()  # members whose DVM answers wrongly
    failing: frozenset[int] = frozenset()  # members whose DVM answers with an error
    transport: str = "nostr"
    mode: str = "reissue"
    relay: str | None = None  # an existing public relay instead of an embedded one
    extra_relays: tuple[str, ...] = ()  # more public relays every member also uses (after the first)
    redis_url: str | None = None  # an existing Redis server instead of an embedded one
    timeouts: Timeouts = DEMO_TIMEOUTS
    dvm_delay: float = 0.0
    dvm_delays: Mapping[int, float] = field(default_factory=dict)  # per member, over dvm_delay


class LocalFederation:
    """``await start()`` brings everything up; ``await stop()`` takes it all down (also an async context)."""

    def __init__(self, options: LocalOptions, state_dir: Path | None = None) -> None:
        self.options = options
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="dvm-sidecar-")
        self.state_dir = state_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.redis_server = None if options.redis_url else RedisServer(self.state_dir / "redis")
        self.relay: EmbeddedRelay | None = None if options.relay else EmbeddedRelay()
        shares, package = frost.trusted_dealer_keygen(frost.SECP256K1_TR, options.threshold, options.members)
        self.federation = Federation(package, timeouts=options.timeouts)
        self.key_packages = {m: frost.vss_verify(frost.SECP256K1_TR, s) for m, s in shares.items()}
        self.identities = {m: Keys.generate() for m in self.federation.members}
        self.dvm_keys = {m: Keys.generate() for m in self.federation.members}
        self.sidecars: dict[int, Sidecar] = {}
        self.dvms: dict[int, ExampleDvm] = {}
        self._clients: dict[int, aioredis.Redis] = {}
        self.public_url = options.relay or ""
        self.redis_url = options.redis_url or ""

    @property
    def group_pubkey(self) -> str:
        return self.federation.pubkey

    @property
    def npub(self) -> str:
        return str(PublicKey.parse(self.group_pubkey).to_bech32())

    def setup(self, member: int) -> MemberSetup:
        mode = self.options.mode
        return MemberSetup(
            federation=self.federation,
            identities={m: k.public_key().to_hex() for m, k in self.identities.items()},
            relays=(self.public_url, *self.options.extra_relays),
            kinds=(KIND,),
            key_package=self.key_packages[member],
            identity=self.identities[member],
            dvm_pubkey=self.dvm_keys[member].public_key().to_hex(),
            dvm_mode=mode,
            transport=self.options.transport,
        )

    async def start(self, members: set[int] | None = None) -> None:
        if self.redis_server is not None:
            self.redis_url = self.redis_server.start()
        if self.relay is not None:
            self.public_url = await self.relay.start()
        for m in sorted(members if members is not None else self.federation.members):
            await self.start_member(m)

    async def start_member(self, member: int, setup: MemberSetup | None = None) -> Sidecar:
        client = connect(self.redis_url)
        sidecar = Sidecar(setup or self.setup(member), client)
        try:
            await sidecar.start()  # on failure it stops the parts it had started
        except BaseException:
            await client.aclose()
            raise
        self._clients[member] = client
        self.sidecars[member] = sidecar
        answer_for = self.group_pubkey if self.options.mode == "passthrough" else None
        dvm = ExampleDvm(
            self.dvm_keys[member], sidecar.private_relay_url, kinds=(KIND,), answer_for=answer_for,
            wrong=member in self.options.wrong, fail=member in self.options.failing,
            delay=self.options.dvm_delays.get(member, self.options.dvm_delay),
        )
        await dvm.start()
        self.dvms[member] = dvm
        return sidecar

    async def stop_member(self, member: int) -> None:
        dvm = self.dvms.pop(member, None)
        if dvm is not None:
            await dvm.stop()
        sidecar = self.sidecars.pop(member, None)
        if sidecar is not None:
            await sidecar.stop()
        client = self._clients.pop(member, None)
        if client is not None:
            await client.aclose()

    async def stop(self) -> None:
        for member in list(self.sidecars):
            await self.stop_member(member)
        if self.relay is not None:
            await self.relay.stop()
        if self.redis_server is not None:
            self.redis_server.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> LocalFederation:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

