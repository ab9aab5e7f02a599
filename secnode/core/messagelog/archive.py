"""Self-contained, signed log archives and evidence bundles (zip, in the ASiC spirit).

Layout of one container (every name is fixed; anything else is refused)::

    mimetype           "application/vnd.secnode.log-archive+zip", stored first, uncompressed
    manifest.json      canonical JSON: ids, ranges, SHA-256 of every other file, previous hash
    manifest.sig       detached CMS (RFC 5652) over manifest.json by the node's sign key
    records.jsonl      one canonical record per line (LogRecord.to_jsonl), seq order
    batches.json       {"format", "batches": [...], "proofs": [...]}: tokens and audit paths
    certs/<sha256>.der every certificate needed: message signers, TSAs, manifest signer, CAs
    ocsp/<sha256>.der  every OCSP response a record references (by ``ocsp_sha256``)
    bodies/<sha256>    the body of every record that keeps it outside (``body_file: true``)

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

Bodies are large (up to the node's body limit, 100 MiB and more) and many: writing
streams each ``bodies/`` entry from its body file a piece at a time, and reading
hashes each one in a streaming pass and leaves its bytes in the file, so building,
re-reading and verifying a container costs a few MiB of memory whatever its bodies
add up to.
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
from typing import IO, Any, BinaryIO

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
from secnode.core.messagelog.record import (
    BODY_ENTRY_PREFIX,
    BODY_PIECE,
    BodyEntry,
    LogRecord,
    format_time,
    parse_time,
)

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
    """A container as read: its manifest, small files, every entry's hash, parsed evidence.

    ``files`` holds the bytes of every entry but the ``bodies/`` ones, which stay in the
    container: ``bodies`` has them measured (the records' ``body_entry``), and
    ``digests`` the SHA-256 of every entry, bodies included, computed while reading.
    """

    label: str
    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes
    files: dict[str, bytes]
    evidence: LogEvidence
    digests: dict[str, bytes]
    bodies: dict[str, BodyEntry]

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
    out: BinaryIO,
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
) -> None:
    """Build a signed container into ``out`` (a seekable binary file, or ``io.BytesIO``).

    An archive (``kind=ARCHIVE``) must hold one chain's contiguous seq range,
    every record stamped (a proof for each), and a ``sequence`` number; the
    caller passes the previous archive's hash (None only for sequence 1).
    Refusing here, rather than writing an archive the verifier will reject,
    keeps a broken archive from replacing database rows that are then purged.

    Bodies kept outside their records (body files, or entries of the container a
    record was read from) are streamed into their ``bodies/<sha256>`` entries a
    piece at a time, never held whole; the manifest lists each under the digest its
    name states, and the streamed bytes are hashed on the way: a body that does not
    match raises :class:`ArchiveFormatError`, and what was written to ``out`` by then
    is not an archive (the caller discards it).
    """
    records = evidence.records
    created = (created_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    _check_writable(evidence, kind, sequence, previous_archive_sha256)
    certs: dict[bytes, bytes] = {}
    for cert in [signer_cert, *extra_certs, *evidence.certificates]:
        der = cert_der(cert)
        certs[hashlib.sha256(der).digest()] = der
    ocsp = {hashlib.sha256(o).digest(): o for o in evidence.ocsp_responses}
    files: dict[str, bytes | LogRecord] = {
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
        files={
            name: data.body_sha256 if isinstance(data, LogRecord) else hashlib.sha256(data).digest()
            for name, data in files.items()
        },
        description=description,
    )
    if not _ARCHIVE_ID.match(manifest.archive_id):
        raise ArchiveFormatError(f"archive id must match {_ARCHIVE_ID.pattern}")
    manifest_bytes = canonical_json(manifest.to_json())
    signature = sign_detached(manifest_bytes, signer_cert, signer, extra_certs)
    _zip(
        out,
        [(MIMETYPE_NAME, MIMETYPE), (MANIFEST_NAME, manifest_bytes), (SIGNATURE_NAME, signature)]
        + [(n, d) for n, d in files.items() if n != MIMETYPE_NAME],
        max(created, _ZIP_EPOCH),
    )


def _body_entries(records: Sequence[LogRecord]) -> dict[str, LogRecord]:
    """``bodies/<hex>`` for every record whose body is kept outside it (a body file, or an
    entry of the container it was read from), with the record whose body it is. A missing
    or resized one is refused here, before anything is written; a changed one while it
    streams (:func:`_stream_body`): it is not archived and then purged."""
    out: dict[str, LogRecord] = {}
    for record in records:
        if record.body is not None or record.body_file is None:
            continue
        name = BODY_ENTRY_PREFIX + record.body_sha256.hex()
        if name in out:
            continue
        problem = record.body_problem(hash_file=False)  # its bytes are hashed as they stream
        if problem is not None:
            raise ArchiveFormatError(f"record {record.ref}: {problem}; not archived")
        out[name] = record
    return out


def _stream_body(zf: zipfile.ZipFile, info: zipfile.ZipInfo, record: LogRecord) -> None:
    """Copy ``record``'s kept body into entry ``info`` a piece at a time, hashing it."""
    info.file_size = record.body_size  # lets zipfile choose ZIP64 for a large entry up front
    digest = hashlib.sha256()
    size = 0
    where = record.body_file if record.body_entry is None else record.body_entry.name
    try:
        with record.open_body() as source, zf.open(info, "w") as dest:
            while piece := source.read(BODY_PIECE):
                digest.update(piece)
                size += len(piece)
                dest.write(piece)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ArchiveFormatError(
            f"record {record.ref}: body {where} cannot be read: {exc}; not archived"
        ) from exc
    if size != record.body_size or digest.digest() != record.body_sha256:
        raise ArchiveFormatError(
            f"record {record.ref}: body {where} does not match body_sha256/body_size; not archived"
        )


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


def _zip(
    out: BinaryIO, entries: Sequence[tuple[str, bytes | LogRecord]], when: dt.datetime
) -> None:
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = (
                zipfile.ZIP_STORED if name == MIMETYPE_NAME else zipfile.ZIP_DEFLATED
            )
            info.external_attr = 0o644 << 16
            if isinstance(data, LogRecord):
                _stream_body(zf, info, data)
            else:
                zf.writestr(info, data)


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
    """Open a container strictly; raises :class:`ArchiveFormatError` on any structural fault.

    A file is read through the zip's directory, never whole: the small entries into
    memory (within ``limits``), each ``bodies/`` entry only hashed, a piece at a time, and
    kept as a :class:`BodyEntry` (a large body is never held whole here)."""
    container: Path | bytes
    if isinstance(source, bytes):
        container, name = source, label or "<archive>"
    else:
        container = path = Path(source)
        name = label or str(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ArchiveFormatError(f"cannot read {path}: {exc}") from exc
        if size > limits.max_total_bytes:
            raise ArchiveFormatError(f"{path}: {size} bytes exceeds the archive size limit")
    try:
        zf = zipfile.ZipFile(io.BytesIO(container) if isinstance(container, bytes) else container)
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ArchiveFormatError(f"{name}: not a zip file: {exc}") from exc
    except OSError as exc:
        raise ArchiveFormatError(f"cannot read {name}: {exc}") from exc
    with zf:
        entries = _read_entries(zf, name, limits, container)
    return _parse_loaded(name, entries)


@dataclass
class _Entries:
    """What :func:`_read_entries` found: small entries' bytes, every entry's SHA-256, and
    the measured body entries."""

    files: dict[str, bytes] = field(default_factory=dict)
    digests: dict[str, bytes] = field(default_factory=dict)
    bodies: dict[str, BodyEntry] = field(default_factory=dict)


def _read_entries(
    zf: zipfile.ZipFile, name: str, limits: ReadLimits, container: Path | bytes
) -> _Entries:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveFormatError(f"{name}: {len(infos)} entries exceeds the limit")
    found = _Entries()
    total = 0
    for info in infos:
        entry = info.filename
        if entry in found.digests:
            raise ArchiveFormatError(f"{name}: duplicate entry {entry!r}")
        body = _BODY_NAME.match(entry) is not None
        if entry not in _FIXED_NAMES and not _HASHED_NAME.match(entry) and not body:
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
                if body:  # hashed as it inflates, never held: do not trust the header's size
                    digest, size = _measure(fh, cap, limits.max_total_bytes - total)
                else:
                    content = fh.read(cap + 1)
                    digest, size = hashlib.sha256(content).digest(), len(content)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ArchiveFormatError(f"{name}: entry {entry!r} is corrupt: {exc}") from exc
        if size > cap:
            raise ArchiveFormatError(f"{name}: entry {entry!r} is larger than {cap} bytes")
        total += size
        if total > limits.max_total_bytes:
            raise ArchiveFormatError(f"{name}: uncompressed content exceeds the total limit")
        found.digests[entry] = digest
        if body:
            found.bodies[entry] = BodyEntry(container, entry, digest, size)
        else:
            found.files[entry] = content
    for required in _FIXED_NAMES:
        if required not in found.files:
            raise ArchiveFormatError(f"{name}: missing {required}")
    if infos[0].filename != MIMETYPE_NAME:
        raise ArchiveFormatError(f"{name}: the first entry must be {MIMETYPE_NAME}")
    if found.files[MIMETYPE_NAME] != MIMETYPE:
        raise ArchiveFormatError(f"{name}: mimetype is not {MIMETYPE.decode()}")
    return found


def _measure(fh: IO[bytes], cap: int, room: int) -> tuple[bytes, int]:
    """SHA-256 and size of a stream read a piece at a time; stops once past ``cap`` or the
    ``room`` left in the total (the caller refuses it then)."""
    digest = hashlib.sha256()
    size = 0
    while piece := fh.read(BODY_PIECE):
        digest.update(piece)
        size += len(piece)
        if size > cap or size > room:
            break
    return digest.digest(), size


def _parse_loaded(name: str, entries: _Entries) -> LoadedArchive:
    files = entries.files
    try:
        manifest = Manifest.from_json(parse_json_object(files[MANIFEST_NAME], "manifest.json"))
        records = _with_bodies(_parse_records(files[RECORDS_NAME]), entries.bodies)
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
        digests=entries.digests,
        bodies=entries.bodies,
    )


def _with_bodies(records: list[LogRecord], bodies: dict[str, BodyEntry]) -> list[LogRecord]:
    """A record whose body is a ``bodies/`` entry gets it as its measured ``body_entry``
    (verify checks it against the digest); without the entry it keeps only the name, and
    verify reports it missing."""
    out = []
    for record in records:
        name = record.body_file
        if record.body is None and name is not None:
            record = dataclasses.replace(
                record, body_file=f"(archive entry {name})", body_entry=bodies.get(name)
            )
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
