"""Group-commit writer: the message path awaits the commit of the batch holding its record.

``append(draft)`` queues the draft and awaits its future. Everything queued is
handed to one worker thread that seals the records (hash chain, in queue
order), inserts them with one statement and commits, then the futures are
resolved on the event loop. While one commit runs the next batch accumulates,
so under load one commit (and on SQLite one WAL append) covers many messages,
and the event loop never waits on the disk.

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
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite

from secnode.core.messagelog import LogRecord, RecordError, genesis_hash
from secnode.messagelog import schema
from secnode.messagelog.convert import RECORD_COLUMNS, Draft, row_tuple, utc_text

log = logging.getLogger("secnode.messagelog.writer")


class LogWriteError(Exception):
    """The record could not be made durable; the message it describes must be refused."""


def new_chain_id(node_id: str) -> str:
    """``NODE_ID#<8 hex>``: one chain per writer, a fresh random writer id per start."""
    return f"{node_id}#{secrets.token_hex(4)}"


def insert_ignore(engine: Engine, table: Table) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the engine's dialect (store-once tables)."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table).prefix_with("IGNORE")


class RecordInsert:
    """``INSERT INTO mlog_records (...) VALUES (...), (...), ...``: one statement per batch.

    Not ``executemany``: the sqlite3 module lets go of the GIL around every row
    it steps, and each time the worker thread wants it back from the busy event
    loop costs a wait and two context switches; one multi-row statement steps
    once. Executed on the driver's cursor (SQLAlchemy's statement machinery
    costs more than the insert itself). The SQL text per row count is cached.
    """

    MAX_ROWS = 500  # 26 columns x 500 = 13 000 parameters, within SQLite's 32 766

    def __init__(self, engine: Engine) -> None:
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(engine.dialect.paramstyle)
        if mark is None:
            raise ValueError(f"unsupported DB-API parameter style {engine.dialect.paramstyle!r}")
        self._row = "(" + ", ".join([mark] * len(RECORD_COLUMNS)) + ")"
        self._head = f"INSERT INTO {schema.records.name} ({', '.join(RECORD_COLUMNS)}) VALUES "
        self._sql: dict[int, str] = {}

    def run(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for start in range(0, len(rows), self.MAX_ROWS):
                chunk = rows[start:start + self.MAX_ROWS]
                sql = self._sql.get(len(chunk))
                if sql is None:
                    sql = self._sql[len(chunk)] = self._head + ", ".join([self._row] * len(chunk))
                cursor.execute(sql, [value for row in chunk for value in row])
        finally:
            cursor.close()


def ordered_record_id() -> str:
    """A record id: 128 bits in hex, time-ordered (56-bit microseconds, 72 random bits).

    Random ids land on a random leaf of the record-id index in every commit
    (a WAL page each); time-ordered ones append, which cut the log's WAL
    volume by a quarter. 72 random bits keep them unguessable.
    """
    return f"{time.time_ns() // 1000 & 0xFFFFFFFFFFFFFF:014x}{secrets.token_hex(9)}"


@dataclass
class WriterStats:
    records: int = 0
    commits: int = 0
    failures: int = 0
    commit_seconds: float = 0.0  # time in the worker thread, sealing + transaction
    wait_seconds: float = 0.0  # from hand-off to the worker thread until it started
    chains: list[str] = field(default_factory=list)


@dataclass
class _Sealed:
    """A batch sealed after the chain head, not yet committed."""

    seq: int
    prev: bytes
    records: list[LogRecord]
    rows: list[tuple[Any, ...]]
    certs: dict[bytes, bytes]
    ocsp: dict[bytes, bytes]


@dataclass
class _Pending:
    draft: Draft
    future: asyncio.Future[LogRecord]
    error: Exception | None = None  # set by the worker when the draft cannot be sealed


class LogWriter:
    """Seals and commits records for one node process (see module docstring).

    Hand-off without an executor or a task: ``append`` queues the draft and, if
    no batch is in flight, passes everything queued to the worker thread; the
    worker reports back with ``call_soon_threadsafe``, and the callback passes
    on whatever queued up meanwhile. One wake-up each way per commit.
    """

    def __init__(self, engine: Engine, node_id: str,
                 on_connect: Callable[[Connection], None] | None = None) -> None:
        self.engine = engine
        self.node_id = node_id
        self.stats = WriterStats()
        self._on_connect = on_connect
        self._queue: list[_Pending] = []
        self._in_flight = False
        self._closing = False
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="mlog-writer", daemon=True)
        # worker-thread state
        self._conn: Connection | None = None
        self._known_certs: set[bytes] = set()
        self._known_ocsp: set[bytes] = set()
        self._start_chain()
        self._insert_certs = insert_ignore(engine, schema.certificates)
        self._insert_ocsp = insert_ignore(engine, schema.ocsp_responses)
        self._insert_records = RecordInsert(engine)

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
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._thread.start()

    async def append(self, draft: Draft) -> LogRecord:
        """Queue ``draft``; returns the sealed record once its batch is committed."""
        if self._closing or self._loop is None:
            raise LogWriteError("the message log is not running")
        assert self._idle is not None
        future: asyncio.Future[LogRecord] = self._loop.create_future()
        self._queue.append(_Pending(draft, future))
        self._idle.clear()
        if not self._in_flight:
            self._dispatch()
        return await future

    def _dispatch(self) -> None:
        """Give everything queued to the worker (event loop; nothing in flight)."""
        assert self._idle is not None
        batch, self._queue = self._queue, []
        self._in_flight = True
        queued = time.perf_counter()
        self._jobs.put(lambda: self._run_batch(batch, queued))

    def _run_batch(self, batch: list[_Pending], queued: float | None = None) -> None:
        """Worker thread: commit, then report to the loop."""
        assert self._loop is not None
        started = time.perf_counter()
        try:
            records: list[LogRecord] | Exception = self._commit(batch)
        except Exception as exc:
            records = exc
        self.stats.commit_seconds += time.perf_counter() - started
        if queued is not None:
            self.stats.wait_seconds += started - queued
        self._loop.call_soon_threadsafe(self._finish, batch, records)

    def _finish(self, batch: list[_Pending], outcome: list[LogRecord] | Exception) -> None:
        """Event loop: resolve the batch's futures, then send the next batch."""
        assert self._idle is not None
        self._in_flight = False
        if self._queue:
            self._dispatch()
        else:
            self._idle.set()
        if isinstance(outcome, Exception):
            self.stats.failures += 1
            log.error("message log write failed (%d records refused): %s", len(batch), outcome)
            error = LogWriteError(f"could not store the log record: {outcome}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        self.stats.commits += 1
        self.stats.records += len(outcome)
        sealed = iter(outcome)
        for item in batch:
            if item.error is not None:
                if not item.future.done():
                    item.future.set_exception(LogWriteError(f"invalid record: {item.error}"))
                continue
            record = next(sealed)
            if not item.future.done():  # the request may have been cancelled meanwhile
                item.future.set_result(record)

    async def close(self) -> None:
        """Commit what is queued, then stop the worker thread."""
        self._closing = True
        if self._idle is not None:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=30)
            except TimeoutError:
                log.error("message log writer did not finish within 30 s")
        if self._thread.is_alive():
            self._jobs.put(self._close_conn)
            self._jobs.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 30)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # _run_batch reports its own errors; this is a bug guard
                log.exception("message log worker job failed")

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
        return self._store(self._seal(batch))

    def _seal(self, batch: list[_Pending]) -> _Sealed:
        seq, prev = self._seq, self._prev
        records: list[LogRecord] = []
        certs: dict[bytes, bytes] = {}
        ocsp: dict[bytes, bytes] = {}
        for item in batch:
            draft = item.draft
            try:
                record = draft.seal(self.chain_id, seq + 1, prev, self.node_id,
                                    ordered_record_id())
            except RecordError as exc:  # this message alone is refused; the batch goes on
                item.error = exc
                continue
            seq += 1
            prev = record.record_hash
            records.append(record)
            sha = draft.signer_cert_sha256
            if sha is not None and draft.signer_cert_der and sha not in self._known_certs:
                certs[sha] = draft.signer_cert_der
            sha = draft.ocsp_sha256
            if sha is not None and draft.ocsp_der and sha not in self._known_ocsp:
                ocsp[sha] = draft.ocsp_der
        return _Sealed(seq, prev, records, [row_tuple(r) for r in records], certs, ocsp)

    def _store(self, sealed: _Sealed) -> list[LogRecord]:
        seq, prev, records = sealed.seq, sealed.prev, sealed.records
        rows, certs, ocsp = sealed.rows, sealed.certs, sealed.ocsp
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
                self._insert_records.run(conn, rows)
                if certs:
                    conn.execute(self._insert_certs,
                                 [{"sha256": k, "der": v} for k, v in certs.items()])
                if ocsp:
                    conn.execute(self._insert_ocsp,
                                 [{"sha256": k, "der": v} for k, v in ocsp.items()])
        except Exception:
            self._close_conn()
            self._start_chain()
            raise
        self._seq, self._prev, self._chain_stored = seq, prev, True
        self._known_certs.update(certs)
        self._known_ocsp.update(ocsp)
        return records

