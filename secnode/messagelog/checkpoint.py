"""SQLite WAL checkpoints off the event loop.

SQLite's automatic checkpoint runs inside whichever commit crosses the WAL
size threshold; on the message path that is a multi-millisecond stall
(research §3.3: p99 at c=1 went from 2.9 ms to 9.6 ms). The log writer's
connection therefore sets ``wal_autocheckpoint=0`` and this task checkpoints
from its own connection in its own thread: ``PASSIVE`` (never blocks writers)
on a timer while records are being written, and once ``TRUNCATE`` when the
log has gone idle, so the WAL file does not grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Connection, Engine

log = logging.getLogger("secnode.messagelog.checkpoint")


def disable_autocheckpoint(conn: Connection) -> None:
    """For the writer's connection: never checkpoint inside a message's commit."""
    conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
    conn.commit()  # end the implicit transaction the PRAGMA opened


class Checkpointer:
    """Checkpoints the WAL from a dedicated thread (see module docstring).

    Every ``interval`` seconds it looks at the writer's commit count: while
    commits go on, ``PASSIVE`` then ``RESTART`` (see the module docstring) run
    every ``busy_interval`` seconds, or at once when the WAL file passes
    ``max_wal_bytes``; after a quiet tick, one ``TRUNCATE`` empties the WAL.
    """

    #: How long ``RESTART`` may wait for readers while it blocks the writers.
    RESTART_WAIT_MS = 50

    def __init__(
        self,
        engine: Engine,
        interval: float = 1.0,
        busy_interval: float = 2.0,
        max_wal_bytes: int = 64 << 20,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.busy_interval = busy_interval
        self.max_wal_bytes = max_wal_bytes
        self.checkpoints = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mlog-checkpoint")
        self._conn: Connection | None = None
        database = engine.url.database
        self._wal = Path(database + "-wal") if database else None

    def wal_bytes(self) -> int:
        try:
            return self._wal.stat().st_size if self._wal is not None else 0
        except OSError:
            return 0

    async def run(self, activity: Callable[[], int]) -> None:
        """``activity()`` counts commits; no change since the last tick means idle."""
        loop = asyncio.get_running_loop()
        seen = activity()
        dirty = False
        since = 0.0
        while True:
            await asyncio.sleep(self.interval)
            since += self.interval
            now = activity()
            busy, seen = now != seen, now
            if busy:
                dirty = True
                if since < self.busy_interval and self.wal_bytes() < self.max_wal_bytes:
                    continue
                mode = "RESTART"
            elif dirty:
                mode, dirty = "TRUNCATE", False
            else:
                continue
            since = 0.0
            try:
                result = await loop.run_in_executor(self._executor, self.checkpoint, mode)
                busy = bool(result[0])
            except Exception as exc:  # a failed checkpoint is retried at the next tick
                dirty = True
                log.warning("WAL checkpoint (%s) failed: %s", mode, exc)
                continue
            if busy and mode == "TRUNCATE":
                dirty = True  # a reader kept it from finishing: try again at the next tick

    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """Run one checkpoint; returns SQLite's (busy, wal frames, frames checkpointed).

        ``RESTART`` first copies what it can with ``PASSIVE`` (no lock), so the
        restart itself holds the write lock only briefly.
        """
        if mode == "RESTART":
            self._run("PASSIVE")
        return self._run(mode)

    def _run(self, mode: str) -> tuple[int, int, int]:
        if self._conn is None:
            self._conn = self.engine.connect()
            self._conn.exec_driver_sql(f"PRAGMA busy_timeout={self.RESTART_WAIT_MS}")
            self._conn.commit()
        row = self._conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()
        self._conn.commit()
        self.checkpoints += 1
        return int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        """Final TRUNCATE (the writer has stopped) and release the connection."""
        try:
            self.checkpoint("TRUNCATE")
        except Exception as exc:
            log.warning("final WAL checkpoint failed: %s", exc)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._executor.shutdown(wait=False)
