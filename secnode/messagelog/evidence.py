"""What the ``secnode log`` commands compute: search, show, export, archive, verify.

Records still in the database and records already purged to archive files are
found alike (the archives are read when the database lacks a record), and an
exported bundle carries the batches, proofs and OCSP responses of purged records
from the archives too, so ``secnode log verify`` accepts it on its own. The
commands only parse options and print. Refusals raise :class:`EvidenceError`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography import x509
from sqlalchemy import Engine

from certs.errors import SecnodeError
from secnode.config import DIR_ENV, NodeDir
from secnode.core.messagelog import (
    ArchiveFormatError,
    ArchiveKind,
    LogEvidence,
    LogRecord,
    RecordProof,
    StampedBatch,
    archive_filename,
    read_archive,
    write_archive,
)
from secnode.globalconf import ConfStore
from secnode.home import NodeHome
from secnode.messagelog.archiver import Archiver, ArchiveResult
from secnode.messagelog.audit import AuditResult, archive_files, audit_files, audit_node
from secnode.messagelog.bodyfiles import BODIES_DIR, BodyStore
from secnode.messagelog.database import open_log_engine
from secnode.messagelog.store import LogStore, SearchFilter


class EvidenceError(SecnodeError):
    """A log command cannot do what was asked (no such record, no sign certificate, ...)."""


@dataclass
class NodeLog:
    """A node's message log for one command: its database (opened on first use) and archives."""

    node: NodeHome
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_log_engine(self.node.dir)
        return self._engine

    @property
    def store(self) -> LogStore:
        return LogStore(self.engine, str(self.node.node_id), BodyStore(self.node.path / BODIES_DIR))

    @property
    def archive_dir(self) -> Path:
        return self.node.path / self.node.dir.config.messagelog.archive_dir

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def archived_records(self) -> list[LogRecord]:
        """Records in the node's archive files (for records already purged from the database)."""
        found: list[LogRecord] = []
        for path in archive_files(self.archive_dir):
            try:
                found.extend(read_archive(path).evidence.records)
            except ArchiveFormatError:
                continue
        return found


@contextmanager
def opened(node: NodeHome) -> Iterator[NodeLog]:
    """The node's log for the duration of a ``with`` block (its engine disposed after)."""
    log = NodeLog(node)
    try:
        yield log
    finally:
        log.close()


def record_json(record: LogRecord, with_body: bool = False) -> dict[str, Any]:
    """A record as JSON; the body only on request, but always whether it was kept."""
    out = record.to_json()
    body = out.pop("body")
    in_file = out.pop("body_file", False) is True
    out["body_kept"] = body is not None or in_file
    if in_file:
        out["body_file"] = record.body_file  # where it is; --body reads it from there
    if with_body:
        if in_file and record.body_problem() is None:  # a body file, or an archive's entry
            with record.open_body() as fh:
                body = base64.b64encode(fh.read()).decode("ascii")
        out["body"] = body
    return out


# ----- search and show --------------------------------------------------------------------------
def search(
    log: NodeLog, criteria: SearchFilter, limit: int, in_archives: bool = False
) -> list[LogRecord]:
    """Records matching ``criteria``, from the database and, if asked, the archives."""
    found = log.store.search(criteria, limit)
    if in_archives:
        ids = {r.id for r in found}
        found += [r for r in log.archived_records() if criteria.matches(r) and r.id not in ids]
        found = sorted(found, key=lambda r: (r.time, r.chain_id, r.seq))[:limit]
    return found


def show(log: NodeLog, record_id: str, with_body: bool = False) -> dict[str, Any]:
    """One record with where it is stored, its time-stamp batch and its Merkle proof."""
    store = log.store
    record = store.record(record_id)
    where = "database"
    if record is None:
        record = next((r for r in log.archived_records() if r.id == record_id), None)
        where = "archive"
    if record is None:
        raise EvidenceError(f"no record {record_id} in the database or the archives")
    out = record_json(record, with_body=with_body)
    out["stored_in"] = where
    stored = store.batch_for(record.chain_id, record.seq)
    if stored is not None:
        proof = next((p for p in stored.proofs() if p.seq == record.seq), None)
        out["batch"] = {**stored.batch.to_json(), "gen_time": stored.gen_time}
        out["proof"] = None if proof is None else proof.to_json()
    else:
        out["batch"] = out["proof"] = None
    return out


