"""message log database: the tables create_all made before this database had migrations

Revision ID: 0001_mlog
Revises:
Create Date: 2026-12-02 16:30:00

The message log's own database (SQLite messagelog.db, or [messagelog] database) was
built with metadata.create_all until issue 15; this revision is that schema, spelled
out, so a database made that way is stamped here and later revisions apply to both.
"""
from alembic import op
import sqlalchemy as sa


revision = "0001_mlog"
down_revision = None
branch_labels = None
depends_on = None

HASH = sa.LargeBinary(32)
TIME = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "mlog_records",
        sa.Column("chain_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("time", TIME, nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("node_id", sa.String(1024), nullable=False),
        sa.Column("client_id", sa.String(1024)),
        sa.Column("service_id", sa.String(1024)),
        sa.Column("message_id", sa.String(255)),
        sa.Column("user_id", sa.Text()),
        sa.Column("purpose", sa.Text()),
        sa.Column("legal_basis", sa.Text()),
        sa.Column("data_subject", sa.Text()),
        sa.Column("decision", sa.String(32)),
        sa.Column("reason", sa.Text()),
        sa.Column("body_sha256", HASH, nullable=False),
        sa.Column("body_size", sa.BigInteger(), nullable=False),
        sa.Column("headers_sha256", HASH, nullable=False),
        sa.Column("signed_digest", sa.LargeBinary()),
        sa.Column("signature", sa.LargeBinary()),
        sa.Column("signer_cert_sha256", HASH),
        sa.Column("ocsp_sha256", HASH),
        sa.Column("prev_hash", HASH, nullable=False),
        sa.Column("record_hash", HASH, nullable=False),
        sa.Column("body", sa.LargeBinary()),
        sa.PrimaryKeyConstraint("chain_id", "seq", name="pk_mlog_records"),
        sa.UniqueConstraint("record_id", name="uq_mlog_records_record_id"),
    )
    op.create_index("ix_mlog_records_time", "mlog_records", ["time"])
    op.create_index("ix_mlog_records_message_id", "mlog_records", ["message_id"])
    op.create_table(
        "mlog_chains",
        sa.Column("chain_id", sa.String(200), primary_key=True),
        sa.Column("node_id", sa.String(1024), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", TIME, nullable=False),
        sa.Column("stamped_seq", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "mlog_certificates",
        sa.Column("sha256", HASH, primary_key=True),
        sa.Column("der", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "mlog_ocsp_responses",
        sa.Column("sha256", HASH, primary_key=True),
        sa.Column("der", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "mlog_batches",
        sa.Column("batch_id", sa.String(250), primary_key=True),
        sa.Column("chain_id", sa.String(200), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("root", HASH, nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("tsa_name", sa.String(255), nullable=False),
        sa.Column("tsa_url", sa.Text()),
        sa.Column("gen_time", TIME, nullable=False),
        sa.Column("leaves", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_mlog_batches_chain", "mlog_batches", ["chain_id", "first_seq"])
    op.create_table(
        "mlog_archives",
        sa.Column("node_id", sa.String(1024), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("archive_id", sa.String(128), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("sha256", HASH, nullable=False),
        sa.Column("previous_sha256", HASH),
        sa.Column("chain_id", sa.String(200), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("first_time", TIME, nullable=False),
        sa.Column("last_time", TIME, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("purged_at", TIME),
        sa.PrimaryKeyConstraint("node_id", "sequence", name="pk_mlog_archives"),
    )
    op.create_index("ix_mlog_archives_chain", "mlog_archives", ["chain_id", "first_seq"])


def downgrade() -> None:
    op.drop_index("ix_mlog_archives_chain", table_name="mlog_archives")
    op.drop_table("mlog_archives")
    op.drop_index("ix_mlog_batches_chain", table_name="mlog_batches")
    op.drop_table("mlog_batches")
    op.drop_table("mlog_ocsp_responses")
    op.drop_table("mlog_certificates")
    op.drop_table("mlog_chains")
    op.drop_index("ix_mlog_records_message_id", table_name="mlog_records")
    op.drop_index("ix_mlog_records_time", table_name="mlog_records")
    op.drop_table("mlog_records")
