"""The policy store's tables (SQLAlchemy Core; created by Alembic revision ``0003_policy``).

Registry entities are kept as the canonical JSON of the pure core's codecs (one row
per entity, a few key columns for lookups), so the database never holds a shape
the strict loader would refuse and an export is the same document an operator
imported. Records (decisions, provisions, receipts, events) are append-only rows.

Times are canonical UTC text ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: exact and fixed-width
on SQLite and PostgreSQL alike, so text order is time order for range queries
(fiscal years, retention).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()
TIME = String(27)
ID = String(1024)

#: One row (id = 1): the generation every registry change bumps (processes sharing the
#: database reload their snapshot when it moves), whether the policy is enforced, settings.
state = Table(
    "pol_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", BigInteger, nullable=False),
    Column("enforcing", Boolean, nullable=False),
    Column("policy_version", Text),
    Column("settings", Text, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

#: Members, purposes, ordinance bases, exception profiles, service classifications.
registry = Table(
    "pol_registry",
    metadata,
    Column("kind", String(32), nullable=False),
    Column("key", ID, nullable=False),
    Column("doc", Text, nullable=False),
    Column("updated_at", TIME, nullable=False),
    PrimaryKeyConstraint("kind", "key", name="pk_pol_registry"),
)

#: Every version of every agreement; the highest version of a uid is the current one.
agreements = Table(
    "pol_agreements",
    metadata,
    Column("uid", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("doc", Text, nullable=False),
    Column("added_at", TIME, nullable=False),
    PrimaryKeyConstraint("uid", "version", name="pk_pol_agreements"),
)

consents = Table(
    "pol_consents",
    metadata,
    Column("consent_id", String(255), primary_key=True),
    Column("subject_ref", String(255), nullable=False),
    Column("controller", ID, nullable=False),
    Column("status", String(32), nullable=False),
    Column("doc", Text, nullable=False),
    Column("updated_at", TIME, nullable=False),
    Index("ix_pol_consents_subject", "subject_ref"),
)

stop_requests = Table(
    "pol_stop_requests",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("subject_ref", String(255), nullable=False),
    Column("doc", Text, nullable=False),
    Column("added_at", TIME, nullable=False),
    Index("ix_pol_stop_requests_subject", "subject_ref"),
)

#: Imported policy documents, verbatim in canonical form (what was loaded, when, by whom).
documents = Table(
    "pol_documents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("imported_at", TIME, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("source", Text),
    Column("policy_version", Text),
    Column("digest", String(80), nullable=False),
    Column("document", Text, nullable=False),
)

#: Registry changes: who changed what, when (agreements, classifications, profiles, ...).
changes = Table(
    "pol_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", TIME, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("key", ID, nullable=False),
    Column("detail", Text),
    Index("ix_pol_changes_at", "at"),
)

consent_events = Table(
    "pol_consent_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", TIME, nullable=False),
    Column("consent_id", String(255), nullable=False),
    Column("subject_ref", String(255), nullable=False),
    Column("event", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("detail", Text),
    Index("ix_pol_consent_events_subject", "subject_ref"),
)

#: The decision log: every decision, allow and deny, on both sides.
decisions = Table(
    "pol_decisions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", TIME, nullable=False),
    Column("side", String(8), nullable=False),
    Column("message_id", String(255)),
    Column("client", ID),
    Column("recipient", ID),
    Column("service", ID),
    Column("purpose", Text),
    Column("basis", String(64)),
    Column("agreement", String(300)),
    Column("consent_id", String(255)),
    Column("subject_ref", String(255)),
    Column("allow", Boolean, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("article", Text),
    Column("entry", Text, nullable=False),
    Column("entry_sha256", String(64), nullable=False),
    Column("retain_until", TIME, nullable=False),
    Index("ix_pol_decisions_at", "at"),
    Index("ix_pol_decisions_subject", "subject_ref"),
    Index("ix_pol_decisions_message", "message_id"),
    Index("ix_pol_decisions_flow", "client", "service", "at"),  # recurrence (0006)
)

#: Provider records (APPI Art. 29 items), one per provision, on the provider node.
provisions = Table(
    "pol_provisions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", TIME, nullable=False),
    Column("message_id", String(255)),
    Column("decision_sha256", String(64), nullable=False),
    Column("recipient", ID, nullable=False),
    Column("service", ID, nullable=False),
    Column("subject_ref", String(255)),
    Column("basis", String(64), nullable=False),
    Column("record_type", String(32), nullable=False),
    Column("record", Text, nullable=False),
    Column("retain_until", TIME, nullable=False),
    Index("ix_pol_provisions_subject", "subject_ref"),
    Index("ix_pol_provisions_at", "at"),
)

#: Receipt records (APPI Art. 30 items), one per received provision, on the client node.
receipts = Table(
    "pol_receipts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", TIME, nullable=False),
    Column("message_id", String(255)),
    Column("provider", ID, nullable=False),
    Column("service", ID, nullable=False),
    Column("client", ID, nullable=False),
    Column("subject_ref", String(255)),
    Column("basis", String(64)),
    Column("statement_sha256", String(64), nullable=False),
    Column("record", Text, nullable=False),
    Column("retain_until", TIME, nullable=False),
    Index("ix_pol_receipts_subject", "subject_ref"),
)

#: Allowed provisions per agreement and JST day (quotas; the decision log is the source).
usage = Table(
    "pol_usage",
    metadata,
    Column("agreement_uid", String(255), nullable=False),
    Column("day", String(10), nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("agreement_uid", "day", name="pk_pol_usage"),
)
