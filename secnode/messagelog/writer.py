"""Group-commit writer: the message path awaits the commit of the batch holding its record.

``append(draft)`` queues the draft and returns a future. One writer task takes
everything queued, hands it to a single worker thread that seals the records
(hash chain, in queue order), inserts them and commits, then resolves the
futures. While one commit runs the next batch accumulates, so under load one
commit (and on SQLite one WAL append) covers many messages, and the event loop
never waits on the disk.

The chain head (last seq and hash) lives in the worker thread and advances
only after a commit succeeds. If a commit fails, every message in that batch
gets the error (and is refused), and the writer starts a **new chain**: it
cannot know whether the failed commit reached the disk, and reusing its seqs
could fork the chain (``docs/audit.md`` §5).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.dialects import postgresql, sqlite

from secnode.core.messagelog import LogRecord, genesis_hash
from secnode.messagelog import schema
from secnode.messagelog.convert import Draft, row_of, utc_text

log = logging.getLogger("secnode.messagelog.writer")


class LogWriteError(Exception):
    """The record could not be made durable; the message it describes must be refused."""


def new_chain_id(node_id: str) -> str:
    """``NODE_ID#<8 hex>``: one chain per writer, a fresh random writer id per start."""
    return f"{node_id}#{secrets.token_hex(4)}"


def insert_ignore(engine: Engine, table: schema.Table) -> object:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the engine's dialect (store-once tables)."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table).prefix_with("IGNORE")


@dataclass
class WriterStats:
    records: int = 0
    commits: int = 0
    failures: int = 0
    chains: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    draft: Draft
    future: asyncio.Future[LogRecord]


class LogWriter:
    """Seals and commits records for one node process (see module docstring)."""

    def __init__(self, engine: Engine, node_id: str,
                 on_connect: Callable[[Connection], None] | None = None) -> None:
        self.engine = engine
        self.node_id = node_id
        self.stats = WriterStats()
        self._on_connect = on_connect
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mlog-writer")
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # worker-thread state
        self._conn: Connection | None = None
        self._known_certs: set[bytes] = set()
        self._known_ocsp: set[bytes] = set()
        self._start_chain()
        self._insert_certs = insert_ignore(engine, schema.certificates)
        self._insert_ocsp = insert_ignore(engine, schema.ocsp_responses)

    # ----- chain state (worker thread only, except at construction) ------------------------
    def _start_chain(self) -> None:
        self.chain_id = new_chain_id(self.node_id)
        self._seq = 0
        self._prev = genesis_hash(self.chain_id)
        self._chain_stored = False
        self.stats.chains.append(self.chain_id)

    @property
    def chain_ids(self) -> list[str]:
        """Every chain this process wrote (a write error starts a new one)."""
        return list(self.stats.chains)

    # ----- event loop side ---------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mlog-writer")

    async def append(self, draft: Draft) -> LogRecord:
        """Queue ``draft``; returns the sealed record once its batch is committed."""
        if self._closing:
            raise LogWriteError("the message log is shutting down")
        future: asyncio.Future[LogRecord] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(draft, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch, self._queue = self._queue, []
            try:
                records = await loop.run_in_executor(self._executor, self._commit, batch)
            except Exception as exc:
                self.stats.failures += 1
                log.error("message log write failed (%d records refused): %s", len(batch), exc)
                error = LogWriteError(f"could not store the log record: {exc}")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            self.stats.commits += 1
            self.stats.records += len(records)
            for item, record in zip(batch, records, strict=True):
                if not item.future.done():  # the request may have been cancelled meanwhile
                    item.future.set_result(record)

    async def close(self) -> None:
        """Commit what is queued, then stop the task and the worker thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_conn)
        self._executor.shutdown(wait=True)

    # ----- worker thread -----------------------------------------------------------------------
    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
            if self._on_connect is not None:
                self._on_connect(self._conn)
        return self._conn

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _commit(self, batch: list[_Pending]) -> list[LogRecord]:
        """Seal ``batch`` after the chain head and commit it in one transaction."""
        seq, prev = self._seq, self._prev
        records: list[LogRecord] = []
        certs: dict[bytes, bytes] = {}
        ocsp: dict[bytes, bytes] = {}
        for item in batch:
            seq += 1
            draft = item.draft
            record = draft.seal(self.chain_id, seq, prev, self.node_id)
            prev = record.record_hash
            records.append(record)
            sha = draft.signer_cert_sha256
            if sha is not None and draft.signer_cert_der and sha not in self._known_certs:
                certs[sha] = draft.signer_cert_der
            sha = draft.ocsp_sha256
            if sha is not None and draft.ocsp_der and sha not in self._known_ocsp:
                ocsp[sha] = draft.ocsp_der
        try:
            conn = self._connection()
            with conn.begin():
                if not self._chain_stored:
                    now = utc_text()
                    conn.execute(insert(schema.chains), [{
                        "chain_id": self.chain_id, "node_id": self.node_id, "started_at": now,
                        "host": socket.gethostname()[:255], "pid": os.getpid(),
                        "heartbeat_at": now, "stamped_seq": 0,
                    }])
                conn.execute(insert(schema.records), [row_of(r) for r in records])
                if certs:
                    conn.execute(self._insert_certs,  # type: ignore[arg-type]
                                 [{"sha256": k, "der": v} for k, v in certs.items()])
                if ocsp:
                    conn.execute(self._insert_ocsp,  # type: ignore[arg-type]
                                 [{"sha256": k, "der": v} for k, v in ocsp.items()])
        except Exception:
            self._close_conn()
            self._start_chain()
            raise
        self._seq, self._prev, self._chain_stored = seq, prev, True
        self._known_certs.update(certs)
        self._known_ocsp.update(ocsp)
        return records

