"""Replay protection kept in the node database, shared by restarts and by every process.

A (client, message id) pair is recorded by one INSERT into ``seen_message_ids``
once the request's signature has been verified; the table's unique constraint
makes the first writer win, whichever process or host it is, so a second use
within the window is refused with ``Client.DuplicateMessageId``. A row older
than the window never blocks: a later use takes it over with a conditional
UPDATE, so correctness does not depend on the purge, which only bounds the
table's size. The rules are in docs/protocol.md §6.7.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import urllib.parse
from typing import TYPE_CHECKING, cast

from sqlalchemy import Engine, Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.globalconf import SETTINGS_DEFAULTS
from secnode.core.identifiers import ClientId
from secnode.store import models

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime
    from secnode.app.serve import RunningNode
    from secnode.core.globalconf import GlobalConf

log = logging.getLogger("secnode.replay")

SEEN = cast(Table, models.SeenMessageId.__table__)
#: Rows deleted per purge statement: keeps SQLite's write lock short while messages wait.
PURGE_BATCH = 5000
FRESHNESS = "ocsp_freshness_seconds"


def effective_window(replay_window: float, conf: GlobalConf | None) -> float:
    """How long a pair is remembered: ``[server] replay_window``, but never less than
    ``ocsp_freshness_seconds``, because a captured request verifies (its staple is fresh)
    for up to that long after it was first sent. Without a configuration, the default
    freshness (longer is the safe side: the purge then keeps rows longer)."""
    settings = conf.settings if conf is not None else {}
    freshness = settings.get(FRESHNESS, SETTINGS_DEFAULTS[FRESHNESS])
    return float(max(replay_window, freshness))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: The three per-message statements, built once and executed with parameters: building
#: ``insert(...).values(...)`` per call cost as much again as the insert itself (SQLAlchemy
#: compiles or looks up the statement by cache key each time; docs/performance.md, issue 14).
_INSERT = insert(SEEN)
_TAKE_OVER = (
    update(SEEN)
    .where(
        SEEN.c.client == bindparam("k_client"),
        SEEN.c.message_id == bindparam("k_message_id"),
        SEEN.c.seen_at <= bindparam("k_cutoff"),
    )
    .values(seen_at=bindparam("k_now"))
)
_EXISTS = select(SEEN.c.id).where(
    SEEN.c.client == bindparam("k_client"), SEEN.c.message_id == bindparam("k_message_id")
)


def _insert(engine: Engine, client: str, message_id: str, now: dt.datetime) -> bool:
    """The common case, one INSERT: False if the pair is already there (any age)."""
    try:
        with engine.begin() as conn:
            conn.execute(_INSERT, {"client": client, "message_id": message_id, "seen_at": now})
        return True
    except IntegrityError:
        return False


def _take_over_stale(
    engine: Engine, client: str, message_id: str, now: dt.datetime, cutoff: dt.datetime
) -> bool:
    """Re-date a row older than the window; atomic, so of racing processes one wins."""
    params = {"k_client": client, "k_message_id": message_id, "k_cutoff": cutoff, "k_now": now}
    with engine.begin() as conn:
        return conn.execute(_TAKE_OVER, params).rowcount == 1


def _exists(engine: Engine, client: str, message_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(_EXISTS, {"k_client": client, "k_message_id": message_id}).first()
    return found is not None


def record_first_use(
    engine: Engine, client: str, message_id: str, window: float, now: dt.datetime | None = None
) -> bool:
    """True if no use of (client, message id) is on record within ``window`` seconds
    (and records this one); False for a replay. Blocking: call it off the event loop."""
    now = now or _utcnow()
    cutoff = now - dt.timedelta(seconds=window)
    for _ in range(3):  # a purge may remove a stale row between our two statements
        if _insert(engine, client, message_id, now):
            return True
        if _take_over_stale(engine, client, message_id, now, cutoff):
            return True
        if _exists(engine, client, message_id):
            return False  # a row within the window: the replay
    return False  # still racing after three rounds: deny rather than guess


def purge(engine: Engine, window: float, now: dt.datetime | None = None) -> int:
    """Delete rows older than the window, in short batches; returns how many."""
    cutoff = (now or _utcnow()) - dt.timedelta(seconds=window)
    total = 0
    while True:
        batch = select(SEEN.c.id).where(SEEN.c.seen_at <= cutoff).limit(PURGE_BATCH)
        with engine.begin() as conn:
            count = conn.execute(delete(SEEN).where(SEEN.c.id.in_(batch))).rowcount
        total += count
        if count < PURGE_BATCH:
            return total


def _db_reason(exc: SQLAlchemyError) -> str:
    """One line for the log (SQLAlchemy's own text carries the SQL and a URL)."""
    orig = getattr(exc, "orig", None)
    return " ".join(str(orig or exc).split())[:300]


class InlineInsert:
    """The common case on SQLite, on the event loop: one INSERT that never waits.

    Its own sqlite3 connection runs with ``busy_timeout = 0`` and autocommit, so the
    single statement is its own transaction (durable as every node write is: WAL,
    ``synchronous=NORMAL``) and fails at once, before writing, when another connection
    holds the write lock. Anything but a clean insert — the pair already on record
    (fresh or stale), a busy lock, any other error — goes to :func:`record_first_use`
    in a thread, which decides exactly as before; so does every
    :data:`CHECKPOINT_EVERY`-th first use, so that SQLite checkpoints the WAL in that
    thread, never on the loop. It saves the thread hand-off (about
    as much CPU as the insert, and two context switches on a busy host) per message.
    """

    SQL = f"INSERT INTO {SEEN.name} (client, message_id, seen_at) VALUES (?, ?, ?)"
    #: About 1000 WAL pages (SQLite's automatic checkpoint size) of replay rows.
    CHECKPOINT_EVERY = 256

    def __init__(self, engine: Engine) -> None:
        self.path = engine.url.database or ""
        self.conn: sqlite3.Connection | None = None  # opened at first use (the file exists)
        self.inserts = 0
        # seen_at exactly as SQLAlchemy stores it, so the window's comparisons still hold
        self._when = SEEN.c.seen_at.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)

    @classmethod
    def for_engine(cls, engine: Engine) -> InlineInsert | None:
        """One for a SQLite file; None for PostgreSQL (its driver would block the loop)."""
        if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
            return None
        return cls(engine)

    def try_insert(self, client: str, message_id: str, now: dt.datetime) -> bool:
        """True once recorded; False when the thread path must decide (nothing written)."""
        self.inserts += 1
        if self.inserts % self.CHECKPOINT_EVERY == 0:
            return False  # this one commits in the thread: SQLite checkpoints the WAL there
        when = self._when(now) if self._when is not None else now
        try:
            if self.conn is None:
                self.conn = self._connect()
            self.conn.execute(self.SQL, (client, message_id, when))
        except sqlite3.Error:  # a duplicate, a busy lock, anything: the careful path decides
            return False
        return True

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"file:{urllib.parse.quote(self.path)}?mode=rw",  # never creates the node database
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=0,
        )
        # No automatic checkpoint (and its fsyncs) on the event loop: every
        # CHECKPOINT_EVERY-th first use takes the thread path, whose commit checkpoints there.
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=0",
            "wal_autocheckpoint=0",
        ):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class ReplayWindow:
    """The node's replay protection: one row per authentic (client, message id)."""

    def __init__(self, engine: Engine, replay_window: float) -> None:
        self.engine = engine
        self.replay_window = replay_window
        self._inline = InlineInsert.for_engine(engine)

    def close(self) -> None:
        """Close the inline connection (the engine is the node's, closed with it)."""
        if self._inline is not None:
            self._inline.close()

    def window(self, conf: GlobalConf | None) -> float:
        return effective_window(self.replay_window, conf)

    async def remember(self, client: ClientId, message_id: str, conf: GlobalConf | None) -> None:
        """Record this use of ``message_id`` by ``client``, or refuse it as a replay.

        Deny by default: if the database cannot record the pair, the request is refused
        (it could be a replay we cannot see), and the client may retry with the same id.
        """
        window = self.window(conf)
        if self._inline is not None and self._inline.try_insert(str(client), message_id, _utcnow()):
            return
        try:
            first = await asyncio.to_thread(
                record_first_use, self.engine, str(client), message_id, window
            )
        except SQLAlchemyError as exc:
            log.error(
                "replay window: cannot record message id %r of %s: %s",
                message_id,
                client,
                _db_reason(exc),
            )
            raise XRoadError(
                errors.SERVER_PROXY_INTERNAL_ERROR,
                "the provider node cannot record the message id for replay "
                "protection (its database is unavailable); not processed",
            ) from exc
        if not first:
            raise XRoadError(
                errors.DUPLICATE_MESSAGE_ID,
                f"message id {message_id!r} was already used by {client} "
                f"within the replay window ({window:g} s)",
            )

    def purge_interval(self, conf: GlobalConf | None) -> float:
        """A quarter of the window, between 1 s and 60 s: rows live at most 1.25 windows."""
        return min(60.0, max(1.0, self.window(conf) / 4))


async def purge_loop(rt: NodeRuntime, running: RunningNode | None = None) -> None:
    """Every process purges (DELETE is idempotent); none depends on it for correctness."""
    while True:
        await asyncio.sleep(rt.replay.purge_interval(rt.conf))
        try:
            removed = await asyncio.to_thread(purge, rt.replay.engine, rt.replay.window(rt.conf))
            if removed:
                log.debug("replay window: purged %d expired message ids", removed)
        except SQLAlchemyError as exc:
            log.warning("replay window: purge failed (will retry): %s", _db_reason(exc))
