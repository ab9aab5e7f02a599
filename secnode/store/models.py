"""SQLAlchemy models of the node's own state (certificates, subsystems, services, rights)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NodeCertificate(Base):
    """An imported auth or sign certificate, with the node's cached OCSP response for it."""

    __tablename__ = "node_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    usage: Mapped[str] = mapped_column(String(8))  # auth | sign
    cert_pem: Mapped[str] = mapped_column(Text)
    cert_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(80))
    not_after: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    key_file: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # in use
    #: Imported but not in use yet: a renewed auth certificate waits until the global
    #: configuration has listed it long enough for every peer to know it (secnode.trust.renewal).
    pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: ``generated_at`` of the first configuration this node held that lists this certificate
    #: for it (the switch waits until every older configuration has expired).
    listed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ocsp_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    ocsp_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    ocsp_this_update: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    ocsp_next_update: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    ocsp_fetched_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    ocsp_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    ocsp_failures: Mapped[int] = mapped_column(Integer, default=0)


class Subsystem(Base):
    __tablename__ = "subsystems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(255), unique=True)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    registration_sent_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class NodeState(Base):
    """Small key/value facts (registration request id, last configuration version, ...)."""

    __tablename__ = "node_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Service(Base):
    """A service this node provides for one of its member's subsystems."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("subsystem", "service_code", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subsystem: Mapped[str] = mapped_column(String(255))
    service_code: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(255), default="")
    type: Mapped[str] = mapped_column(String(8))  # rest | soap
    url: Mapped[str] = mapped_column(Text)
    timeout: Mapped[float] = mapped_column(Float, default=30.0)
    openapi: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_bodies: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    wsdl: Mapped[str | None] = mapped_column(Text, nullable=True)  # SOAP: served by getWsdl
    wsdl_source: Mapped[str | None] = mapped_column(Text, nullable=True)  # file or URL (refresh)
    # TLS towards an https:// provider system (secnode.trust.provider_tls): pin | ca | system
    tls_trust: Mapped[str | None] = mapped_column(String(8), nullable=True)
    tls_pin: Mapped[str | None] = mapped_column(String(64), nullable=True)  # SHA-256 hex of DER
    tls_ca: Mapped[str | None] = mapped_column(Text, nullable=True)  # PEM bundle
    tls_client_cert: Mapped[bool] = mapped_column(Boolean, default=False)  # present internal cert
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AccessRight(Base):
    """Grant of one service to a client subsystem/member or a global group (deny by default)."""

    __tablename__ = "access_rights"
    __table_args__ = (UniqueConstraint("service_id", "client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    client: Mapped[str] = mapped_column(String(1024))  # subsystem/member id or group:CODE
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ClientWhitelist(Base):
    """Which internal systems (certificate hash or address) may act as which subsystem."""

    __tablename__ = "client_whitelist"
    __table_args__ = (UniqueConstraint("subsystem", "kind", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subsystem: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(8))  # cert | address | any
    value: Mapped[str] = mapped_column(String(255))


class SeenMessageId(Base):
    """Replay protection: (client, message id) pairs seen within the replay window.

    The unique constraint decides between racing processes; the index on ``seen_at``
    keeps the purge of expired rows short (secnode.store.replay).
    """

    __tablename__ = "seen_message_ids"
    __table_args__ = (
        UniqueConstraint("client", "message_id"),
        Index("ix_seen_message_ids_seen_at", "seen_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(String(1024))
    message_id: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
