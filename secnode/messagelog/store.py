"""Reading the log back: evidence dumps for the verifier, search, show, export, archiving.

Everything here reads rows as they are and hands them to the pure core; it
never repairs or recomputes anything an auditor must judge. The one derived
value is the Merkle audit paths, rebuilt from the leaves each batch row kept
at stamping time (``docs/audit.md`` §7), never from the records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, Select, and_, func, or_, select

from secnode.core.messagelog import (
    LogEvidence,
    LogRecord,
    RecordProof,
    StampedBatch,
    inclusion_proofs,
)
from secnode.core.messagelog.record import format_time
from secnode.messagelog import tables
from secnode.messagelog.bodyfiles import BodyStore
from secnode.messagelog.convert import record_of


@dataclass(frozen=True)
class StoredBatch:
    batch: StampedBatch
    leaves: tuple[bytes, ...]
    gen_time: str

    def proofs(self) -> list[RecordProof]:
        """Audit paths from the stamping-time leaves.

        If the leaves no longer hash to the root (the row was edited) the
        paths are still built from them: they then fail against the root and
        the verifier names the record, rather than the log hiding the batch.
        """
        b = self.batch
        if len(self.leaves) != b.size:
            return []
        _, paths = inclusion_proofs(list(self.leaves))
        return [RecordProof(b.batch_id, b.first_seq + i, i, tuple(p)) for i, p in enumerate(paths)]


def _batch_of(row: Any) -> StoredBatch:
    m = row._mapping
    leaves = bytes(m["leaves"])
    return StoredBatch(
        StampedBatch(
            batch_id=m["batch_id"],
            chain_id=m["chain_id"],
            first_seq=int(m["first_seq"]),
            last_seq=int(m["last_seq"]),
            root=bytes(m["root"]),
            token=bytes(m["token"]),
            tsa_name=m["tsa_name"],
            tsa_url=m["tsa_url"],
        ),
        tuple(leaves[i : i + 32] for i in range(0, len(leaves), 32)),
        m["gen_time"],
    )


@dataclass(frozen=True)
class SearchFilter:
    """``secnode log search`` criteria; every given one must match."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    client: str | None = None
    service: str | None = None
    message_id: str | None = None
    user_id: str | None = None
    data_subject: str | None = None
    direction: str | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        r = tables.records
        if self.since is not None:
            query = query.where(r.c.time >= format_time(self.since))
        if self.until is not None:
            query = query.where(r.c.time <= format_time(self.until))
        for column, value in (
            (r.c.message_id, self.message_id),
            (r.c.user_id, self.user_id),
            (r.c.data_subject, self.data_subject),
            (r.c.direction, self.direction),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.client is not None:  # a member matches its subsystems too
            query = query.where(
                or_(r.c.client_id == self.client, r.c.client_id.startswith(self.client + "/"))
            )
        if self.service is not None:  # a subsystem or member matches its services
            query = query.where(
                or_(r.c.service_id == self.service, r.c.service_id.startswith(self.service + "/"))
            )
        return query

    def matches(self, record: LogRecord) -> bool:
        """The same test on a record read from an archive."""

        def under(value: str | None, prefix: str | None) -> bool:
            return prefix is None or (
                value is not None and (value == prefix or value.startswith(prefix + "/"))
            )

        return (
            (self.since is None or record.time >= self.since)
            and (self.until is None or record.time <= self.until)
            and under(record.client_id, self.client)
            and under(record.service_id, self.service)
            and all(
                want is None or have == want
                for have, want in (
                    (record.message_id, self.message_id),
                    (record.user_id, self.user_id),
                    (record.data_subject, self.data_subject),
                    (record.direction.value, self.direction),
                )
            )
        )


class LogStore:
    """Read access to one node's log in its database."""

    def __init__(self, engine: Engine, node_id: str, bodies: BodyStore | None = None) -> None:
        self.engine = engine
        self.node_id = node_id
        self.bodies = bodies
        """The node's body files (records name theirs relative to it; None: the
        current directory's ``messagelog-bodies``)."""

    # ----- chains and records ------------------------------------------------------------------
    def chain_rows(self) -> list[Any]:
        c = tables.chains
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(c).where(c.c.node_id == self.node_id).order_by(c.c.started_at)
                ).all()
            )

    def chain_ids(self) -> list[str]:
        return [row.chain_id for row in self.chain_rows()]

    def records(self, chain_id: str, first: int = 1, last: int | None = None) -> list[LogRecord]:
        r = tables.records
        query = select(r).where(r.c.chain_id == chain_id, r.c.seq >= first)
        if last is not None:
            query = query.where(r.c.seq <= last)
        with self.engine.connect() as conn:
            return [record_of(row, self.bodies) for row in conn.execute(query.order_by(r.c.seq))]

    def record(self, record_id: str) -> LogRecord | None:
        r = tables.records
        with self.engine.connect() as conn:
            row = conn.execute(select(r).where(r.c.record_id == record_id)).first()
        return None if row is None else record_of(row, self.bodies)

    def search(self, criteria: SearchFilter, limit: int = 1000) -> list[LogRecord]:
        r = tables.records
        chains = select(tables.chains.c.chain_id).where(tables.chains.c.node_id == self.node_id)
        query = criteria.apply(select(r).where(r.c.chain_id.in_(chains)))
        query = query.order_by(r.c.time, r.c.chain_id, r.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [record_of(row, self.bodies) for row in conn.execute(query)]

    def last_seq(self, chain_id: str) -> int:
        r = tables.records
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(r.c.seq)).where(r.c.chain_id == chain_id))
            return int(value.scalar() or 0)

    def seq_at_or_before(self, chain_id: str, until: dt.datetime) -> int:
        """The last seq of ``chain_id`` whose record time is at or before ``until``."""
        r = tables.records
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.max(r.c.seq)).where(
                    r.c.chain_id == chain_id, r.c.time <= format_time(until)
                )
            )
            return int(value.scalar() or 0)

    # ----- batches -----------------------------------------------------------------------------
    def batches(
        self, chain_id: str | None = None, first: int | None = None, last: int | None = None
    ) -> list[StoredBatch]:
        """Batches (of this node's chains), optionally those overlapping ``first..last``."""
        b = tables.batches
        query = select(b)
        if chain_id is None:
            chains = select(tables.chains.c.chain_id).where(tables.chains.c.node_id == self.node_id)
            query = query.where(b.c.chain_id.in_(chains))
        else:
            query = query.where(b.c.chain_id == chain_id)
        if first is not None:
            query = query.where(b.c.last_seq >= first)
        if last is not None:
            query = query.where(b.c.first_seq <= last)
        with self.engine.connect() as conn:
            return [
                _batch_of(row) for row in conn.execute(query.order_by(b.c.chain_id, b.c.first_seq))
            ]

    def batch_for(self, chain_id: str, seq: int) -> StoredBatch | None:
        found = self.batches(chain_id, seq, seq)
        return found[0] if found else None

    # ----- certificates and OCSP ---------------------------------------------------------------
    def certificates(self) -> list[x509.Certificate]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.certificates.c.der)).all()
        return [x509.load_der_x509_certificate(bytes(row.der)) for row in rows]

    def ocsp_responses(self, digests: Iterable[bytes] | None = None) -> list[bytes]:
        o = tables.ocsp_responses
        query = select(o.c.der)
        if digests is not None:
            wanted = sorted(set(digests))
            if not wanted:
                return []
            query = query.where(o.c.sha256.in_(wanted))
        with self.engine.connect() as conn:
            return [bytes(row.der) for row in conn.execute(query)]

    # ----- evidence ----------------------------------------------------------------------------
    def evidence(
        self, records: Sequence[LogRecord], extra_certs: Sequence[x509.Certificate] = ()
    ) -> LogEvidence:
        """``records`` with the batches, proofs, certificates and OCSP responses they need."""
        batches: dict[str, StoredBatch] = {}
        by_chain: dict[str, list[int]] = {}
        for record in records:
            by_chain.setdefault(record.chain_id, []).append(record.seq)
        for chain_id, seqs in by_chain.items():
            for stored in self.batches(chain_id, min(seqs), max(seqs)):
                batches[stored.batch.batch_id] = stored
        wanted = {(r.chain_id, r.seq) for r in records}
        proofs = [
            p
            for stored in batches.values()
            for p in stored.proofs()
            if (stored.batch.chain_id, p.seq) in wanted
        ]
        certs = _dedupe([*self.certificates(), *extra_certs])
        ocsp = self.ocsp_responses(r.ocsp_sha256 for r in records if r.ocsp_sha256)
        kept_batches = [
            s.batch
            for s in batches.values()
            if any(s.batch.covers(chain, seq) for chain, seq in wanted)
        ]
        return LogEvidence(list(records), kept_batches, proofs, certs, ocsp)

    def live_evidence(self, extra_certs: Sequence[x509.Certificate] = ()) -> LogEvidence:
        """The whole live log of this node, in stored order (chain, seq)."""
        r = tables.records
        chains = select(tables.chains.c.chain_id).where(tables.chains.c.node_id == self.node_id)
        with self.engine.connect() as conn:
            records = [
                record_of(row, self.bodies)
                for row in conn.execute(
                    select(r).where(r.c.chain_id.in_(chains)).order_by(r.c.chain_id, r.c.seq)
                )
            ]
        stored = self.batches()
        return LogEvidence(
            records,
            [s.batch for s in stored],
            [p for s in stored for p in s.proofs()],
            _dedupe([*self.certificates(), *extra_certs]),
            self.ocsp_responses(),
        )

    # ----- archives ----------------------------------------------------------------------------
    def archive_rows(self) -> list[Any]:
        a = tables.archives
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(a).where(a.c.node_id == self.node_id).order_by(a.c.sequence)
                ).all()
            )

    def archived_to(self, chain_id: str) -> int:
        """The last seq of ``chain_id`` already in an archive (0: none)."""
        a = tables.archives
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.max(a.c.last_seq)).where(
                    and_(a.c.node_id == self.node_id, a.c.chain_id == chain_id)
                )
            )
            return int(value.scalar() or 0)


def _dedupe(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(
            hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest(), cert
        )
    return list(seen.values())
