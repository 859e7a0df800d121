"""Group commit of job states: the writes that many jobs make at the same time go to Redis together.

Every input a job takes ends in a write of its new state (``JobRunner``: the state is durable before any
effect leaves the process), and under load hundreds of jobs step at once. Each write on its own costs a
round trip and a pooled connection; here the writes queued while one batch is on its way go in the next
batch, one pipeline for all of them, as a database commits many transactions with one log flush. An idle
member writes each state at once, as before.

Rules: a writer gets its own answer (``True``, or ``False`` for a save refused because the job had finished);
order is kept, and each job has at most one write in flight (the runner holds the job's lock until its write is
done). While Redis is away the batch is retried through ``RedisWait``, holding later writes behind it, so none
is lost or reordered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial

from sidecar.redis_client import RedisWait
from sidecar.store import JobWrite, Store

MAX_BATCH = 256  # writes in one pipeline


class GroupCommit:
    def __init__(self, store: Store, wait: RedisWait) -> None:
        self._store = store
        self._wait = wait
        self._queue: deque[tuple[JobWrite, asyncio.Future[bool]]] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def write(self, write: JobWrite) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain(), name="job-state writer")
        return await future

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        for _, future in self._queue:
            future.cancel()
        self._queue.clear()

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                writes = [write for write, _ in batch]
                try:
                    answers = await self._wait(partial(self._store.write_jobs, writes))
                except BaseException as exc:  # a caller's mistake (ValueError) or a stop: every writer hears it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None
