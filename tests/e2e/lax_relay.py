"""A relay that checks nothing: the hostile or buggy public relay a federation must survive.

Real relays (nostr-sdk's ``LocalRelay`` among them) refuse events with bad signatures or over 64 KiB, so junk
never reaches a sidecar through them. A relay a federation lists may not be so careful, so this one is a small
NIP-01 relay over aiohttp that forwards what it is given as it is: ``EVENT`` messages are stored and passed to
matching subscriptions without any check, and ``inject(raw)`` sends any text as an event to EVERY open
subscription, filters ignored (wrong kinds, bad signatures, 1 MiB contents, invalid JSON).

It listens on 127.0.0.1 only; ``stop()`` closes every connection.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import WSMsgType, web

from sidecar.relay import LOOPBACK, free_port

MAX_FRAME = 8 * 1024 * 1024  # room for the 1 MiB events the tests send


def matches(query: dict[str, Any], event: dict[str, Any]) -> bool:
    """NIP-01 filter matching (ids, authors, kinds, since, until, #x tags)."""
    for name, field in (("ids", "id"), ("authors", "pubkey"), ("kinds", "kind")):
        if name in query and event.get(field) not in query[name]:
            return False
    created = event.get("created_at", 0)
    if "since" in query and created < query["since"]:
        return False
    if "until" in query and created > query["until"]:
        return False
    for name, wanted in query.items():
        if name.startswith("#") and len(name) == 2:
            values = {t[1] for t in event.get("tags", []) if len(t) > 1 and t[0] == name[1]}
            if not values & set(wanted):
                return False
    return True


class LaxRelay:
    def __init__(self) -> None:
        self.url = ""
        self.events: list[dict[str, Any]] = []
        self._subs: dict[web.WebSocketResponse, dict[str, list[dict[str, Any]]]] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, LOOPBACK, port).start()
        self.url = f"ws://{LOOPBACK}:{port}"
        return self.url

    async def stop(self) -> None:
        for ws in list(self._subs):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def subscribers(self, kind: int) -> int:
        """Open subscriptions asking for ``kind``."""
        return sum(
            1 for subs in self._subs.values() for queries in subs.values()
            if any(kind in q.get("kinds", ()) for q in queries)
        )

    async def inject(self, raw: str, *, kind: int | None = None) -> int:
        """Send ``raw`` verbatim as an event to every open subscription (only those asking for ``kind``, when
        given), whatever their filters say; how many got it."""
        sent = 0
        for ws, subs in list(self._subs.items()):
            for sub_id, queries in list(subs.items()):
                if kind is None or any(kind in q.get("kinds", ()) for q in queries):
                    await ws.send_str(f"[\"EVENT\",{json.dumps(sub_id)},{raw}]")
                    sent += 1
        return sent

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME)
        await ws.prepare(request)
        self._subs[ws] = {}
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    message = json.loads(frame.data)
                    await self._handle(ws, message)
                except (ValueError, TypeError, IndexError, KeyError, AttributeError):
                    await ws.send_str(json.dumps(["NOTICE", "could not read that"]))
        finally:
            self._subs.pop(ws, None)
        return ws

    async def _handle(self, ws: web.WebSocketResponse, message: list[Any]) -> None:
        verb = message[0]
        if verb == "EVENT":
            event = message[1]
            if not 20000 <= event.get("kind", 0) < 30000:  # ephemeral kinds are passed on, never stored
                self.events.append(event)
            await ws.send_str(json.dumps(["OK", event["id"], True, ""]))
            for other, subs in list(self._subs.items()):
                for sub_id, queries in list(subs.items()):
                    if any(matches(q, event) for q in queries):
                        await other.send_str(json.dumps(["EVENT", sub_id, event]))
        elif verb == "REQ":
            sub_id, queries = message[1], message[2:]
            self._subs[ws][sub_id] = queries
            for event in self.events:
                if any(matches(q, event) for q in queries):
                    await ws.send_str(json.dumps(["EVENT", sub_id, event]))
            await ws.send_str(json.dumps(["EOSE", sub_id]))
        elif verb == "CLOSE":
            self._subs[ws].pop(message[1], None)