# ----- export -----------------------------------------------------------------------------------
def export(
    log: NodeLog,
    message_id: str,
    client: str | None,
    passphrase: Callable[[], bytes],
    out_path: str,
) -> dict[str, Any]:
    """Write the records of one exchange as a signed evidence bundle at ``out_path``.

    ``passphrase`` is asked for only once there is something to sign.

    Returns what was written: the record ids, the ones not time-stamped yet, the
    bundle's SHA-256 and the file name the archive naming scheme suggests.
    """
    records = exchange_records(log, message_id, client)
    if not records:
        raise EvidenceError(
            f"no record with message id {message_id!r}" + (f" from {client}" if client else "")
        )
    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        made = exchange_bundle(log, records, passphrase(), message_id, client, tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {
        "out": out_path,
        "records": [r.id for r in records],
        "unstamped": made.unstamped,
        "sha256": made.sha256,
        "suggested_name": made.suggested_name,
    }


def exchange_records(log: NodeLog, message_id: str, client: str | None) -> list[LogRecord]:
    """The records of message ``message_id`` (of ``client`` and its subsystems if given), from
    the database and the archives, in chain order."""
    criteria = SearchFilter(message_id=message_id, client=client)
    records = log.store.search(criteria, 10_000)
    ids = {r.id for r in records}
    records += [r for r in log.archived_records() if criteria.matches(r) and r.id not in ids]
    return sorted(records, key=lambda r: (r.chain_id, r.seq))


@dataclass(frozen=True)
class Bundle:
    """A signed evidence bundle written to ``path`` (``secnode log verify`` accepts it on
    its own)."""

    path: Path
    unstamped: list[str]
    """Ids of the records in it that no time-stamp covers yet."""
    sha256: str
    suggested_name: str


def exchange_bundle(
    log: NodeLog,
    records: list[LogRecord],
    passphrase: bytes,
    message_id: str,
    client: str | None,
    path: Path,
) -> Bundle:
    """``records`` (of one exchange) with their batches, proofs and OCSP, signed, written to
    ``path`` (replaced if it exists; the caller removes it when done). Bodies kept as body
    files, or as entries of the archives the records were read from, are streamed into it a
    piece at a time, and the file is read back the same way: a bundle of large bodies is
    never built in memory."""
    description = f"exchange {message_id}" + (f" of {client}" if client else "")
    with open(path, "wb") as fh:
        _bundle(log, records, passphrase, description, fh)
    loaded = read_archive(path, f"{message_id}.bundle")
    unstamped = [
        r.id
        for r in records
        if not any(b.covers(r.chain_id, r.seq) for b in loaded.evidence.batches)
    ]
    return Bundle(
        path, unstamped, loaded.sha256.hex(), archive_filename(loaded.manifest, loaded.sha256)
    )


def _bundle(
    log: NodeLog, records: list[LogRecord], passphrase: bytes, description: str, out: BinaryIO
) -> None:
    node = log.node
    conf = ConfStore(node.dir.globalconf_dir).load_last_good()
    extra = list(conf.ca_certs) if conf else []
    evidence = log.store.evidence(records, extra)
    _add_archived_evidence(log, evidence)
    row = node.active_certificate("sign")
    if row is None:
        raise EvidenceError("no active sign certificate to sign the bundle with")
    cert = x509.load_pem_x509_certificate(row.cert_pem.encode())
    write_archive(
        evidence,
        out,
        node_id=str(node.node_id),
        signer_cert=cert,
        signer=node.signer("sign", passphrase),
        extra_certs=extra,
        kind=ArchiveKind.BUNDLE,
        description=description,
    )


def _add_archived_evidence(log: NodeLog, evidence: LogEvidence) -> None:
    """Batches/proofs/OCSP for records already purged from the database come from archives."""
    wanted = {(r.chain_id, r.seq) for r in evidence.records}
    have = {
        (b.chain_id, p.seq)
        for b in evidence.batches
        for p in evidence.proofs
        if p.batch_id == b.batch_id
    }
    missing = wanted - have
    if not missing:
        return
    batches: dict[str, StampedBatch] = {b.batch_id: b for b in evidence.batches}
    proofs: list[RecordProof] = list(evidence.proofs)
    ocsp = {bytes(o) for o in evidence.ocsp_responses}
    for path in archive_files(log.archive_dir):
        try:
            loaded = read_archive(path).evidence
        except ArchiveFormatError:
            continue
        for batch in loaded.batches:
            if any(batch.covers(c, s) for c, s in missing):
                batches.setdefault(batch.batch_id, batch)
                proofs += [
                    p
                    for p in loaded.proofs
                    if p.batch_id == batch.batch_id and (batch.chain_id, p.seq) in missing
                ]
        ocsp.update(loaded.ocsp_responses)
    needed = {r.ocsp_sha256 for r in evidence.records if r.ocsp_sha256}
    evidence.batches = list(batches.values())
    evidence.proofs = proofs
    evidence.ocsp_responses = [o for o in ocsp if hashlib.sha256(o).digest() in needed]


# ----- archive ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveRun:
    """What ``archive`` did: the archives written and the records purged past retention."""

    written: list[ArchiveResult]
    purged: int
    retention_days: int


def archiver(log: NodeLog, passphrase: bytes) -> Archiver:
    """An archiver signing with the node's active sign certificate."""
    node = log.node
    row = node.active_certificate("sign")
    if row is None:
        raise EvidenceError("no active sign certificate to sign archives with")
    cert = x509.load_pem_x509_certificate(row.cert_pem.encode())
    conf = ConfStore(node.dir.globalconf_dir).load_last_good()
    return Archiver(
        log.engine,
        str(node.node_id),
        log.archive_dir,
        cert,
        node.signer("sign", passphrase),
        list(conf.ca_certs) if conf else [],
        bodies=BodyStore(node.path / BODIES_DIR),
    )


def archive(
    log: NodeLog,
    work: Archiver,
    until: dt.datetime | None,
    progress: Callable[[int], None] | None = None,
) -> ArchiveRun:
    """Write stamped, unarchived records up to ``until`` to archives; apply the retention."""
    written = work.run(until, progress=progress) if progress else work.run(until)
    retention = log.node.dir.config.messagelog.retention_days
    return ArchiveRun(written, work.purge(retention), retention)


# ----- verify -----------------------------------------------------------------------------------
def audit(
    node_dir: str | None,
    archives: list[Path],
    anchor: Path | None,
    globalconf: Path | None,
    partial: bool,
) -> AuditResult:
    """Verify a node's log (database and archives) or the archive files given, offline."""
    if archives and node_dir is None:
        if anchor is None:
            raise EvidenceError(
                "archives given without a node directory need --anchor "
                "(a PEM file with the approved CA and TSA certificates, or the "
                "configuration anchor together with --globalconf)"
            )
        return audit_files(archives, anchor, globalconf, complete=not partial)
    if archives:
        nd = NodeDir.open(node_dir)
        return audit_files(
            archives, anchor or nd.anchor_path, nd.globalconf_dir, complete=not partial
        )
    return audit_node(Path(node_dir or os.environ.get(DIR_ENV) or "."), anchor)
