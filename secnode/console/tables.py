"""The console's tables in the node database (created by migration 0009_console).

SQLAlchemy Core, like the policy tables: the console reads and writes rows, it keeps
no object graph. ``admin_audit`` is append-only: the migration adds triggers that refuse
UPDATE and DELETE on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

users = Table(
    "console_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),  # operator | auditor
    Column("password_hash", Text, nullable=False),  # argon2id, PHC string
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", String(32), nullable=False),
    Column("password_changed_at", String(32), nullable=False),
)

sessions = Table(
    "console_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # console | resident
    Column("principal", String(255), nullable=False),  # username or subject reference
    Column("csrf", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
)

audit = Table(
    "admin_audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", String(32), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=False),
    Column("outcome", String(16), nullable=False),  # ok | refused
    Column("detail", Text, nullable=False),
)

access_codes = Table(
    "disclosure_codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subject_ref", String(255), nullable=False, index=True),
    Column("code_hash", Text, nullable=False),  # argon2id of the code; the code is never stored
    Column("issued_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
    Column("issued_by", String(255), nullable=False),
    Column("used_at", String(32), nullable=True),
    Column("failures", Integer, nullable=False, default=0),
)

resident_requests = Table(
    "disclosure_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", String(32), nullable=False),
    Column("subject_ref", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # withdraw | stop
    Column("target", String(255), nullable=False),  # consent id, or recipient for a stop
    Column("note", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open (the privacy office acts on it)
)
