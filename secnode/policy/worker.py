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

``defer_insert(stmt, params)`` queues a row nobody waits for (write-behind): it
rides in the next batch, or, when the worker is idle, in a batch started
``DEFER_SECONDS`` later, as one ``executemany``. The parameters are prepared on
the caller's side, so the worker thread spends little Python time (and little
of the GIL the event loop needs). The decision point defers only rows whose
content the durable message-log record of the same message also binds
(non-personal allow decisions); :meth:`flush` writes what is left at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable

log = logging.getLogger("secnode.policy.worker")

T = TypeVar("T")
Job = Callable[[Connection], Any]
Row = tuple[Executable, dict[str, Any]]
DEFER_SECONDS = 0.1


@dataclass
class WorkerStats:
    jobs: int = 0
    rows: int = 0
    batches: int = 0
    failures: int = 0
    rows_lost: int = 0


class Worker:
    """Runs jobs ``(Connection) -> T`` in batched transactions on one thread."""

    def __init__(
        self,
        engine: Engine,
        prepare: Callable[[Connection], None] | None = None,
        name: str = "policy-db",
    ) -> None:
        self.engine = engine
        self.prepare = prepare
        self.stats = WorkerStats()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._queue: list[tuple[Job, asyncio.Future[Any], bool]] = []
        self._rows: list[Row] = []
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None

    async def run(self, job: Callable[[Connection], T], *, fresh: bool = True) -> T:
        """Run ``job`` in the next batch; ``fresh`` asks for ``prepare`` first (the decision
        point re-reads the registry generation), plain record writes do not need it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((job, future, fresh))
        if not self._busy:
            self._next(loop)
        return await future

    def defer_insert(self, stmt: Executable, params: dict[str, Any]) -> None:
        """Queue one row for the next batch without waiting for it."""
        self._rows.append((stmt, params))
        if not self._busy and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(DEFER_SECONDS, self._deferred_due, loop)

    def _deferred_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if not self._busy and (self._queue or self._rows):
            self._next(loop)

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._queue = self._queue, []
        rows, self._rows = self._rows, []
        self._busy = True
        fresh = any(f for _, _, f in batch)
        done = loop.run_in_executor(
            self._executor, self._run_batch, [j for j, _, _ in batch], rows, fresh
        )
        done.add_done_callback(lambda f: self._finish(loop, batch, f))

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Job, asyncio.Future[Any], bool]],
        done: asyncio.Future[list[tuple[bool, Any]]],
    ) -> None:
        try:
            results = done.result()
        except BaseException as exc:  # the executor itself failed
            results = [(False, exc)] * len(batch)
        for (_, future, _), (ok, value) in zip(batch, results, strict=True):
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._busy = False
        if self._queue:
            self._next(loop)
        elif self._rows and self._timer is None:
            self._timer = loop.call_later(DEFER_SECONDS, self._deferred_due, loop)

    def _run_batch(
        self, jobs: list[Job], rows: list[Row], fresh: bool = True
    ) -> list[tuple[bool, Any]]:
        self.stats.batches += 1
        self.stats.jobs += len(jobs)
        try:
            with self.engine.begin() as conn:
                _insert_rows(conn, rows)
                if jobs and fresh and self.prepare is not None:
                    self.prepare(conn)
                out = [(True, job(conn)) for job in jobs]
            self.stats.rows += len(rows)
            return out
        except Exception as exc:
            self.stats.failures += 1
            if rows:
                self._rows_alone(rows)
            if len(jobs) == 1:
                log.warning("policy store transaction failed: %s", exc)
                return [(False, exc)]
            return [self._run_batch([job], [], fresh)[0] for job in jobs]

    def _rows_alone(self, rows: list[Row]) -> None:
        try:
            with self.engine.begin() as conn:
                _insert_rows(conn, rows)
            self.stats.rows += len(rows)
        except Exception as exc:
            self.stats.rows_lost += len(rows)
            log.error("%d decision-log row(s) written behind were lost: %s", len(rows), exc)

    def flush(self) -> None:
        """Write the rows still queued (at shutdown, from any thread)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, self._rows = self._rows, []
        if rows:
            self._rows_alone(rows)

    def close(self) -> None:
        self.flush()
        self._executor.shutdown(wait=True)


def _insert_rows(conn: Connection, rows: list[Row]) -> None:
    """One ``executemany`` per statement, in queue order per statement."""
    by_stmt: dict[int, tuple[Executable, list[dict[str, Any]]]] = {}
    for stmt, params in rows:
        by_stmt.setdefault(id(stmt), (stmt, []))[1].append(params)
    for stmt, params_list in by_stmt.values():
        conn.execute(stmt, params_list)
