"""Group commit for the decision point: many requests, one transaction, one thread.

The message path awaits ``run(job)``; jobs queue up while a batch is being
committed and the next batch takes all of them. A batch runs on a single worker
thread inside one transaction, so under load one commit covers many decisions,
the event loop never waits on the database, and jobs of one batch see each
other's writes (quota counters stay exact within a process; across processes
the row locks in :func:`secnode.policy.records.lock_usage` do it).

If a batch fails, its jobs are retried one by one, so one bad job fails alone;
a job whose own transaction fails raises to its caller, which refuses the
message (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

log = logging.getLogger("secnode.policy.worker")

T = TypeVar("T")
Job = Callable[[Connection], Any]


@dataclass
class WorkerStats:
    jobs: int = 0
    batches: int = 0
    failures: int = 0


class Worker:
    """Runs jobs ``(Connection) -> T`` in batched transactions on one thread."""

    def __init__(self, engine: Engine, prepare: Callable[[Connection], None] | None = None,
                 name: str = "policy-db") -> None:
        self.engine = engine
        self.prepare = prepare
        self.stats = WorkerStats()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._queue: list[tuple[Job, asyncio.Future[Any]]] = []
        self._busy = False

    async def run(self, job: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((job, future))
        if not self._busy:
            self._next(loop)
        return await future

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue, []
        self._busy = True
        done = loop.run_in_executor(self._executor, self._run_batch, [j for j, _ in batch])
        done.add_done_callback(lambda f: self._finish(loop, batch, f))

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Job, asyncio.Future[Any]]],
                done: asyncio.Future[list[tuple[bool, Any]]]) -> None:
        try:
            results = done.result()
        except BaseException as exc:  # the executor itself failed
            results = [(False, exc)] * len(batch)
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._busy = False
        if self._queue:
            self._next(loop)

    def _run_batch(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        self.stats.batches += 1
        self.stats.jobs += len(jobs)
        try:
            with self.engine.begin() as conn:
                if self.prepare is not None:
                    self.prepare(conn)
                return [(True, job(conn)) for job in jobs]
        except Exception as exc:
            self.stats.failures += 1
            if len(jobs) == 1:
                log.warning("policy store transaction failed: %s", exc)
                return [(False, exc)]
            return [self._run_batch([job])[0] for job in jobs]

    def close(self) -> None:
        self._executor.shutdown(wait=True)
