"""The message log's tables (SQLAlchemy Core; created by Alembic revision ``0002``).

Core, not the ORM: the writer inserts thousands of rows a second in batches
and never needs identity maps or change tracking. The layout follows the
performance note (research §5.4): a time-stamp batch is linked to its records
by a seq *range* and carries the Merkle leaves it was built from, so stamping
never updates record rows; archiving is recorded per range too.

Times are stored as the canonical record text ``YYYY-MM-DDTHH:MM:SS.ffffffZ``:
exact to the microsecond on every database (the hash depends on it), and
fixed-width, so text order is time order for range queries.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: One row per record; the primary key (chain_id, seq) keeps a chain's records in seq order.
records = Table(
    "mlog_records",
    metadata,
    Column("chain_id", String(200), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("time", String(27), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("node_id", String(1024), nullable=False),
    Column("client_id", String(1024)),
    Column("service_id", String(1024)),
    Column("message_id", String(255)),
    Column("user_id", Text),
    Column("purpose", Text),
    Column("legal_basis", Text),
    Column("data_subject", Text),
    Column("decision", String(32)),
    Column("reason", Text),
    Column("body_sha256", LargeBinary(32), nullable=False),
    Column("body_size", BigInteger, nullable=False),
    Column("headers_sha256", LargeBinary(32), nullable=False),
    Column("signed_digest", LargeBinary),
    Column("signature", LargeBinary),
    Column("signer_cert_sha256", LargeBinary(32)),
    Column("ocsp_sha256", LargeBinary(32)),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("record_hash", LargeBinary(32), nullable=False),
    Column("body", LargeBinary),
    #: the peer node's log position for the message (revision 0006; hashed, may be NULL)
    Column("witness", Text),
    #: the body is a body file named by body_sha256 (revision 0011 / 0003_mlog; not hashed)
    Column("body_file", Boolean),
    PrimaryKeyConstraint("chain_id", "seq", name="pk_mlog_records"),
    UniqueConstraint("record_id", name="uq_mlog_records_record_id"),
    Index("ix_mlog_records_time", "time"),
    Index("ix_mlog_records_message_id", "message_id"),
)

#: One row per writer (node process start, or restart of the writer after a write error).
chains = Table(
    "mlog_chains",
    metadata,
    Column("chain_id", String(200), primary_key=True),
    Column("node_id", String(1024), nullable=False),
    Column("started_at", String(27), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("heartbeat_at", String(27), nullable=False),
    #: every seq up to here is covered by a batch (updated with each batch, compare-and-set)
    Column("stamped_seq", BigInteger, nullable=False, default=0),
)

#: Certificates (message signers, TSAs, the node's own sign certificate), stored once.
certificates = Table(
    "mlog_certificates",
    metadata,
    Column("sha256", LargeBinary(32), primary_key=True),
    Column("der", LargeBinary, nullable=False),
)

#: OCSP responses the records name (``ocsp_sha256``), stored once.
ocsp_responses = Table(
    "mlog_ocsp_responses",
    metadata,
    Column("sha256", LargeBinary(32), primary_key=True),
    Column("der", LargeBinary, nullable=False),
)

#: Time-stamped Merkle batches: a chain's seq range, root, token and the leaves (record
#: hashes at stamping time, 32 bytes each) from which the audit paths are rebuilt.
batches = Table(
    "mlog_batches",
    metadata,
    Column("batch_id", String(250), primary_key=True),
    Column("chain_id", String(200), nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("token", LargeBinary, nullable=False),
    Column("tsa_name", String(255), nullable=False),
    Column("tsa_url", Text),
    Column("gen_time", String(27), nullable=False),
    Column("leaves", LargeBinary, nullable=False),
    Index("ix_mlog_batches_chain", "chain_id", "first_seq"),
)

#: Archive files written for this node: one numbered, hash-linked sequence per node.
archives = Table(
    "mlog_archives",
    metadata,
    Column("node_id", String(1024), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("archive_id", String(128), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("sha256", LargeBinary(32), nullable=False),
    Column("previous_sha256", LargeBinary(32)),
    Column("chain_id", String(200), nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("first_time", String(27), nullable=False),
    Column("last_time", String(27), nullable=False),
    Column("created_at", String(27), nullable=False),
    Column("purged_at", String(27)),
    PrimaryKeyConstraint("node_id", "sequence", name="pk_mlog_archives"),
    Index("ix_mlog_archives_chain", "chain_id", "first_seq"),
)
