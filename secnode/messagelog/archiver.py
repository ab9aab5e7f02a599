"""Archives: closed, stamped ranges of records written to signed zip files, then purged.

One run, per chain of this node (oldest first): the records after the last
archived seq, up to the last stamped seq (and at most up to ``until``), are
cut into pieces of at most ``max_records`` and each piece is written with the
core's :func:`write_archive`: records, the batches and proofs covering them,
certificates and OCSP responses, a manifest signed with the node's sign key
and the hash of the previous archive. All archives of a node form one
numbered sequence; the ``mlog_archives`` primary key (node, sequence) makes a
second archiver racing for the same number fail instead of forking the chain.

A file is streamed to a temporary name (body files are copied into it a piece at a
time, never held whole), fsynced, read back and checked against its manifest (again
streaming), and renamed before its row is committed, so a row never names a file that
is not complete on disk. Purging
(after ``retention_days``) re-reads the file and checks its hash first, then
deletes the archived rows and the batches wholly inside purged ranges.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from sqlalchemy import Engine, and_, delete, insert, select, update

from certs.keys import Signer
from secnode.core.messagelog import (
    ArchiveFormatError,
    LoadedArchive,
    archive_filename,
    read_archive,
    write_archive,
)
from secnode.messagelog import tables
from secnode.messagelog.bodyfiles import BodyStore
from secnode.messagelog.convert import utc_text
from secnode.messagelog.store import LogStore

log = logging.getLogger("secnode.messagelog.archiver")

MAX_RECORDS = 20_000
#: Body-file bytes per archive: a piece ends before the record that would pass it; a
#: larger body is an archive of its own. Archives are streamed (memory does not grow with
#: them); this keeps one file well inside the readers' limits (:class:`ReadLimits`: 1 GiB
#: an entry, 4 GiB a container) and of a size that copies off the node in one go.
MAX_BODY_BYTES = 1024 * 1024 * 1024

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ArchiveResult:
    sequence: int
    path: Path
    chain_id: str
    first_seq: int
    last_seq: int
    records: int


@dataclass(frozen=True)
class Plan:
    """One chain's archivable range (``first..last``), before cutting it into files."""

    chain_id: str
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


