"""The message log's pure core: records, hash chain, Merkle batches, archives, verifier.

Everything here is free of I/O frameworks (no aiohttp, no SQLAlchemy) so the
node's log store and the auditor's offline verifier share one definition of
what a valid log is. The byte-level formats are specified in ``docs/audit.md``;
change them only together with that document and a new ``format`` version.
"""

from secnode.core.messagelog.record import (
    Direction,
    LogRecord,
    RecordError,
    canonical_bytes,
    genesis_hash,
    record_hash,
)

__all__ = [
    "Direction",
    "LogRecord",
    "RecordError",
    "canonical_bytes",
    "genesis_hash",
    "record_hash",
]
