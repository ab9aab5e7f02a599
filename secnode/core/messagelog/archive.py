"""Self-contained, signed log archives and evidence bundles (zip, in the ASiC spirit).

Layout of one container (every name is fixed; anything else is refused)::

    mimetype           "application/vnd.secnode.log-archive+zip", stored first, uncompressed
    manifest.json      canonical JSON: ids, ranges, SHA-256 of every other file, previous hash
    manifest.sig       detached CMS (RFC 5652) over manifest.json by the node's sign key
    records.jsonl      one canonical record per line (LogRecord.to_jsonl), seq order
    batches.json       {"format", "batches": [...], "proofs": [...]}: tokens and audit paths
    certs/<sha256>.der every certificate needed: message signers, TSAs, manifest signer, CAs
    ocsp/<sha256>.der  every OCSP response a record references (by ``ocsp_sha256``)

The archive's hash is SHA-256 of the ``manifest.json`` bytes; since the
manifest holds the hash of every other file, that one value fixes the whole
container, and archives chain through ``previous_archive_sha256``. Archives
of one node form one sequence (``sequence`` 1, 2, ...) across all its chains,
written by the single archiver job.

An *evidence bundle* is the same container with ``kind = "bundle"``: the
records of one exchange (not a contiguous range), with their batches, proofs,
certificates and OCSP responses; it has no place in the archive sequence.

Reading is strict (names, sizes, duplicates, canonical lines) and raises
:class:`ArchiveFormatError`; judging hashes and signatures is the verifier's
job, so that a tampered archive yields a report naming what is wrong rather
than an exception.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import io
import re
import secrets
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from certs.cms import sign_detached
from certs.keys import Signer
from secnode.core.jsonfmt import (
    FormatError,
    canonical_json,
    cert_der,
    cert_sha256,
    from_hex32,
    get_int,
    get_opt_int,
    get_opt_str,
    get_str,
    hex32,
    parse_json_object,
    require_keys,
)
from secnode.core.messagelog.batch import RecordProof, StampedBatch
from secnode.core.messagelog.record import BODY_ENTRY_PREFIX, LogRecord, format_time, parse_time

ARCHIVE_FORMAT = "secnode-log-archive/1"
BATCHES_FORMAT = "secnode-log-batches/1"
MIMETYPE = b"application/vnd.secnode.log-archive+zip"

MIMETYPE_NAME = "mimetype"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
RECORDS_NAME = "records.jsonl"
BATCHES_NAME = "batches.json"
_HASHED_NAME = re.compile(r"^(certs|ocsp)/([0-9a-f]{64})\.der$")
_BODY_NAME = re.compile(r"^bodies/([0-9a-f]{64})$")
_FIXED_NAMES = frozenset({MIMETYPE_NAME, MANIFEST_NAME, SIGNATURE_NAME, RECORDS_NAME, BATCHES_NAME})
_ARCHIVE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_ZIP_EPOCH = dt.datetime(1980, 1, 1, tzinfo=dt.UTC)


class ArchiveFormatError(FormatError):
    """A container is not a well-formed secnode log archive (it is not judged further)."""


class ArchiveKind(enum.StrEnum):
    ARCHIVE = "archive"
    BUNDLE = "bundle"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds applied while reading untrusted containers (zip bombs, huge entries)."""

    max_entries: int = 200_000
    max_entry_bytes: int = 1 << 30
    max_total_bytes: int = 4 << 30
    max_manifest_bytes: int = 16 << 20


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says; ``files`` maps every other entry name to its SHA-256."""

    kind: ArchiveKind
    archive_id: str
    node_id: str
    sequence: int | None
    chain_id: str | None
    first_seq: int | None
    last_seq: int | None
    record_count: int
    first_time: dt.datetime | None
    last_time: dt.datetime | None
    created_at: dt.datetime
    previous_archive_sha256: bytes | None
    signer_cert_sha256: bytes
    files: dict[str, bytes]
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ARCHIVE_FORMAT,
            "kind": self.kind.value,
            "archive_id": self.archive_id,
            "node_id": self.node_id,
            "sequence": self.sequence,
            "chain_id": self.chain_id,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "record_count": self.record_count,
            "first_time": None if self.first_time is None else format_time(self.first_time),
            "last_time": None if self.last_time is None else format_time(self.last_time),
            "created_at": format_time(self.created_at),
            "previous_archive_sha256": (
                None
                if self.previous_archive_sha256 is None
                else hex32(self.previous_archive_sha256)
            ),
            "signer_cert_sha256": hex32(self.signer_cert_sha256),
            "files": {name: hex32(digest) for name, digest in sorted(self.files.items())},
            "description": self.description,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Manifest:
        what = "manifest.json"
        require_keys(obj, _MANIFEST_KEYS, what)
        if obj["format"] != ARCHIVE_FORMAT:
            raise ArchiveFormatError(f"{what}: unsupported format {obj['format']!r}")
        try:
            kind = ArchiveKind(get_str(obj, "kind", what))
        except ValueError as exc:
            raise ArchiveFormatError(f"{what}: unknown kind {obj['kind']!r}") from exc
        files = obj["files"]
        if not isinstance(files, dict):
            raise ArchiveFormatError(f"{what}: files must be an object")
        for name in files:
            if name not in _FIXED_NAMES - {MANIFEST_NAME, SIGNATURE_NAME} and not (
                _HASHED_NAME.match(name) or _BODY_NAME.match(name)
            ):
                raise ArchiveFormatError(f"{what}: files names unknown entry {name!r}")
        first_time, last_time = obj["first_time"], obj["last_time"]
        previous = obj["previous_archive_sha256"]
        return cls(
            kind=kind,
            archive_id=get_str(obj, "archive_id", what),
            node_id=get_str(obj, "node_id", what),
            sequence=get_opt_int(obj, "sequence", what),
            chain_id=get_opt_str(obj, "chain_id", what),
            first_seq=get_opt_int(obj, "first_seq", what),
            last_seq=get_opt_int(obj, "last_seq", what),
            record_count=get_int(obj, "record_count", what),
            first_time=None if first_time is None else parse_time(first_time, what),
            last_time=None if last_time is None else parse_time(last_time, what),
            created_at=parse_time(obj["created_at"], what),
            previous_archive_sha256=(
                None if previous is None else from_hex32(previous, f"{what}: previous")
            ),
            signer_cert_sha256=from_hex32(obj["signer_cert_sha256"], f"{what}: signer"),
            files={n: from_hex32(d, f"{what}: files[{n}]") for n, d in files.items()},
            description=get_opt_str(obj, "description", what),
        )


@dataclass
class LogEvidence:
    """Records with everything needed to check them: from a DB dump or an archive.

    ``records`` keep their stored order (the verifier detects reordering);
    ``ocsp_responses`` are DER, looked up by SHA-256 from ``record.ocsp_sha256``.
    """

    records: list[LogRecord] = field(default_factory=list)
    batches: list[StampedBatch] = field(default_factory=list)
    proofs: list[RecordProof] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)
    ocsp_responses: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class LoadedArchive:
    """A container read from bytes: its manifest, raw files and parsed evidence."""

    label: str
    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes
    files: dict[str, bytes]
    evidence: LogEvidence

    @property
    def sha256(self) -> bytes:
        """The archive hash: SHA-256 of the manifest.json bytes."""
        return hashlib.sha256(self.manifest_bytes).digest()


def select_evidence(
    records: Sequence[LogRecord],
    batches: Iterable[StampedBatch],
    proofs: Iterable[RecordProof],
    certificates: Iterable[x509.Certificate] = (),
    ocsp_responses: Iterable[bytes] = (),
) -> LogEvidence:
    """Keep only the batches, proofs and OCSP responses that ``records`` need.

    Certificates are all kept (they are few, and a verifier may need a CA
    that no record names directly).
    """
    wanted = {(r.chain_id, r.seq): r for r in records}
    kept_batches = [b for b in batches if any(b.covers(chain, seq) for chain, seq in wanted)]
    by_id = {b.batch_id: b for b in kept_batches}
    kept_proofs = [
        p for p in proofs if p.batch_id in by_id and (by_id[p.batch_id].chain_id, p.seq) in wanted
    ]
    ocsp_wanted = {r.ocsp_sha256 for r in records if r.ocsp_sha256 is not None}
    kept_ocsp = [o for o in ocsp_responses if hashlib.sha256(o).digest() in ocsp_wanted]
    return LogEvidence(list(records), kept_batches, kept_proofs, list(certificates), kept_ocsp)


def batches_json(batches: Sequence[StampedBatch], proofs: Sequence[RecordProof]) -> bytes:
    return canonical_json(
        {
            "format": BATCHES_FORMAT,
            "batches": [b.to_json() for b in batches],
            "proofs": [p.to_json() for p in proofs],
        }
    )


def write_archive(
    evidence: LogEvidence,
    *,
    node_id: str,
    signer_cert: x509.Certificate,
    signer: Signer,
    extra_certs: Sequence[x509.Certificate] = (),
    kind: ArchiveKind = ArchiveKind.ARCHIVE,
    sequence: int | None = None,
    previous_archive_sha256: bytes | None = None,
    created_at: dt.datetime | None = None,
    archive_id: str | None = None,
    description: str | None = None,
) -> bytes:
    """Build a signed container and return the zip bytes.

    An archive (``kind=ARCHIVE``) must hold one chain's contiguous seq range,
    every record stamped (a proof for each), and a ``sequence`` number; the
    caller passes the previous archive's hash (None only for sequence 1).
    Refusing here, rather than writing an archive the verifier will reject,
    keeps a broken archive from replacing database rows that are then purged.
    """
    records = evidence.records
    created = (created_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    _check_writable(evidence, kind, sequence, previous_archive_sha256)
    certs: dict[bytes, bytes] = {}
    for cert in [signer_cert, *extra_certs, *evidence.certificates]:
        der = cert_der(cert)
        certs[hashlib.sha256(der).digest()] = der
    ocsp = {hashlib.sha256(o).digest(): o for o in evidence.ocsp_responses}
    files: dict[str, bytes] = {
        MIMETYPE_NAME: MIMETYPE,
        RECORDS_NAME: b"".join(r.to_jsonl() + b"\n" for r in records),
        BATCHES_NAME: batches_json(evidence.batches, evidence.proofs),
    }
    for digest, der in sorted(certs.items()):
        files[f"certs/{digest.hex()}.der"] = der
    files.update(_body_entries(records))
    for digest, der in sorted(ocsp.items()):
        files[f"ocsp/{digest.hex()}.der"] = der
    chains = sorted({r.chain_id for r in records})
    single = kind is ArchiveKind.ARCHIVE
    manifest = Manifest(
        kind=kind,
        archive_id=archive_id or f"{kind.value}-{secrets.token_hex(8)}",
        node_id=node_id,
        sequence=sequence,
        chain_id=chains[0] if single else None,
        first_seq=records[0].seq if single else None,
        last_seq=records[-1].seq if single else None,
        record_count=len(records),
        first_time=min(r.time for r in records),
        last_time=max(r.time for r in records),
        created_at=created,
        previous_archive_sha256=previous_archive_sha256,
        signer_cert_sha256=cert_sha256(signer_cert),
        files={name: hashlib.sha256(data).digest() for name, data in files.items()},
        description=description,
    )
    if not _ARCHIVE_ID.match(manifest.archive_id):
        raise ArchiveFormatError(f"archive id must match {_ARCHIVE_ID.pattern}")
    manifest_bytes = canonical_json(manifest.to_json())
    signature = sign_detached(manifest_bytes, signer_cert, signer, extra_certs)
    return _zip(
        [(MIMETYPE_NAME, MIMETYPE), (MANIFEST_NAME, manifest_bytes), (SIGNATURE_NAME, signature)]
        + [(n, d) for n, d in files.items() if n != MIMETYPE_NAME],
        max(created, _ZIP_EPOCH),
    )


def _body_entries(records: Sequence[LogRecord]) -> dict[str, bytes]:
    """``bodies/<hex>`` for every record whose body is a body file (read from disk; a
    missing or changed one is refused here, not archived and then purged)."""
    out: dict[str, bytes] = {}
    for record in records:
        if record.body is not None or record.body_file is None:
            continue
        name = BODY_ENTRY_PREFIX + record.body_sha256.hex()
        if name in out:
            continue
        problem = record.body_problem()
        if problem is not None:
            raise ArchiveFormatError(f"record {record.ref}: {problem}; not archived")
        out[name] = Path(record.body_file).read_bytes()
    return out


def _check_writable(
    evidence: LogEvidence, kind: ArchiveKind, sequence: int | None, previous: bytes | None
) -> None:
    records = evidence.records
    if not records:
        raise ArchiveFormatError("nothing to archive: no records")
    if kind is ArchiveKind.BUNDLE:
        if sequence is not None or previous is not None:
            raise ArchiveFormatError("an evidence bundle has no place in the archive sequence")
        return
    if sequence is None or sequence < 1:
        raise ArchiveFormatError("an archive needs a sequence number >= 1")
    if (sequence == 1) != (previous is None):
        raise ArchiveFormatError(
            "previous_archive_sha256 must be given for every archive but the first"
        )
    chain = records[0].chain_id
    for offset, record in enumerate(records):
        if record.chain_id != chain or record.seq != records[0].seq + offset:
            raise ArchiveFormatError(
                "an archive holds one chain's contiguous seq range, in order "
                f"(problem at {record.ref})"
            )
    proved = {p.seq for p in evidence.proofs}
    batch_ids = {b.batch_id for b in evidence.batches if b.chain_id == chain}
    for record in records:
        if record.seq not in proved:
            raise ArchiveFormatError(f"record {record.ref} is not stamped yet; archive it later")
    for proof in evidence.proofs:
        if proof.batch_id not in batch_ids:
            raise ArchiveFormatError(f"proof for seq {proof.seq} names unknown batch")


def _zip(entries: Sequence[tuple[str, bytes]], when: dt.datetime) -> bytes:
    buf = io.BytesIO()
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = (
                zipfile.ZIP_STORED if name == MIMETYPE_NAME else zipfile.ZIP_DEFLATED
            )
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def archive_filename(manifest: Manifest, archive_sha256: bytes) -> str:
    """X-Road-like name: ``mlog-<first>-<last>-<16 hex of the archive hash>.zip``."""
    fmt = "%Y%m%d%H%M%S"
    first = manifest.first_time.strftime(fmt) if manifest.first_time else "none"
    last = manifest.last_time.strftime(fmt) if manifest.last_time else "none"
    prefix = "mlog" if manifest.kind is ArchiveKind.ARCHIVE else "evidence"
    return f"{prefix}-{first}-{last}-{archive_sha256.hex()[:16]}.zip"


# ----- reading ----------------------------------------------------------------------------
def read_archive(
    source: bytes | str | Path, label: str | None = None, limits: ReadLimits = ReadLimits()
) -> LoadedArchive:
    """Open a container strictly; raises :class:`ArchiveFormatError` on any structural fault."""
    if isinstance(source, bytes):
        data, name = source, label or "<archive>"
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > limits.max_total_bytes:
                raise ArchiveFormatError(f"{path}: {size} bytes exceeds the archive size limit")
            data = path.read_bytes()
        except OSError as exc:
            raise ArchiveFormatError(f"cannot read {path}: {exc}") from exc
        name = label or str(path)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ArchiveFormatError(f"{name}: not a zip file: {exc}") from exc
    with zf:
        files = _read_entries(zf, name, limits)
    return _parse_loaded(name, files)


def _read_entries(zf: zipfile.ZipFile, name: str, limits: ReadLimits) -> dict[str, bytes]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveFormatError(f"{name}: {len(infos)} entries exceeds the limit")
    files: dict[str, bytes] = {}
    total = 0
    for info in infos:
        entry = info.filename
        if entry in files:
            raise ArchiveFormatError(f"{name}: duplicate entry {entry!r}")
        if (
            entry not in _FIXED_NAMES
            and not _HASHED_NAME.match(entry)
            and not _BODY_NAME.match(entry)
        ):
            # Also rejects directories, absolute paths, '..' and backslashes (zip slip).
            raise ArchiveFormatError(f"{name}: unexpected entry {entry!r}")
        if info.flag_bits & 0x1:
            raise ArchiveFormatError(f"{name}: entry {entry!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArchiveFormatError(f"{name}: entry {entry!r} uses an unsupported compression")
        cap = limits.max_manifest_bytes if entry == MANIFEST_NAME else limits.max_entry_bytes
        if info.file_size > cap:
            raise ArchiveFormatError(f"{name}: entry {entry!r} is larger than {cap} bytes")
        try:
            with zf.open(info) as fh:
                content = fh.read(cap + 1)  # do not trust the header's size
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ArchiveFormatError(f"{name}: entry {entry!r} is corrupt: {exc}") from exc
        if len(content) > cap:
            raise ArchiveFormatError(f"{name}: entry {entry!r} is larger than {cap} bytes")
        total += len(content)
        if total > limits.max_total_bytes:
            raise ArchiveFormatError(f"{name}: uncompressed content exceeds the total limit")
        files[entry] = content
    for required in _FIXED_NAMES:
        if required not in files:
            raise ArchiveFormatError(f"{name}: missing {required}")
    if infos[0].filename != MIMETYPE_NAME:
        raise ArchiveFormatError(f"{name}: the first entry must be {MIMETYPE_NAME}")
    if files[MIMETYPE_NAME] != MIMETYPE:
        raise ArchiveFormatError(f"{name}: mimetype is not {MIMETYPE.decode()}")
    return files


def _parse_loaded(name: str, files: dict[str, bytes]) -> LoadedArchive:
    try:
        manifest = Manifest.from_json(parse_json_object(files[MANIFEST_NAME], "manifest.json"))
        records = _with_bodies(_parse_records(files[RECORDS_NAME]), files)
        batches, proofs = _parse_batches(files[BATCHES_NAME])
        certificates: list[x509.Certificate] = []
        ocsp: list[bytes] = []
        for entry, content in files.items():
            match = _HASHED_NAME.match(entry)
            if not match:
                continue
            if match.group(1) == "certs":
                try:
                    certificates.append(x509.load_der_x509_certificate(content))
                except ValueError as exc:
                    raise ArchiveFormatError(f"{entry}: not a DER certificate: {exc}") from exc
            else:
                ocsp.append(content)
    except ArchiveFormatError:
        raise
    except FormatError as exc:
        raise ArchiveFormatError(f"{name}: {exc}") from exc
    return LoadedArchive(
        label=name,
        manifest=manifest,
        manifest_bytes=files[MANIFEST_NAME],
        signature=files[SIGNATURE_NAME],
        files=files,
        evidence=LogEvidence(records, batches, proofs, certificates, ocsp),
    )


def _with_bodies(records: list[LogRecord], files: dict[str, bytes]) -> list[LogRecord]:
    """A record whose body is a ``bodies/`` entry gets it (verify checks it against the
    digest); without the entry it keeps only the name, and verify reports it missing."""
    out = []
    for record in records:
        name = record.body_file
        if record.body is None and name is not None and name in files:
            record = dataclasses.replace(record, body=files[name], body_file=None)
        elif name is not None:
            record = dataclasses.replace(record, body_file=f"(archive entry {name})")
        out.append(record)
    return out


def _parse_records(data: bytes) -> list[LogRecord]:
    if data and not data.endswith(b"\n"):
        raise ArchiveFormatError("records.jsonl must end with a newline")
    records = []
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        record = LogRecord.from_jsonl(line)
        if record.to_jsonl() != line:
            raise ArchiveFormatError(f"records.jsonl line {number} is not canonical JSON")
        records.append(record)
    return records


def _parse_batches(data: bytes) -> tuple[list[StampedBatch], list[RecordProof]]:
    obj = parse_json_object(data, "batches.json")
    require_keys(obj, frozenset({"format", "batches", "proofs"}), "batches.json")
    if obj["format"] != BATCHES_FORMAT:
        raise ArchiveFormatError(f"batches.json: unsupported format {obj['format']!r}")
    if not isinstance(obj["batches"], list) or not isinstance(obj["proofs"], list):
        raise ArchiveFormatError("batches.json: batches and proofs must be lists")
    return (
        [StampedBatch.from_json(b) for b in obj["batches"]],
        [RecordProof.from_json(p) for p in obj["proofs"]],
    )


_MANIFEST_KEYS = frozenset(
    {
        "format",
        "kind",
        "archive_id",
        "node_id",
        "sequence",
        "chain_id",
        "first_seq",
        "last_seq",
        "record_count",
        "first_time",
        "last_time",
        "created_at",
        "previous_archive_sha256",
        "signer_cert_sha256",
        "files",
        "description",
    }
)
