"""Batch time-stamping: one RFC 3161 token over the Merkle root of each run of new records.

Every ``timestamping_interval`` the task takes, per chain, the records after
the chain's ``stamped_seq`` (up to ``timestamp_batch_size`` at a time), builds
the RFC 6962 Merkle root over their hashes, asks the approved TSAs in the
global configuration's order until one answers, verifies the token (approved
TSA, chain to an approved CA, imprint = root, nonce), and stores the batch
with its leaves. ``stamped_seq`` moves with a compare-and-set in the same
transaction, so two processes can never store overlapping batches for a chain.

Which chains: the ones this process writes, plus *orphans*: chains of this
node whose writer is gone (its process is dead on this host, or it has not
sent a heartbeat for a few intervals), e.g. the tail left by a killed process.

Failure: while records stay unstamped because no TSA answered, the node keeps
exchanging for the global configuration's ``acceptable_timestamp_failure_period``
counted from the oldest unstamped record; after that the message path refuses
new requests (:meth:`Stamper.refusal`) until a round stamps the backlog.

The oldest unstamped record is read from the database, over **every** chain of
the node (this process's, orphans', other live processes'), not remembered in
memory: a restart or a crash loop cannot reset the clock. The
message path reads a cached value, refreshed every :data:`BACKLOG_REFRESH`
seconds, after every round and once before the node serves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, Engine, and_, func, select, update

from certs import tsa_client
from certs.tsa import TSAError
from secnode.core.globalconf import GlobalConf, setting
from secnode.core.messagelog import batch_id_for, merkle_root
from secnode.core.messagelog.record import parse_time
from secnode.messagelog import tables
from secnode.messagelog.convert import utc_text
from secnode.messagelog.writer import insert_ignore

log = logging.getLogger("secnode.messagelog.stamper")

#: A chain whose writer has not sent a heartbeat for this many intervals is adopted.
ORPHAN_INTERVALS = 3
MIN_ORPHAN_SECONDS = 10.0
TSA_TIMEOUT = 10.0
#: Seconds between two reads of the node's oldest unstamped record (at most the interval).
BACKLOG_REFRESH = 2.0


class StampingError(Exception):
    """No approved TSA produced a valid token (the message says what each answered)."""


@dataclass
class StampState:
    """What ``/health``, ``/metrics`` and the refusal check read."""

    last_success: dt.datetime | None = None
    last_attempt: dt.datetime | None = None
    last_error: str | None = None
    #: the oldest record not yet stamped, over every chain of the node (from the database)
    oldest_unstamped: dt.datetime | None = None
    backlog: int = 0  # records of the node's chains not yet stamped (from the database)
    batches: int = 0
    records: int = 0
    rounds: int = 0

    @property
    def failing_since(self) -> dt.datetime | None:
        """The oldest unstamped record while stamping fails (None: not failing)."""
        return self.oldest_unstamped if self.last_error is not None else None


@dataclass(frozen=True)
class _Chain:
    chain_id: str
    stamped_seq: int


def _alive_here(host: str, pid: int) -> bool:
    """False only when the chain's writer ran on this host and that process is gone."""
    if host != socket.gethostname()[:255]:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Stamper:
    """Time-stamps one node's chains (see module docstring)."""

    def __init__(
        self,
        engine: Engine,
        node_id: str,
        own_chains: Callable[[], Sequence[str]],
        conf: Callable[[], GlobalConf | None],
        batch_size: int,
        interval_override: int = 0,
    ) -> None:
        self.engine = engine
        self.node_id = node_id
        self.own_chains = own_chains
        self.conf = conf
        self.batch_size = max(1, batch_size)
        self.interval_override = interval_override
        self.state = StampState()
        self._session: aiohttp.ClientSession | None = None
        self._insert_cert = insert_ignore(engine, tables.certificates)
        self._lock = asyncio.Lock()
        self._heartbeat_sent = 0.0  # time.monotonic() of the last heartbeat written

    # ----- settings --------------------------------------------------------------------------
    def interval(self) -> float:
        if self.interval_override > 0:
            return float(self.interval_override)
        return float(setting(self.conf(), "timestamping_interval"))

    def failure_period(self) -> float:
        return float(setting(self.conf(), "acceptable_timestamp_failure_period"))

    # ----- the message path ------------------------------------------------------------------
    def refusal(self) -> str | None:
        """Why new requests must be refused now (None: exchange may go on).

        Refused once any record of the node has waited longer than the acceptable
        failure period for its time-stamp, whoever wrote it and whenever this
        process started.
        """
        oldest = self.state.oldest_unstamped
        if oldest is None or time.time() - oldest.timestamp() <= self.failure_period():
            return None
        return (
            "time-stamping has failed for longer than the acceptable failure period "
            f"({self.failure_period():g} s; records unstamped since {oldest.isoformat()}): "
            f"{self.state.last_error or 'no time-stamping round has stamped them yet'}"
        )

    # ----- the task --------------------------------------------------------------------------
    async def run(self) -> None:
        """A round at once (a restarted node stamps what it inherited), then every interval."""
        while True:
            try:
                await self.run_round()
            except Exception:  # never let the task die; the state reports the failure
                log.exception("time-stamping round failed unexpectedly")
            await asyncio.sleep(self.interval())

    async def watch(self) -> None:
        """Keep the node's oldest unstamped record fresh for :meth:`refusal`."""
        while True:
            await asyncio.sleep(min(BACKLOG_REFRESH, self.interval()))
            try:
                await self.refresh()
            except Exception as exc:  # a failed read keeps the last known state
                log.warning("cannot read the time-stamping backlog: %s", exc)

    async def refresh(self) -> None:
        """Read the oldest unstamped record and the backlog of every chain of the node."""
        self.state.oldest_unstamped, self.state.backlog = await asyncio.to_thread(self._backlog)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run_round(self) -> int:
        """Stamp every backlog this process is responsible for; returns records stamped."""
        async with self._lock:
            return await self._round()

    async def _round(self) -> int:
        state = self.state
        state.rounds += 1
        now = dt.datetime.now(dt.UTC)
        state.last_attempt = now
        own = list(self.own_chains())
        chains = await asyncio.to_thread(self._chains_to_stamp, own)
        stamped, error = 0, None
        for chain in chains:
            try:
                stamped += await self._stamp_chain(chain)
            except StampingError as exc:
                error = str(exc)
                break
        await self.refresh()
        if error is None:
            if stamped:
                state.last_success = dt.datetime.now(dt.UTC)
            state.last_error = None
        else:
            if state.last_error != error:
                log.warning("time-stamping failed (%d records waiting): %s", state.backlog, error)
            state.last_error = error
        return stamped

    async def _stamp_chain(self, chain: _Chain) -> int:
        done = 0
        stamped_seq = chain.stamped_seq
        while True:
            leaves = await asyncio.to_thread(self._unstamped, chain.chain_id, stamped_seq)
            if not leaves:
                return done
            first, last = stamped_seq + 1, stamped_seq + len(leaves)
            root = await asyncio.to_thread(merkle_root, leaves)
            token, tsa_name, tsa_url, gen_time, tsa_der = await self._token(root)
            stored = await asyncio.to_thread(
                self._store,
                chain.chain_id,
                first,
                last,
                root,
                token,
                tsa_name,
                tsa_url,
                gen_time,
                b"".join(leaves),
                tsa_der,
            )
            if not stored:  # another process stamped this range first
                return done
            self.state.batches += 1
            self.state.records += len(leaves)
            done += len(leaves)
            stamped_seq = last
            if len(leaves) < self.batch_size:
                return done

    # ----- TSA -------------------------------------------------------------------------------
    async def _token(self, root: bytes) -> tuple[bytes, str, str, dt.datetime, bytes]:
        conf = self.conf()
        if conf is None:
            raise StampingError("no global configuration: the approved TSAs are unknown")
        if not conf.tsas:
            raise StampingError("the global configuration lists no approved TSA")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        trusted = [*(t.cert for t in conf.tsas), *conf.ca_certs]
        problems = []
        for tsa in conf.tsas:
            try:
                token, info = await tsa_client.fetch_token(
                    tsa.url,
                    root,
                    "sha256",
                    trusted,
                    session=self._session,
                    timeout=TSA_TIMEOUT,
                )
            except TSAError as exc:
                problems.append(f"{tsa.name}: {exc}")
                continue
            if not conf.is_tsa_approved(info.tsa_cert):
                problems.append(
                    f"{tsa.name}: token signed by a TSA certificate that is not "
                    "approved in the global configuration"
                )
                continue
            der = info.tsa_cert.public_bytes(serialization.Encoding.DER)
            return token, tsa.name, tsa.url, info.gen_time, der
        raise StampingError("; ".join(problems))

    # ----- database (worker threads) ---------------------------------------------------------
    def _chains_to_stamp(self, own: Sequence[str]) -> list[_Chain]:
        """Own chains (heartbeat refreshed) and orphaned chains with records to stamp.

        The heartbeat is written when a third of the orphan threshold has passed,
        not every round: each write takes the database's write lock, which the
        message path's commits would then have to wait for.
        """
        now = dt.datetime.now(dt.UTC)
        stale_seconds = max(MIN_ORPHAN_SECONDS, ORPHAN_INTERVALS * self.interval())
        stale = utc_text(now - dt.timedelta(seconds=stale_seconds))
        c = tables.chains
        beat = time.monotonic() - self._heartbeat_sent >= stale_seconds / 3
        with self.engine.begin() as conn:
            if own and beat:
                conn.execute(
                    update(c).where(c.c.chain_id.in_(own)).values(heartbeat_at=utc_text(now))
                )
                self._heartbeat_sent = time.monotonic()
            rows = conn.execute(
                select(c.c.chain_id, c.c.stamped_seq, c.c.heartbeat_at, c.c.host, c.c.pid)
                .where(c.c.node_id == self.node_id)
                .order_by(c.c.started_at)
            ).all()
            chosen = []
            for row in rows:
                mine = row.chain_id in own
                if not (mine or row.heartbeat_at < stale or not _alive_here(row.host, row.pid)):
                    continue
                if self._last_seq(conn, row.chain_id) > int(row.stamped_seq):
                    chosen.append(_Chain(row.chain_id, int(row.stamped_seq)))
        return chosen

    @staticmethod
    def _last_seq(conn: Connection, chain_id: str) -> int:
        r = tables.records
        last = conn.execute(select(func.max(r.c.seq)).where(r.c.chain_id == chain_id)).scalar()
        return int(last or 0)

    def _unstamped(self, chain_id: str, stamped_seq: int) -> list[bytes]:
        """Record hashes after ``stamped_seq``, contiguous from ``stamped_seq + 1``."""
        r = tables.records
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(r.c.seq, r.c.record_hash)
                    .where(r.c.chain_id == chain_id, r.c.seq > stamped_seq)
                    .order_by(r.c.seq)
                    .limit(self.batch_size)
                )
                .tuples()
                .all()
            )  # plain tuples: a round reads up to batch_size rows
        leaves = []
        expected = stamped_seq + 1
        for seq, record_hash in rows:
            if int(seq) != expected:
                log.error(
                    "chain %s: seq %d missing from the database; stamping stops there",
                    chain_id,
                    expected,
                )
                break
            leaves.append(bytes(record_hash))
            expected += 1
        return leaves

    def _store(
        self,
        chain_id: str,
        first: int,
        last: int,
        root: bytes,
        token: bytes,
        tsa_name: str,
        tsa_url: str,
        gen_time: dt.datetime,
        leaves: bytes,
        tsa_der: bytes,
    ) -> bool:
        c = tables.chains
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(c)
                .where(and_(c.c.chain_id == chain_id, c.c.stamped_seq == first - 1))
                .values(stamped_seq=last)
            ).rowcount
            if moved != 1:
                conn.rollback()
                return False
            conn.execute(
                tables.batches.insert(),
                [
                    {
                        "batch_id": batch_id_for(chain_id, first, last),
                        "chain_id": chain_id,
                        "first_seq": first,
                        "last_seq": last,
                        "root": root,
                        "token": token,
                        "tsa_name": tsa_name,
                        "tsa_url": tsa_url,
                        "gen_time": utc_text(gen_time),
                        "leaves": leaves,
                    }
                ],
            )
            conn.execute(
                self._insert_cert, [{"sha256": hashlib.sha256(tsa_der).digest(), "der": tsa_der}]
            )
        return True

    def _backlog(self) -> tuple[dt.datetime | None, int]:
        """(time of the oldest unstamped record, number unstamped) over the node's chains.

        One primary-key probe per chain (the record after its ``stamped_seq``),
        then the last seq of the chains that have one: cheap enough to run every
        :data:`BACKLOG_REFRESH` seconds whatever the size of the log.
        """
        c, r = tables.chains, tables.records
        first_unstamped = (
            select(r.c.time)
            .where(r.c.chain_id == c.c.chain_id, r.c.seq == c.c.stamped_seq + 1)
            .scalar_subquery()
        )
        oldest: dt.datetime | None = None
        count = 0
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(c.c.chain_id, c.c.stamped_seq, first_unstamped.label("first_time")).where(
                    c.c.node_id == self.node_id
                )
            ).all()
            for row in rows:
                if row.first_time is None:
                    continue  # fully stamped
                count += self._last_seq(conn, row.chain_id) - int(row.stamped_seq)
                when = parse_time(row.first_time, "record time")
                oldest = when if oldest is None else min(oldest, when)
        return oldest, count
