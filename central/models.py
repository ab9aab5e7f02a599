"""Tables of the central registry (SQLAlchemy 2 typed declarative models).

The schema itself is owned by the Alembic migrations in ``central/migrations``;
these classes must stay in step with them (a test compares the two).
Identifiers are stored in their string form (``JP/GOV/072028``) because that is
what every other component exchanges, and uniqueness is enforced by the database
so two concurrent operators (or a CLI and a server) cannot create duplicates.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

ID_LENGTH = 1100  # four identifier parts of at most 255 characters and their separators


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware datetimes")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: object
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class Instance(Base):
    """The one X-Road instance this registry governs (a single row)."""

    __tablename__ = "instance"

    code: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    member_class: Mapped[str] = mapped_column(String(255))
    code: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    subsystems: Mapped[list[Subsystem]] = relationship(
        back_populates="member", order_by="Subsystem.code"
    )
    nodes: Mapped[list[RegisteredNode]] = relationship(
        back_populates="owner", order_by="RegisteredNode.server_code"
    )


class Subsystem(Base):
    __tablename__ = "subsystems"
    __table_args__ = (UniqueConstraint("member_id", "code", name="uq_subsystems_member_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    code: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    member: Mapped[Member] = relationship(back_populates="subsystems")


class RegisteredNode(Base):
    """A security node: owner member, network address and its registered auth certificate."""

    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("owner_id", "server_code", name="uq_nodes_owner_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    server_code: Mapped[str] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(1000))
    auth_cert_pem: Mapped[str] = mapped_column(Text)
    auth_cert_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: The auth certificate this one replaced (renewal): still published, so peers accept the
    #: node on either while it switches; dropped by the next renewal or
    #: ``central node drop-previous-auth-cert``.
    previous_auth_cert_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_auth_cert_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    owner: Mapped[Member] = relationship(back_populates="nodes")


class ApprovedCA(Base):
    __tablename__ = "approved_cas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(1000))
    cert_pem: Mapped[str] = mapped_column(Text)
    cert_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    ocsp_urls: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ApprovedTSA(Base):
    __tablename__ = "approved_tsas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    cert_pem: Mapped[str] = mapped_column(Text)
    cert_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class GlobalGroup(Base):
    __tablename__ = "global_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    members: Mapped[list[GroupMember]] = relationship(
        back_populates="group", order_by="GroupMember.client_identifier"
    )


class GroupMember(Base):
    """A client (member or subsystem) in a global group, by identifier string."""

    __tablename__ = "global_group_members"
    __table_args__ = (
        UniqueConstraint("group_id", "client_identifier", name="uq_group_members_client"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("global_groups.id"))
    client_identifier: Mapped[str] = mapped_column(String(ID_LENGTH))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    group: Mapped[GlobalGroup] = relationship(back_populates="members")


class RegistrationRequest(Base):
    """A node's signed request to register its auth certificate (and subsystems)."""

    __tablename__ = "registration_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected
    node_identifier: Mapped[str] = mapped_column(String(ID_LENGTH))
    owner_identifier: Mapped[str] = mapped_column(String(ID_LENGTH))
    address: Mapped[str] = mapped_column(String(1000))
    subsystems: Mapped[list[str]] = mapped_column(JSON)
    auth_cert_pem: Mapped[str] = mapped_column(Text)
    auth_cert_sha256: Mapped[str] = mapped_column(String(64))
    sign_cert_pem: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # refuses replays
    auth_signature: Mapped[bytes] = mapped_column(LargeBinary)
    sign_signature: Mapped[bytes] = mapped_column(LargeBinary)
    sign_ocsp: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    source: Mapped[str | None] = mapped_column(String(255), nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(2000), nullable=True)


class Setting(Base):
    __tablename__ = "global_settings"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class SigningKey(Base):
    """A configuration signing key: ``announced`` -> ``active`` -> ``retired``."""

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    key_file: Mapped[str] = mapped_column(String(1000))
    cert_pem: Mapped[str] = mapped_column(Text)
    cert_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ConfVersion(Base):
    """One signed global configuration exactly as served (document and signature bytes)."""

    __tablename__ = "conf_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    signer_sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # publish | resign
    generated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    operator: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, object]] = mapped_column(JSON)