class Archiver:
    """Writes this node's archives into ``directory`` (see module docstring)."""

    def __init__(
        self,
        engine: Engine,
        node_id: str,
        directory: Path,
        signer_cert: x509.Certificate,
        signer: Signer,
        extra_certs: Sequence[x509.Certificate] = (),
        max_records: int = MAX_RECORDS,
        bodies: BodyStore | None = None,
    ) -> None:
        self.engine = engine
        self.store = LogStore(engine, node_id, bodies)
        self.node_id = node_id
        self.directory = directory
        self.signer_cert = signer_cert
        self.signer = signer
        self.extra_certs = list(extra_certs)
        self.max_records = max(1, max_records)

    def plan(self, until: dt.datetime | None = None) -> list[Plan]:
        """What a run would archive: per chain, the stamped, unarchived range."""
        plans = []
        for row in self.store.chain_rows():
            first = self.store.archived_to(row.chain_id) + 1
            last = int(row.stamped_seq)
            if until is not None:
                last = min(last, self.store.seq_at_or_before(row.chain_id, until))
            if last >= first:
                plans.append(Plan(row.chain_id, first, last))
        return plans

    def run(
        self, until: dt.datetime | None = None, progress: Progress | None = None
    ) -> list[ArchiveResult]:
        """Archive every planned range; ``progress(n)`` is told of each n records written."""
        results = []
        for plan in self.plan(until):
            start = plan.first
            while start <= plan.last:
                end = self._cut(plan.chain_id, start, min(plan.last, start + self.max_records - 1))
                results.append(self._write_one(plan.chain_id, start, end))
                if progress is not None:
                    progress(end - start + 1)
                start = end + 1
        return results

    def _cut(self, chain_id: str, start: int, end: int) -> int:
        """The last seq of the piece from ``start``: at most :data:`MAX_BODY_BYTES` of
        body files, and at least one record."""
        r = tables.records
        query = (
            select(r.c.seq, r.c.body_size)
            .where(r.c.chain_id == chain_id, r.c.seq >= start, r.c.seq <= end, r.c.body_file)
            .order_by(r.c.seq)
        )
        total = 0
        with self.engine.connect() as conn:
            for seq, size in conn.execute(query):
                total += int(size)
                if total > MAX_BODY_BYTES:
                    return max(start, int(seq) - 1)
        return end

    def _write_one(self, chain_id: str, first: int, last: int) -> ArchiveResult:
        records = self.store.records(chain_id, first, last)
        if (
            not records
            or records[0].seq != first
            or records[-1].seq != last
            or (len(records) != last - first + 1)
        ):
            raise ArchiveFormatError(
                f"chain {chain_id}: seqs {first}..{last} are not all in the database; "
                "run 'secnode log verify' to see what is missing"
            )
        evidence = self.store.evidence(records, self.extra_certs)
        previous = self.store.archive_rows()
        sequence = (previous[-1].sequence + 1) if previous else 1
        previous_hash = bytes(previous[-1].sha256) if previous else None
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".mlog-{sequence:06d}-{os.urandom(4).hex()}.tmp"
        try:
            with open(tmp, "wb") as fh:  # streamed: body files are copied a piece at a time
                write_archive(
                    evidence,
                    fh,
                    node_id=self.node_id,
                    signer_cert=self.signer_cert,
                    signer=self.signer,
                    extra_certs=self.extra_certs,
                    sequence=sequence,
                    previous_archive_sha256=previous_hash,
                    archive_id=f"mlog-{sequence:06d}-{os.urandom(4).hex()}",
                    description=f"chain {chain_id} seqs {first}..{last}",
                )
                fh.flush()
                os.fsync(fh.fileno())
            loaded = read_back(tmp)
            manifest = loaded.manifest
            name = archive_filename(manifest, loaded.sha256)
            path = self.directory / name
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(tables.archives),
                    [
                        {
                            "node_id": self.node_id,
                            "sequence": sequence,
                            "archive_id": manifest.archive_id,
                            "file_name": name,
                            "sha256": loaded.sha256,
                            "previous_sha256": previous_hash,
                            "chain_id": chain_id,
                            "first_seq": first,
                            "last_seq": last,
                            "record_count": len(records),
                            "first_time": utc_text(manifest.first_time),
                            "last_time": utc_text(manifest.last_time),
                            "created_at": utc_text(manifest.created_at),
                            "purged_at": None,
                        }
                    ],
                )
        except Exception:
            path.unlink(missing_ok=True)  # another archiver took this sequence number
            raise
        log.info(
            "archived %s seqs %d..%d as %s (sequence %d)", chain_id, first, last, name, sequence
        )
        return ArchiveResult(sequence, path, chain_id, first, last, len(records))

    # ----- retention ---------------------------------------------------------------------------
    def purge(self, retention_days: int, now: dt.datetime | None = None) -> int:
        """Delete rows archived more than ``retention_days`` ago; returns records deleted."""
        cutoff = utc_text((now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=retention_days))
        a, r, b = tables.archives, tables.records, tables.batches
        deleted = 0
        blocked: set[str] = set()  # chains with an earlier archive that could not be purged
        for row in self.store.archive_rows():
            if row.purged_at is not None:
                continue
            if row.created_at > cutoff or row.chain_id in blocked:
                blocked.add(row.chain_id)
                continue
            path = self.directory / row.file_name
            try:
                intact = read_archive(path).sha256 == bytes(row.sha256)
                problem = "it does not have the recorded hash"
            except ArchiveFormatError as exc:
                intact, problem = False, f"it is unreadable: {exc}"
            if not intact:
                log.error(
                    "not purging %s seqs %d..%d: archive %s: %s",
                    row.chain_id,
                    row.first_seq,
                    row.last_seq,
                    path,
                    problem,
                )
                blocked.add(row.chain_id)
                continue
            with self.engine.begin() as conn:
                in_range = (
                    r.c.chain_id == row.chain_id,
                    r.c.seq >= row.first_seq,
                    r.c.seq <= row.last_seq,
                )
                files = {
                    bytes(d)
                    for (d,) in conn.execute(
                        select(r.c.body_sha256).where(*in_range, r.c.body_file)
                    )
                }
                deleted += conn.execute(delete(r).where(*in_range)).rowcount or 0
                # every seq up to last_seq is purged now (earlier archives went first)
                conn.execute(
                    delete(b).where(b.c.chain_id == row.chain_id, b.c.last_seq <= row.last_seq)
                )
                conn.execute(
                    update(a)
                    .where(and_(a.c.node_id == self.node_id, a.c.sequence == row.sequence))
                    .values(purged_at=utc_text())
                )
            self._drop_body_files(files)
        return deleted

    def _drop_body_files(self, digests: set[bytes]) -> None:
        """Remove the body files of purged records that no remaining record names (the
        archive holds them now)."""
        bodies = self.store.bodies
        if bodies is None or not digests:
            return
        r = tables.records
        with self.engine.connect() as conn:
            named = {
                bytes(d)
                for (d,) in conn.execute(
                    select(r.c.body_sha256).where(r.c.body_sha256.in_(digests), r.c.body_file)
                )
            }
        for digest in digests - named:
            bodies.path(digest).unlink(missing_ok=True)


def read_back(path: Path) -> LoadedArchive:
    """Re-read a container just written (streaming its bodies) and check every entry
    against the manifest: a file that does not read back as written must not replace
    database rows that are then purged."""
    loaded = read_archive(path, "new archive")
    wrong = sorted(
        name for name, digest in loaded.manifest.files.items() if loaded.digests.get(name) != digest
    )
    if wrong:
        raise ArchiveFormatError(f"new archive {path}: {', '.join(wrong)} did not read back")
    return loaded


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def archive_sha256(path: Path) -> bytes:
    """The archive hash of a file (SHA-256 of its manifest.json)."""
    return hashlib.sha256(read_archive(path).manifest_bytes).digest()
