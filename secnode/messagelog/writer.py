"""Group-commit writer: the message path awaits the commit of the batch holding its record.

``append(draft)`` queues the draft and yields for one pass of the event loop.
Once per pass everything queued is sealed (hash chain, in queue order) and
committed as one batch with one multi-row ``INSERT``; the flush is scheduled
before any appender resumes, so on SQLite the appender finds its record
committed when it resumes (a message waits for four commits in a row, two
per node, and a second pass for a future's wake-up on each would add four
loop passes to its latency). If the batch went to the worker thread, the
appender awaits its future. While a commit is in flight the next batch
accumulates, so under load one commit (and on SQLite one WAL append) covers
many messages.

**Where the commit runs.** On SQLite the batch is committed on the event
loop's own thread, through a dedicated connection that never waits for the
write lock (``busy_timeout = 0``) and never checkpoints: a WAL commit with
``synchronous = NORMAL`` is a few ``pwrite`` calls into the page cache, no
``fsync``, and doing it in place costs less than handing it to a thread (a
thread hand-off is two wake-ups and a fight for the GIL with the busy event
loop; measured in ``docs/performance.md``). When the lock is taken (the
stamper, the archiver's purge, the checkpointer's ``TRUNCATE`` or another
node process on the same file), the batch goes to the worker thread, which
waits for the lock there, so the event loop never waits on another writer.
On PostgreSQL every commit is a round trip to the server and always runs in
the worker thread. Sealing always happens on the event loop (it is Python
work either way, and a thread would only contend for the GIL).

The chain head (last seq and hash) advances only after a commit succeeds. If
a commit fails, every message in that batch gets the error (and is refused),
and the writer starts a **new chain**: it cannot know whether the failed
commit reached the disk, and reusing its seqs could fork the chain
(``docs/audit.md`` §5).

**Write health.** The outcome of the last commit is kept (``stats.failing_since``,
``stats.last_error``): ``/health`` turns 503 while it is a failure. A node taken
out of service for that gets no messages to try again with, so
:meth:`LogWriter.probe` stores the new chain's row (a real write to
the log's tables, and one the chain needs anyway) and clears the failure once
that commits.

Why one module of this size: the queue, the sealing, the commit loop and the
failure state share one lock and one invariant (a record is answered only once its
batch committed); split, each half would need the other's internals.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import queue
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite

from secnode.core.message import Body
from secnode.core.messagelog import genesis_hash
from secnode.core.messagelog.record import json_string
from secnode.messagelog import tables
from secnode.messagelog.convert import BODY_COLUMN, RECORD_COLUMNS, Draft, utc_text

log = logging.getLogger("secnode.messagelog.writer")


class LogWriteError(Exception):
    """The record could not be made durable; the message it describes must be refused."""


class WrittenRecord(NamedTuple):
    """What ``append`` returns once the record is durable: where it is in which chain."""

    chain_id: str
    seq: int
    record_id: str
    record_hash: bytes
    message_id: str


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
    it steps, and each time the thread wants it back from the busy event loop
    costs a wait and two context switches; one multi-row statement steps once.
    Executed on a DB-API cursor (SQLAlchemy's statement machinery costs more
    than the insert itself). The SQL text per row count is cached.
    """

    MAX_ROWS = 500  # 26 columns x 500 = 13 000 parameters, within SQLite's 32 766

    def __init__(self, paramstyle: str) -> None:
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(paramstyle)
        if mark is None:
            raise ValueError(f"unsupported DB-API parameter style {paramstyle!r}")
        self._row = "(" + ", ".join([mark] * len(RECORD_COLUMNS)) + ")"
        self._head = f"INSERT INTO {tables.records.name} ({', '.join(RECORD_COLUMNS)}) VALUES "
        self._sql: dict[int, str] = {}

    def run(self, executor: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` through ``executor`` (a DB-API cursor, or a sqlite3 connection)."""
        for start in range(0, len(rows), self.MAX_ROWS):
            chunk = rows[start : start + self.MAX_ROWS]
            sql = self._sql.get(len(chunk))
            if sql is None:
                sql = self._sql[len(chunk)] = self._head + ", ".join([self._row] * len(chunk))
            executor.execute(sql, [value for row in chunk for value in row])


#: On SQLite, a body from this size on is not bound into the batch's ``INSERT``: the
#: sqlite3 module copies every bound value into the statement, and a cached statement
#: keeps its last values, so each large body stayed in memory until that statement ran
#: again. It is written into its row through incremental blob I/O instead
#: (:func:`write_large_bodies`), a piece at a time.
LARGE_BODY = 256 * 1024
BLOB_PIECE = 1024 * 1024

#: (chain id, seq, body) of a row whose body is written after its ``INSERT``.
LargeBody = tuple[str, int, Body]


def write_large_bodies(conn: sqlite3.Connection, bodies: list[LargeBody]) -> None:
    """Fill the rows' ``body`` in place (same transaction as their ``INSERT``), then let
    SQLite free the page cache the bodies went through (``PRAGMA shrink_memory``)."""
    update = (
        f"UPDATE {tables.records.name} SET body = zeroblob(?)"
        " WHERE chain_id = ? AND seq = ? RETURNING rowid"
    )
    for chain_id, seq, body in bodies:
        ((rowid,),) = conn.execute(update, (len(body), chain_id, seq)).fetchall()
        view = memoryview(body)
        with conn.blobopen(tables.records.name, "body", rowid) as blob:
            for start in range(0, len(view), BLOB_PIECE):
                blob.write(view[start : start + BLOB_PIECE])


def shrink_memory(conn: sqlite3.Connection) -> None:
    """Give back the connection's cached pages (after large bodies went through them)."""
    conn.execute("PRAGMA shrink_memory")


def ordered_record_ids(count: int) -> list[str]:
    """Record ids: 128 bits in hex, time-ordered (56-bit microseconds, 72 random bits).

    Random ids land on a random leaf of the record-id index in every commit
    (a WAL page each); time-ordered ones append, which cut the log's WAL
    volume by a quarter. 72 random bits keep them unguessable. One
    ``os.urandom`` call per batch, not per record.
    """
    stamp = f"{time.time_ns() // 1000 & 0xFFFFFFFFFFFFFF:014x}"
    noise = os.urandom(9 * count).hex()
    return [stamp + noise[18 * i : 18 * i + 18] for i in range(count)]


@dataclass
class WriterStats:
    records: int = 0
    commits: int = 0
    inline_commits: int = 0  # SQLite commits made on the event loop (the rest: worker thread)
    failures: int = 0
    commit_seconds: float = 0.0  # time spent committing (event loop or worker thread)
    wait_seconds: float = 0.0  # from a batch's first append until its commit started
    chains: list[str] = field(default_factory=list)
    failing_since: float | None = None  # time.time() of the first failed commit in a row
    last_error: str | None = None  # why the last commit failed (None: it succeeded)
    probes: int = 0  # probe writes tried while failing

    def failed(self, error: Exception) -> None:
        """Note a failed commit (the first of a run starts the clock)."""
        if self.failing_since is None:
            self.failing_since = time.time()
        self.last_error = str(error) or type(error).__name__

    def succeeded(self) -> None:
        if self.failing_since is not None:
            log.warning(
                "message log writes succeed again (failing since %s)",
                utc_text(dt.datetime.fromtimestamp(self.failing_since, dt.UTC)),
            )
        self.failing_since = None
        self.last_error = None


@dataclass
class _Sealed:
    """A batch sealed after the chain head, not yet committed."""

    chain_id: str
    first_batch_of_chain: bool
    seq: int
    prev: bytes
    results: list[WrittenRecord]
    rows: list[tuple[Any, ...]]
    certs: dict[bytes, bytes]
    ocsp: dict[bytes, bytes]
    large: list[LargeBody] = field(default_factory=list)
    """SQLite: bodies written after the rows' ``INSERT`` (:func:`write_large_bodies`)."""


@dataclass
class _Pending:
    draft: Draft
    future: asyncio.Future[WrittenRecord]


class SqliteAppender:
    """Commits sealed batches through its own sqlite3 connection, without ever waiting.

    The connection runs with ``busy_timeout = 0``: if another connection holds
    the write lock, the first statement that needs it (the batch's ``INSERT``,
    or ``BEGIN IMMEDIATE``) fails at once, before anything is written, and
    ``commit`` returns False so the caller hands the batch to a thread.
    Autocheckpoint is off (the checkpointer thread does it).
    """

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        # cache_size: 64 MiB of pages instead of SQLite's 2 MiB, so the index leaves the
        # inserts touch (message ids are random) are not read back from the file each time.
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "wal_autocheckpoint=0",
            "busy_timeout=0",
            "cache_size=-65536",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        self._records = RecordInsert("qmark")
        names = ", ".join(c.name for c in tables.chains.columns)
        marks = ", ".join("?" * len(tables.chains.columns))
        self._chain_sql = f"INSERT INTO {tables.chains.name} ({names}) VALUES ({marks})"

    def commit(self, sealed: _Sealed, chain_row: dict[str, Any] | None) -> bool:
        """True once committed; False (nothing written) when another writer holds the lock.

        A batch of record rows alone is one ``INSERT`` in autocommit mode: SQLite
        makes the single statement its own transaction, which saves the
        ``BEGIN`` and ``COMMIT`` round trips through the library. Anything else
        (a new chain's row, new certificates) takes ``BEGIN IMMEDIATE``.
        """
        conn = self.conn
        if (
            chain_row is None
            and not sealed.certs
            and not sealed.ocsp
            and not sealed.large
            and (len(sealed.rows) <= RecordInsert.MAX_ROWS)
        ):
            try:
                self._records.run(conn, sealed.rows)
            except sqlite3.OperationalError as exc:
                if _busy(exc):
                    return False
                raise
            return True
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                return False
            raise
        try:
            if chain_row is not None:
                conn.execute(self._chain_sql, [chain_row[c.name] for c in tables.chains.columns])
            self._records.run(conn, sealed.rows)
            for table, items in (
                (tables.certificates, sealed.certs),
                (tables.ocsp_responses, sealed.ocsp),
            ):
                if items:
                    conn.executemany(
                        f"INSERT OR IGNORE INTO {table.name} (sha256, der) VALUES (?, ?)",
                        list(items.items()),
                    )
            write_large_bodies(conn, sealed.large)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            if sealed.large:
                shrink_memory(conn)
        return True

    def close(self) -> None:
        self.conn.close()


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes included (e.g. BUSY_SNAPSHOT)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def sqlite_file(engine: Engine) -> str | None:
    """The database file of a SQLite engine (None for other databases and in-memory ones)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


class LogWriter:
    """Seals and commits records for one node process (see module docstring).

    ``append`` queues the draft and schedules one flush per loop turn; the
    flush seals everything queued and commits it in place (SQLite) or hands it
    to the worker thread, which reports back with ``call_soon_threadsafe``.
    At most one batch is in flight; the next flush waits for it.
    """

    def __init__(
        self,
        engine: Engine,
        node_id: str,
        on_connect: Callable[[Connection], None] | None = None,
        inline: bool | None = None,
    ) -> None:
        self.engine = engine
        self.node_id = node_id
        self.stats = WriterStats()
        self._on_connect = on_connect
        self._inline_path = sqlite_file(engine) if inline is not False else None
        self._appender: SqliteAppender | None = None
        self._queue: list[_Pending] = []
        self._queued_at = 0.0
        self._scheduled = False
        self._in_flight = False
        self._closing = False
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="mlog-writer", daemon=True)
        self._known_certs: set[bytes] = set()
        self._known_ocsp: set[bytes] = set()
        self._node_json = json_string(node_id)
        self._start_chain()
        # worker-thread state
        self._conn: Connection | None = None
        self._insert_certs = insert_ignore(engine, tables.certificates)
        self._insert_ocsp = insert_ignore(engine, tables.ocsp_responses)
        self._insert_records = RecordInsert(engine.dialect.paramstyle)
        self._blob_bodies = engine.dialect.name == "sqlite"

    # ----- chain state (event loop only) -------------------------------------------------------
    def _start_chain(self) -> None:
        self.chain_id = new_chain_id(self.node_id)
        self._chain_json = json_string(self.chain_id)
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
        if self._inline_path is not None:
            self._appender = SqliteAppender(self._inline_path)
        self._thread.start()

    async def append(self, draft: Draft) -> WrittenRecord:
        """Queue ``draft``; returns where the record is once its batch is committed."""
        if self._closing or self._loop is None:
            raise LogWriteError("the message log is not running")
        assert self._idle is not None
        future: asyncio.Future[WrittenRecord] = self._loop.create_future()
        if not self._queue:
            self._queued_at = time.perf_counter()
        self._queue.append(_Pending(draft, future))
        self._idle.clear()
        if not self._scheduled and not self._in_flight:
            self._scheduled = True
            self._loop.call_soon(self._flush)
        # One pass of the loop: the flush scheduled above (by this or an earlier append of
        # the batch) runs before this task resumes, so an inline commit has already resolved
        # the future. Awaiting the future alone would take a second pass (its wake-up is
        # scheduled only when the flush resolves it) on every one of a message's four waits.
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            future.cancel()  # the record is still written; nobody is left to hear about it
            raise
        if future.done():
            return future.result()
        return await future  # the batch is in the worker thread, or queued behind one

    def _flush(self) -> None:
        """Seal everything queued and commit it (event loop; nothing in flight)."""
        self._scheduled = False
        if self._in_flight or not self._queue:
            self._settle()
            return
        batch, self._queue = self._queue, []
        started = time.perf_counter()
        self.stats.wait_seconds += started - self._queued_at
        sealed = self._seal(batch)
        chain_row = self._chain_row(sealed)
        if self._appender is not None:
            try:
                done = self._appender.commit(sealed, chain_row)
            except Exception as exc:
                self.stats.commit_seconds += time.perf_counter() - started
                self._finish(batch, sealed, exc)
                return
            if done:
                self.stats.commit_seconds += time.perf_counter() - started
                self.stats.inline_commits += 1
                self._finish(batch, sealed, None)
                return
        self._in_flight = True
        self._jobs.put(lambda: self._run_batch(batch, sealed, chain_row))

    def _seal(self, batch: list[_Pending]) -> _Sealed:
        """Chain ``batch`` after the head (event loop). The head moves only on commit."""
        chain_id, chain_json, node_id, node_json = (
            self.chain_id,
            self._chain_json,
            self.node_id,
            self._node_json,
        )
        seq, prev = self._seq, self._prev
        results: list[WrittenRecord] = []
        rows: list[tuple[Any, ...]] = []
        certs: dict[bytes, bytes] = {}
        ocsp: dict[bytes, bytes] = {}
        large: list[LargeBody] = []
        for item, record_id in zip(batch, ordered_record_ids(len(batch)), strict=True):
            draft = item.draft
            seq += 1
            row, prev = draft.seal_row(
                chain_id, chain_json, seq, prev, node_id, node_json, record_id
            )
            body = row[BODY_COLUMN]
            if self._blob_bodies and body is not None and len(body) >= LARGE_BODY:
                large.append((chain_id, seq, body))
                row = (*row[:BODY_COLUMN], None, *row[BODY_COLUMN + 1 :])
            rows.append(row)
            results.append(WrittenRecord(chain_id, seq, record_id, prev, draft.message_id))
            sha = draft.signer_cert_sha256
            if sha is not None and draft.signer_cert_der and sha not in self._known_certs:
                certs[sha] = draft.signer_cert_der
            sha = draft.ocsp_sha256
            if sha is not None and draft.ocsp_der and sha not in self._known_ocsp:
                ocsp[sha] = draft.ocsp_der
        return _Sealed(
            chain_id, not self._chain_stored, seq, prev, results, rows, certs, ocsp, large
        )

    def _chain_row(self, sealed: _Sealed) -> dict[str, Any] | None:
        if not sealed.first_batch_of_chain:
            return None
        now = utc_text()
        return {
            "chain_id": sealed.chain_id,
            "node_id": self.node_id,
            "started_at": now,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "heartbeat_at": now,
            "stamped_seq": 0,
        }

    def _finish(self, batch: list[_Pending], sealed: _Sealed, error: Exception | None) -> None:
        """Event loop: move the head (or start a new chain), resolve the futures."""
        self._in_flight = False
        if error is not None:
            self.stats.failures += 1
            self.stats.failed(error)
            log.error("message log write failed (%d records refused): %s", len(batch), error)
            if sealed.chain_id == self.chain_id:
                self._start_chain()
            failure = LogWriteError(f"could not store the log record: {error}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
        else:
            self.stats.succeeded()
            self._seq, self._prev, self._chain_stored = sealed.seq, sealed.prev, True
            self._known_certs.update(sealed.certs)
            self._known_ocsp.update(sealed.ocsp)
            self.stats.commits += 1
            self.stats.records += len(batch)
            for item, written in zip(batch, sealed.results, strict=True):
                if not item.future.done():  # the request may have been cancelled meanwhile
                    item.future.set_result(written)
        self._settle()

    def _settle(self) -> None:
        """After a commit: flush what queued meanwhile, or mark the writer idle."""
        assert self._idle is not None and self._loop is not None
        if self._in_flight:
            return  # the worker's report settles
        if self._queue:
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._flush)
        else:
            self._idle.set()

    async def probe(self) -> bool:
        """While commits fail and nothing is queued: try to store the current chain's row.

        True when the write committed (the failure is cleared). ``INSERT`` or
        ignore: a probe whose commit failed ambiguously may have stored the row,
        so the next one must not conflict with it. Messages queued meanwhile wait
        for the probe, as they would for a batch.
        """
        if (
            self.stats.failing_since is None
            or self._chain_stored
            or self._in_flight
            or self._queue
            or self._closing
            or self._loop is None
        ):
            return False
        assert self._idle is not None
        row = self._chain_row(self._seal([]))
        assert row is not None
        self._in_flight = True
        self._idle.clear()
        self.stats.probes += 1
        try:
            await asyncio.to_thread(self._store_chain_row, row)
        except Exception as exc:
            self.stats.failed(exc)
            log.debug("message log probe write failed: %s", exc)
            return False
        else:
            self._chain_stored = True
            self.stats.succeeded()
            return True
        finally:
            self._in_flight = False
            self._settle()

    def _store_chain_row(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert_ignore(self.engine, tables.chains), [row])

    async def close(self) -> None:
        """Commit what is queued, then stop the worker thread."""
        self._closing = True
        if self._idle is not None:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=30)
            except TimeoutError:
                log.error("message log writer did not finish within 30 s")
        if self._appender is not None:
            self._appender.close()
            self._appender = None
        if self._thread.is_alive():
            self._jobs.put(self._close_conn)
            self._jobs.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 30)

    # ----- worker thread -----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # _run_batch reports its own errors; this is a bug guard
                log.exception("message log worker job failed")
            # Not kept while waiting for the next job: it holds the batch and its bodies.
            del job

    def _run_batch(
        self, batch: list[_Pending], sealed: _Sealed, chain_row: dict[str, Any] | None
    ) -> None:
        """Worker thread: commit (waiting for the lock as long as it takes), report back."""
        assert self._loop is not None
        started = time.perf_counter()
        error: Exception | None = None
        try:
            self._store(sealed, chain_row)
        except Exception as exc:
            error = exc
        self.stats.commit_seconds += time.perf_counter() - started
        self._loop.call_soon_threadsafe(self._finish, batch, sealed, error)

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

    def _store(self, sealed: _Sealed, chain_row: dict[str, Any] | None) -> None:
        try:
            conn = self._connection()
            with conn.begin():
                if chain_row is not None:
                    conn.execute(insert(tables.chains), [chain_row])
                dbapi = conn.connection.dbapi_connection
                cursor = dbapi.cursor()  # type: ignore[union-attr]
                try:
                    self._insert_records.run(cursor, sealed.rows)
                finally:
                    cursor.close()
                if sealed.large:
                    write_large_bodies(dbapi, sealed.large)  # type: ignore[arg-type]
                if sealed.certs:
                    conn.execute(
                        self._insert_certs,
                        [{"sha256": k, "der": v} for k, v in sealed.certs.items()],
                    )
                if sealed.ocsp:
                    conn.execute(
                        self._insert_ocsp, [{"sha256": k, "der": v} for k, v in sealed.ocsp.items()]
                    )
        except Exception:
            self._close_conn()
            raise
        if sealed.large and self._conn is not None:
            shrink_memory(self._conn.connection.dbapi_connection)  # type: ignore[arg-type]
