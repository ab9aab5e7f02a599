"""The message log's pure core: records, hash chain, Merkle batches, archives, verifier.

Everything here is free of I/O frameworks (no aiohttp, no SQLAlchemy) so the
node's log store and the auditor's offline verifier share one definition of
what a valid log is. The byte-level formats are specified in ``docs/audit.md``;
change them only together with that document and a new format version.
"""

from secnode.core.jsonfmt import FormatError, canonical_json
from secnode.core.messagelog.archive import (
    ArchiveFormatError,
    ArchiveKind,
    LoadedArchive,
    LogEvidence,
    Manifest,
    ReadLimits,
    archive_filename,
    read_archive,
    select_evidence,
    write_archive,
)
from secnode.core.messagelog.batch import (
    PreparedBatch,
    RecordProof,
    StampedBatch,
    batch_id_for,
    check_proof,
    prepare_batch,
    proofs_from_leaves,
)
from secnode.core.messagelog.merkle import inclusion_proofs, merkle_root, verify_inclusion
from secnode.core.messagelog.record import (
    Direction,
    LogRecord,
    RecordError,
    canonical_bytes,
    genesis_hash,
    new_record_id,
    record_hash,
)
from secnode.core.messagelog.report import (
    Failure,
    FailureKind,
    TrustAnchors,
    VerificationReport,
    VerifyOptions,
)
from secnode.core.messagelog.stamp_check import tsa_token_check
from secnode.core.messagelog.verify import verify_files, verify_log

__all__ = [
    "ArchiveFormatError",
    "ArchiveKind",
    "Direction",
    "Failure",
    "FailureKind",
    "FormatError",
    "LoadedArchive",
    "LogEvidence",
    "LogRecord",
    "Manifest",
    "PreparedBatch",
    "ReadLimits",
    "RecordError",
    "RecordProof",
    "StampedBatch",
    "TrustAnchors",
    "VerificationReport",
    "VerifyOptions",
    "archive_filename",
    "batch_id_for",
    "canonical_bytes",
    "canonical_json",
    "check_proof",
    "genesis_hash",
    "inclusion_proofs",
    "merkle_root",
    "new_record_id",
    "prepare_batch",
    "proofs_from_leaves",
    "read_archive",
    "record_hash",
    "select_evidence",
    "tsa_token_check",
    "verify_files",
    "verify_inclusion",
    "verify_log",
    "write_archive",
]
