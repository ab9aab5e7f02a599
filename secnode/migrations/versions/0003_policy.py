"""policy store: registry, agreements, consents, stop requests, decision log, records

Revision ID: 0003_policy
Revises: 0002_messagelog
Create Date: 2026-11-26 09:00:00

Spelled out (not derived from secnode.policy.tables) so that later schema
changes never rewrite what this revision did.
"""
from alembic import op
import sqlalchemy as sa


revision = "0003_policy"
down_revision = "0002_messagelog"
branch_labels = None
depends_on = None

TIME = sa.String(27)
ID = sa.String(1024)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pol_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("enforcing", sa.Boolean(), nullable=False),
        sa.Column("policy_version", sa.Text()),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_table(
        "pol_registry",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", ID, nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_pol_registry"),
    )
    op.create_table(
        "pol_agreements",
        sa.Column("uid", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("added_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("uid", "version", name="pk_pol_agreements"),
    )
    op.create_table(
        "pol_consents",
        sa.Column("consent_id", sa.String(255), primary_key=True),
        sa.Column("subject_ref", sa.String(255), nullable=False),
        sa.Column("controller", ID, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_pol_consents_subject", "pol_consents", ["subject_ref"])
    op.create_table(
        "pol_stop_requests",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("subject_ref", sa.String(255), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("added_at", TIME, nullable=False),
    )
    op.create_index("ix_pol_stop_requests_subject", "pol_stop_requests", ["subject_ref"])
    op.create_table(
        "pol_documents",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("imported_at", TIME, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("policy_version", sa.Text()),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
    )
    op.create_table(
        "pol_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", ID, nullable=False),
        sa.Column("detail", sa.Text()),
    )
    op.create_index("ix_pol_changes_at", "pol_changes", ["at"])
    op.create_table(
        "pol_consent_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("consent_id", sa.String(255), nullable=False),
        sa.Column("subject_ref", sa.String(255), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text()),
    )
    op.create_index("ix_pol_consent_events_subject", "pol_consent_events", ["subject_ref"])
    op.create_table(
        "pol_decisions",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("message_id", sa.String(255)),
        sa.Column("client", ID),
        sa.Column("recipient", ID),
        sa.Column("service", ID),
        sa.Column("purpose", sa.Text()),
        sa.Column("basis", sa.String(64)),
        sa.Column("agreement", sa.String(300)),
        sa.Column("consent_id", sa.String(255)),
        sa.Column("subject_ref", sa.String(255)),
        sa.Column("allow", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("article", sa.Text()),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("entry_sha256", sa.String(64), nullable=False),
        sa.Column("retain_until", TIME, nullable=False),
    )
    op.create_index("ix_pol_decisions_at", "pol_decisions", ["at"])
    op.create_index("ix_pol_decisions_subject", "pol_decisions", ["subject_ref"])
    op.create_index("ix_pol_decisions_message", "pol_decisions", ["message_id"])
    op.create_table(
        "pol_provisions",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("message_id", sa.String(255)),
        sa.Column("decision_sha256", sa.String(64), nullable=False),
        sa.Column("recipient", ID, nullable=False),
        sa.Column("service", ID, nullable=False),
        sa.Column("subject_ref", sa.String(255)),
        sa.Column("basis", sa.String(64), nullable=False),
        sa.Column("record_type", sa.String(32), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("retain_until", TIME, nullable=False),
    )
    op.create_index("ix_pol_provisions_subject", "pol_provisions", ["subject_ref"])
    op.create_index("ix_pol_provisions_at", "pol_provisions", ["at"])
    op.create_table(
        "pol_receipts",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("message_id", sa.String(255)),
        sa.Column("provider", ID, nullable=False),
        sa.Column("service", ID, nullable=False),
        sa.Column("client", ID, nullable=False),
        sa.Column("subject_ref", sa.String(255)),
        sa.Column("basis", sa.String(64)),
        sa.Column("statement_sha256", sa.String(64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("retain_until", TIME, nullable=False),
    )
    op.create_index("ix_pol_receipts_subject", "pol_receipts", ["subject_ref"])
    op.create_table(
        "pol_usage",
        sa.Column("agreement_uid", sa.String(255), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("agreement_uid", "day", name="pk_pol_usage"),
    )


def downgrade() -> None:
    for name in ("pol_usage", "pol_receipts", "pol_provisions", "pol_decisions",
                 "pol_consent_events", "pol_changes", "pol_documents", "pol_stop_requests",
                 "pol_consents", "pol_agreements", "pol_registry", "pol_state"):
        op.drop_table(name)
