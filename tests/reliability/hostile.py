"""A member built to misbehave: the real ``dvm-sidecar run``, with this member's real share, identity key and
peer transport, whose ``Sidecar`` lies to its peers.

Run as ``python -m tests.reliability.hostile run --config FILE`` (a ``ProcessFederation`` member's
``program``). What it does to a job is chosen by the first word of the request's text input:

- ``wrong``: announces a result of its own making (digest and payload consistent): a divergent member;
- ``equivocate``: tells every peer two different digests for the job, in opposite orders;
- ``bad-share``: announces the right result, then answers every sign request with a random share;
- ``forge-share`` / ``forge-commitment`` / ``forge-done``: next to its honest announcement, a share under the
  recipient's identifier / an announcement whose commitment carries the recipient's identifier / a DONE for
  the agreed event whose signature is not the group's;
- anything else: honest.

On SIGUSR1 it floods every peer with what ``hostile.json`` beside its config asks for (``flood``), then writes
how many of each kind it sent to ``flood-report.json`` there. It keeps its own secrets to itself like any
member: nothing here prints a key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from nostr_sdk import Client, Event, Keys, Nip44Version, PublicKey, RelayUrl, nip44_encrypt

from consensus import frost
from consensus.messages import Announce, Done, Message, Share, Target, encode
from consensus.nip90 import build_result_event
from consensus.policies import ResultPayload
from sidecar import cli
from sidecar.commands import run as run_command
from sidecar.peers.base import PeerDirectory
from sidecar.peers.envelope import EnvelopeCodec
from sidecar.service import Sidecar
from tests.sidecar.test_peers import forge

log = logging.getLogger("dvm_sidecar.hostile")

BATCH = 64  # messages per envelope when flooding with valid ones: a flood is as cheap to send as it can be
# What each kind of flood message is counted as by its recipient (``peer_messages_rejected_total{reason}``);
# ``None``: valid messages (announcements of made-up jobs, which the runner's cap and expiry deal with). A
# junk payload passes the envelope checks and is refused by the message decoder (malformed); ``replay_own``
# sends each of its envelopes twice: the first copy is junk, the second a replay.
EXPECTED_REASON: dict[str, str | None] = {
    "garbage": "malformed", "not_an_event": "malformed", "oversize": "oversize", "stranger": "unknown_author",
    "impersonation": "bad_signature", "bad_signature": "bad_signature", "stale": "stale",
    "undecryptable": "malformed", "replay_originals": "malformed", "replay_own": "replay",
    "replay_peers": "replay", "junk_payload": "malformed", "orphan_announce": None,
}
RELAY_CARRIES = ("stranger", "stale", "undecryptable", "junk_payload", "orphan_announce")  # valid Nostr events


class HostileSidecar(Sidecar):
    config_dir = Path(".")

    async def start(self) -> None:
        await super().start()
        self._flooding: asyncio.Task[None] | None = None
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self._flood_soon)
        self._codec = EnvelopeCodec(
            PeerDirectory(self.setup.me, dict(self.setup.identities)), self.setup.identity,
            max_payload=self.setup.federation.max_payload + 4096,
        )

    # --- lies, per job ---

    def _behaviour(self, job_id: str) -> str:
        state = self.runner.state(job_id)
        if state is None or state.request is None:
            return "honest"
        texts = [i.data for i in state.request.inputs if i.type == "text"]
        return texts[0].split(" ", 1)[0] if texts else "honest"

    async def _send(self, recipients: tuple[int, ...], message: Message) -> None:
        behaviour = self._behaviour(message.job_id)
        honest = super()._send
        if isinstance(message, Share) and behaviour == "bad-share":
            z = secrets.randbelow(frost.N - 1) + 1
            await honest(recipients, replace(message, share=frost.SignatureShare(self.setup.me, z)))
            return
        if not isinstance(message, Announce) or message.payload is None:
            await honest(recipients, message)
            return
        made_up = ResultPayload(f"member {self.setup.me} says otherwise", message.payload.tags)
        lie = replace(message, digest=made_up.digest(), payload=made_up)
        if behaviour == "wrong":
            await honest(recipients, lie)
        elif behaviour == "equivocate":
            for index, recipient in enumerate(recipients):
                first, second = (message, lie) if index % 2 == 0 else (lie, message)
                await honest((recipient,), first)
                await honest((recipient,), second)
        elif behaviour == "forge-commitment":
            for recipient in recipients:
                theirs = replace(message.commitment, identifier=recipient)
                await honest((recipient,), replace(message, commitment=theirs))
            await honest(recipients, message)
        else:
            await honest(recipients, message)
            if behaviour == "forge-share":
                for recipient in recipients:
                    share = frost.SignatureShare(recipient, secrets.randbelow(frost.N - 1) + 1)
                    await honest((recipient,), Share(message.job_id, 0, share, message.commitment))
            elif behaviour == "forge-done":
                await honest(recipients, self._forged_done(message))

    def _forged_done(self, announce: Announce) -> Done:
        """A DONE for the event the federation will agree on, signed by this member's identity key instead of
        the group key: well formed, and wrong."""
        state = self.runner.state(announce.job_id)
        assert state is not None and state.request is not None and announce.payload is not None
        event = build_result_event(state.request, announce.payload, self.setup.federation.pubkey,
                                   created_at=state.request.event.created_at)
        signature = bytes.fromhex(self.setup.identity.sign_schnorr(event.event_id()))
        signers = tuple(sorted(self.setup.federation.members))[: self.setup.federation.threshold]
        return Done(announce.job_id, Target.RESULT, announce.digest, event.event_id(), signature, signers)

    # --- the flood ---

    def _flood_soon(self) -> None:
        if self._flooding is None or self._flooding.done():
            self._flooding = asyncio.create_task(self._flood_and_report())

    async def _flood_and_report(self) -> None:
        plan: dict[str, int] = json.loads((self.config_dir / "hostile.json").read_text())
        try:
            sent = await self.flood(plan)
        except Exception:
            log.exception("the flood failed")
            sent = {}
        report = self.config_dir / "flood-report.json"
        report.with_suffix(".tmp").write_text(json.dumps(sent))
        report.with_suffix(".tmp").rename(report)  # the test reads it only whole
        log.info("flood done: %s", sent)

    async def flood(self, plan: dict[str, int]) -> dict[str, dict[str, int]]:
        """Send every peer ``plan[kind]`` envelopes of each kind; the messages sent, by kind and peer."""
        sent: dict[str, dict[str, int]] = {}
        peers = [m for m in self.setup.federation.members if m != self.setup.me]
        via_relay = self.setup.transport == "nostr"
        client = await self._relay_client() if via_relay else None
        captured = {peer: await self._captured(peer, plan.get("replay_peers", 0)) for peer in peers}  # before
        try:
            for kind, count in plan.items():
                if via_relay and kind not in RELAY_CARRIES:
                    continue
                for peer in peers:
                    raws = captured[peer] if kind == "replay_peers" else await self._envelopes(kind, peer, count)
                    await self._deliver(client, peer, raws)
                    messages = count if kind in ("junk_payload", "orphan_announce", "replay_own") else len(raws)
                    sent.setdefault(kind, {})[str(peer)] = messages
                    if kind == "replay_own":
                        sent.setdefault("replay_originals", {})[str(peer)] = count
        finally:
            if client is not None:
                await client.shutdown()
        return sent

    async def _envelopes(self, kind: str, peer: int, count: int) -> list[str | bytes]:
        """``count`` envelopes of ``kind`` for ``peer`` (or the events carrying ``count`` messages, batched)."""
        me = self.setup.identity
        to = self.setup.identities[peer]
        now = int(time.time())
        peer_keys_hex = [h for m, h in self.setup.identities.items() if m not in (peer, self.setup.me)]
        if kind == "garbage":
            return [os.urandom(50 + i % 250) for i in range(count)]
        if kind == "not_an_event":
            shapes = ['{"id": 1}', "[]", "null", "[" * 5000 + "]" * 5000, '{"kind": 25090}', '"' + "x" * 500 + '"']
            return [shapes[i % len(shapes)] for i in range(count)]
        if kind == "oversize":
            return [forge(me, to, "A" * 70_000) for _ in range(count)]
        if kind == "stranger":
            stranger = Keys.generate()
            public = PublicKey.parse(to)
            return [forge(stranger, to, nip44_encrypt(stranger.secret_key(), public, f"{i}", Nip44Version.V2))
                    for i in range(count)]
        if kind == "impersonation":  # another member's name, this member's signature
            return [forge(me, to, f"x{i}", pubkey=peer_keys_hex[0] if peer_keys_hex else to) for i in range(count)]
        if kind == "bad_signature":
            out: list[str | bytes] = []
            for i in range(count):
                event = json.loads(forge(me, to, f"y{i}"))
                event["sig"] = "00" * 64
                out.append(json.dumps(event))
            return out
        if kind == "stale":
            return [forge(me, to, f"z{i}", created_at=now + 3600) for i in range(count)]  # the relay keeps old
        if kind == "undecryptable":
            return [forge(me, to, f"not encrypted {i}") for i in range(count)]
        if kind == "replay_own":
            sealed = [self._seal(peer, [b'{"type":"replayed"}'])[0] for _ in range(count)]
            return [*sealed, *sealed]  # each one twice: the copy is a replay
        if kind == "junk_payload":
            junk = [json.dumps({"type": "announce", "job": secrets.token_hex(4)}).encode() for _ in range(count)]
            return self._batched(peer, junk)
        if kind == "orphan_announce":
            return self._batched(peer, [encode(a) for a in self._orphans(count)])
        raise ValueError(f"unknown flood kind {kind!r}")

    def _orphans(self, count: int) -> list[Announce]:
        """Well-formed announcements for ``count`` job ids no customer ever asked for."""
        payload = ResultPayload("an answer to nothing", ())
        _, commitment = frost.commit(self.setup.federation.suite, self.member.key_package)
        return [Announce(secrets.token_hex(32), payload.digest(), payload, commitment) for _ in range(count)]

    def _seal(self, peer: int, payloads: Sequence[bytes]) -> list[str]:
        return self._codec.seal(peer, [self._codec.prepare(peer, p) for p in payloads])

    def _batched(self, peer: int, payloads: list[bytes]) -> list[str | bytes]:
        out: list[str | bytes] = []
        for start in range(0, len(payloads), BATCH):
            out += self._seal(peer, payloads[start : start + BATCH])
        return out

    async def _captured(self, peer: int, count: int) -> list[str | bytes]:
        """Up to ``count`` envelopes other members really sent ``peer`` (its inbox stream, readable by anyone on
        this Redis), newest first; the junk in there (this member's own, from a round before) is passed over."""
        entries = await self.redis.xrevrange(self.store.keys.inbox(peer), count=10_000)
        others = {h for m, h in self.setup.identities.items() if m != self.setup.me}
        out: list[str | bytes] = []
        for _, fields in entries:
            raw = fields.get(b"e") or fields.get("e")
            try:
                event = Event.from_json(raw.decode() if isinstance(raw, bytes) else raw)
            except Exception:  # nostr-sdk refuses what is not an event
                continue
            if event.author().to_hex() in others and event.verify():
                out.append(raw)
            if len(out) == count:
                break
        return out

    async def _deliver(self, client: Client | None, peer: int, raws: list[str | bytes]) -> None:
        if client is None:
            for start in range(0, len(raws), 500):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for raw in raws[start : start + 500]:
                        pipe.xadd(self.store.keys.inbox(peer), {"e": raw})
                    await pipe.execute()
            return
        for raw in raws:
            await client.send_event(Event.from_json(raw if isinstance(raw, str) else raw.decode()))

    async def _relay_client(self) -> Client:
        client = Client()
        for url in self.setup.relays:
            await client.add_relay(RelayUrl.parse(url))
        await client.connect(timedelta(seconds=5))
        return client


def main(argv: Sequence[str]) -> int:
    if "--config" in argv:
        HostileSidecar.config_dir = Path(argv[list(argv).index("--config") + 1]).parent
    run_command.Sidecar = HostileSidecar  # type: ignore[misc]  # the real `run` command, this member's Sidecar
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
