"""Benchmark of the peer transports: the cost of one envelope against one BIP-340 signature, and messages per
second through each transport on loopback, measured in one run.

Part 1 times, on one core, sealing (NIP-44 encrypt, id, sign) and opening (parse, checks, id, nostr-sdk verify,
NIP-44 decrypt) of a typical peer message, beside coincurve's ``sign_schnorr`` of 32 bytes, in alternating
rounds so a busy machine slows all alike; the ratio is the envelope's cost in signatures. Beside them, the two
other ways to sign 32 bytes with a member's key: nostr-sdk's ``Keys.sign_schnorr`` and ``sidecar.schnorr``'s
``Signer.sign`` (what the envelopes use). It does so for one
message an event and for ``--batch`` messages an event (what the outbox sends under load), first with
nostr-sdk's bindings as shipped, then with ``sidecar.peers.ffi`` installed (as the transports run).

Part 2 runs three members in this process, each sending ``--sends`` messages to the two others with each of
the ``--concurrency`` levels of sends in flight (1: one after another, as a single job would), over an embedded relay (``nostr``) and an embedded Redis (``redis``), and
reports delivered messages per second and CPU per message (this process, relay included; plus Redis's own).
The target: a 2-of-3 federation at 100 jobs/s exchanges about 1,200 messages a second.

    .venv/bin/python bench/peers.py [--rounds R] [--ops N] [--sends S] [--concurrency C] [--payload BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import coincurve
import redis.asyncio as aioredis
from nostr_sdk import Keys

from sidecar.peers import PeerDirectory, ffi, make_transport
from sidecar.peers.envelope import EnvelopeCodec
from sidecar.redis_server import RedisServer
from sidecar.relay import EmbeddedRelay
from sidecar.schnorr import Signer

MEMBERS = (1, 2, 3)
TARGET = 1200  # messages a second: 100 jobs/s x ~12 messages


def typical_payload(size: int) -> bytes:
    """A message shaped like an ANNOUNCE (digest, payload, commitment), padded to ``size`` bytes."""
    def encoded(content: str) -> bytes:
        body = {"type": "announce", "job": "ab" * 32, "digest": "cd" * 32, "payload": {"content": content},
                "commitment": "02" + "ef" * 32 + "03" + "12" * 32}
        return json.dumps(body, separators=(",", ":")).encode()

    return encoded("x" * max(0, size - len(encoded(""))))


def per_op(fn: Callable[[int], object], ops: int) -> float:
    start = time.perf_counter()
    for n in range(ops):
        fn(n)
    return (time.perf_counter() - start) / ops


def envelope_costs(keys: dict[int, Keys], payload: bytes, rounds: int, ops: int, batch: int) -> dict[str, float]:
    """Median seconds per message: sign (coincurve, nostr-sdk, ``Signer``), seal and open (one message an event,
    and ``batch`` an event)."""
    ids = {m: k.public_key().to_hex() for m, k in keys.items()}
    sender = EnvelopeCodec(PeerDirectory(1, ids), keys[1])
    signer = coincurve.PrivateKey(os.urandom(32))
    sdk_keys, ours = keys[1], Signer(keys[1])
    digest = os.urandom(32)
    samples: dict[str, list[float]] = {
        "sign": [], "sign_sdk": [], "sign_ours": [], "seal": [], "open": [], "seal_batch": [], "open_batch": [],
    }
    for _ in range(rounds):
        for name, value in one_round(EnvelopeCodec(PeerDirectory(2, ids), keys[2]), sender, payload, ops, batch):
            samples[name].append(value)
        samples["sign"].append(per_op(lambda n: signer.sign_schnorr(digest), ops))
        samples["sign_sdk"].append(per_op(lambda n: sdk_keys.sign_schnorr(digest), ops))
        samples["sign_ours"].append(per_op(lambda n: ours.sign(digest), ops))
    return {name: statistics.median(values) for name, values in samples.items()}


def one_round(
    receiver: EnvelopeCodec, sender: EnvelopeCodec, payload: bytes, ops: int, batch: int
) -> list[tuple[str, float]]:
    """Seconds per message to seal and open ``ops`` events, of one message and of ``batch`` messages each."""
    single: list[str] = []
    batched: list[str] = []
    group = [payload] * batch
    seal = per_op(lambda n: single.extend(sender.seal(2, [sender.prepare(2, payload)])), ops)
    opened = per_op(lambda n: receiver.open(receiver.check(single[n])), ops)
    seal_batch = per_op(lambda n: batched.extend(sender.seal(2, [sender.prepare(2, p) for p in group])), ops)
    open_batch = per_op(lambda n: receiver.open(receiver.check(batched[n])), ops)
    return [("seal", seal), ("open", opened), ("seal_batch", seal_batch / batch), ("open_batch", open_batch / batch)]


async def redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def throughput(
    kind: str, keys: dict[int, Keys], payload: bytes, sends: int, concurrency: int, url: str
) -> tuple[float, float, float]:
    """(messages/s, this process's CPU us per message, Redis's CPU us per message)."""
    ids = {m: k.public_key().to_hex() for m, k in keys.items()}
    redis_client = aioredis.Redis.from_url(url) if kind == "redis" else None
    transports = {
        m: make_transport(kind, directory=PeerDirectory(m, ids), identity_keys=keys[m],
                          relays=[url] if kind == "nostr" else (), redis=redis_client)
        for m in MEMBERS
    }
    for transport in transports.values():
        await transport.start()
    expected = sends * (len(MEMBERS) - 1)
    done = asyncio.Event()
    received = {m: 0 for m in MEMBERS}

    async def drain(member: int) -> None:
        async for _ in transports[member].messages():
            received[member] += 1
            if all(count >= expected for count in received.values()):
                done.set()

    async def send_all(member: int) -> None:
        gate = asyncio.Semaphore(concurrency)
        others = [m for m in MEMBERS if m != member]

        async def one() -> None:
            async with gate:
                await transports[member].send(others, payload)

        await asyncio.gather(*(one() for _ in range(sends)))

    drains = [asyncio.create_task(drain(m)) for m in MEMBERS]
    redis_before = await redis_cpu(redis_client) if redis_client else 0.0
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(send_all(m) for m in MEMBERS))
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        print(f"  {kind}: only {sum(received.values())} of {expected * len(MEMBERS)} delivered in time")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    redis_after = await redis_cpu(redis_client) if redis_client else 0.0
    for transport in transports.values():
        await transport.stop()
    for task in drains:
        await task
    total = sum(received.values())
    if redis_client:
        await redis_client.aclose()
    return total / wall, cpu / total * 1e6, (redis_after - redis_before) / total * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--sends", type=int, default=1000, help="send() calls per member (2 messages each)")
    parser.add_argument("--concurrency", default="1,4,16", help="sends in flight per member, comma-separated")
    parser.add_argument("--payload", type=int, default=400, help="bytes of a typical message")
    parser.add_argument("--batch", type=int, default=8, help="messages an event for the batched envelope cost")
    args = parser.parse_args()
    keys = {m: Keys.generate() for m in MEMBERS}
    payload = typical_payload(args.payload)

    print(f"envelope of a {len(payload)}-byte message, median of {args.rounds} rounds x {args.ops} ops, one core:")
    for label, install in (("bindings as shipped", False), ("with sidecar.peers.ffi", True)):
        if install:
            ffi.install()
        c = envelope_costs(keys, payload, args.rounds, args.ops, args.batch)
        print(f"  {label}: coincurve sign_schnorr {c['sign'] * 1e6:4.0f} us; nostr-sdk Keys.sign_schnorr "
              f"{c['sign_sdk'] * 1e6:4.0f} us; Signer.sign {c['sign_ours'] * 1e6:4.0f} us")
        for name, seal, opened in (("1 a event", c["seal"], c["open"]),
                                   (f"{args.batch} an event", c["seal_batch"], c["open_batch"])):
            ratio = (seal + opened) / c["sign"]
            print(f"    {name:11s} seal {seal * 1e6:5.0f} us + open {opened * 1e6:5.0f} us per message "
                  f"= {ratio:4.1f} x sign_schnorr")

    levels = [int(level) for level in args.concurrency.split(",")]
    print(f"\nthroughput, 3 members in one process, {args.sends} sends each to 2 peers (target {TARGET} msg/s):")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(tmp)
        server.start()
        try:
            async with EmbeddedRelay() as relay:
                for kind, url in (("nostr", relay.url), ("redis", server.url)):
                    for level in levels:
                        rate, cpu, rcpu = await throughput(kind, keys, payload, args.sends, level, url)
                        extra = f" + Redis {rcpu:4.0f} us" if kind == "redis" else " (relay included)"
                        print(f"  {kind:5s} {level:3d} in flight: {rate:6.0f} msg/s = {rate / TARGET:4.1f} x target | "
                              f"CPU {cpu:5.0f} us/msg{extra}")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
