"""Group commit of job states on a real Redis: batching, order, answers per writer, scripts lost by a restart."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from sidecar.group_commit import GroupCommit
from sidecar.redis_client import RedisWait
from sidecar.store import JobWrite, Store


class CountingStore(Store):
    """A real store that also counts its round trips for job writes."""

    batches: list[int]

    async def write_jobs(self, writes):  # type: ignore[no-untyped-def]
        self.batches.append(len(writes))
        return await super().write_jobs(writes)


@pytest.fixture
def store(redis_client: aioredis.Redis) -> CountingStore:
    counting = CountingStore(redis_client, namespace="fed", member=1)
    counting.batches = []
    return counting


def commit(store: Store) -> GroupCommit:
    return GroupCommit(store, RedisWait(lambda: None, "test"))


async def test_writes_made_together_share_round_trips_and_each_lands(store: CountingStore) -> None:
    writes = commit(store)
    answers = await asyncio.gather(*(writes.write(JobWrite(f"job{n}", b"s%d" % n, "dvm", float(n))) for n in range(300)))
    assert answers == [True] * 300
    assert sum(store.batches) == 300 and len(store.batches) < 10  # one round trip, then what queued meanwhile
    assert sorted(await store.in_flight()) == sorted(f"job{n}" for n in range(300))
    assert await store.load_job("job7") == b"s7"
    await writes.close()


async def test_an_idle_writer_writes_at_once_and_answers_each_writer(store: CountingStore) -> None:
    writes = commit(store)
    assert await writes.write(JobWrite("a", b"s1", "signing", 1.0))
    event = ("e" * 64, '{"id":"' + "e" * 64 + '"}')
    assert await writes.write(JobWrite("a", b"final", "publishing", 2.0, "cosigned", (event,)))
    assert not await writes.write(JobWrite("a", b"late", "signing", 3.0))  # finished: refused, not saved
    assert store.batches == [1, 1, 1]
    assert await store.load_job("a") == b"final"
    assert await store.in_flight() == []
    assert [item.event_id for item in await store.due(10.0)] == ["e" * 64]
    await writes.close()


async def test_scripts_lost_by_a_redis_restart_are_loaded_again(store: CountingStore, redis_client: aioredis.Redis) -> None:
    await store.save_job("a", b"s1", phase="dvm", updated_at=1.0)
    await redis_client.script_flush()
    assert await store.write_jobs([JobWrite("a", b"s2", "agreement", 2.0), JobWrite("b", b"s1", "dvm", 3.0)]) == [True, True]
    assert await store.load_job("a") == b"s2"


def test_a_bad_write_is_refused_when_it_is_made_not_in_a_batch() -> None:
    with pytest.raises(ValueError, match="job_id"):
        JobWrite("x" * 300, b"s", "dvm", 1.0)
    with pytest.raises(ValueError, match="event_id"):
        JobWrite("a", b"s", "publishing", 1.0, "cosigned", (("", "{}"),))


async def test_close_releases_every_waiting_writer(store: CountingStore) -> None:
    writes = commit(store)
    waiting = [asyncio.ensure_future(writes.write(JobWrite(f"j{n}", b"s", "dvm", 1.0))) for n in range(5)]
    await writes.close()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(r is True or isinstance(r, asyncio.CancelledError) for r in results)
