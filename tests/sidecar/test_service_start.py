"""A member that cannot start (its HTTP port taken) fails with the reason and leaves nothing running: the parts
already up (peer transport, private relay and its client, public side) are stopped again."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import socket
import warnings

import pytest

from sidecar.local import LocalFederation, LocalOptions


def running_tasks() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks() if task is not asyncio.current_task()}


def unclosed() -> list[str]:
    """What the garbage collector finds left open (aiohttp and asyncio warn from ``__del__``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def start_on_taken_port(local: LocalFederation, port: int) -> None:
    # No reference to the member survives this call, so whatever it left open is garbage afterwards.
    setup = dataclasses.replace(local.setup(1), http_host="127.0.0.1", http_port=port)
    with pytest.raises(OSError):
        await local.start_member(1, setup)


async def test_a_member_that_cannot_start_stops_what_it_started() -> None:
    local = LocalFederation(LocalOptions())
    await local.start(set())
    try:
        before = running_tasks()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            await start_on_taken_port(local, taken.getsockname()[1])
        await asyncio.sleep(0)  # let the cancelled tasks finish
        assert running_tasks() - before == set()  # relay connections, publisher, relay watcher: all gone
        assert local.sidecars == {}
        assert unclosed() == []
        await local.start_member(1)  # the same member starts once the cause is gone
        assert local.sidecars[1].private_relay_url
    finally:
        await local.stop()
