"""Build, sign and record global configuration versions.

``publish`` snapshots the registry; ``resign`` re-issues the last published
content with a new version and expiry (what ``central serve`` does on a
schedule, so a healthy federation never expires and unpublished edits are never
leaked by the timer). Versions are allocated inside the inserting transaction
and are the primary key, so two writers can never issue the same number.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from central import signing
from central.config import CentralConfig
from central.errors import NotFound, RegistryError
from central.models import ApprovedCA, ApprovedTSA, ConfVersion, GlobalGroup, Member, RegisteredNode
from central.registry.parameters import settings
from central.store import Store, now
from certs.cms import sign_detached
from secnode.core.globalconf import FORMAT
from secnode.core.jsonfmt import canonical_json, cert_sha256_hex, format_time

#: Scheduled re-signings kept in the database (published versions are all kept). Nodes only
#: ever ask for the version they were just told about, so a short tail is enough.
KEEP_RESIGNED = 50
#: Fields that describe the registry; the rest (version, times, next anchors) belong to
#: one signing of it and are renewed by :func:`resign`.
CONTENT_KEYS = (
    "instance",
    "members",
    "nodes",
    "approved_cas",
    "approved_tsas",
    "groups",
    "settings",
)


def node_entry(n: RegisteredNode) -> dict[str, Any]:
    """A node as published; ``previous_auth_certs`` only while a renewal keeps the old one
    (so documents without renewals are byte-identical to the older format)."""
    entry: dict[str, Any] = {
        "id": n.identifier,
        "owner": n.owner.identifier,
        "address": n.address,
        "auth_cert_sha256": n.auth_cert_sha256,
        "auth_cert": n.auth_cert_pem,
    }
    if n.previous_auth_cert_sha256 and n.previous_auth_cert_pem:
        entry["previous_auth_certs"] = [
            {"sha256": n.previous_auth_cert_sha256, "cert": n.previous_auth_cert_pem}
        ]
    return entry


def snapshot(session: Session, instance: str) -> dict[str, Any]:
    """The registry's current content in document form (lists sorted for determinism)."""
    members = [
        {
            "id": m.identifier,
            "name": m.name,
            "subsystems": sorted(s.identifier for s in m.subsystems),
        }
        for m in session.scalars(select(Member).order_by(Member.identifier))
    ]
    nodes = [
        node_entry(n)
        for n in session.scalars(select(RegisteredNode).order_by(RegisteredNode.identifier))
    ]
    cas = [
        {
            "name": c.name,
            "cert": c.cert_pem,
            "cert_sha256": c.cert_sha256,
            "ocsp_urls": list(c.ocsp_urls),
        }
        for c in session.scalars(select(ApprovedCA).order_by(ApprovedCA.cert_sha256))
    ]
    tsas = [
        {"name": t.name, "url": t.url, "cert": t.cert_pem, "cert_sha256": t.cert_sha256}
        for t in session.scalars(select(ApprovedTSA).order_by(ApprovedTSA.name))
    ]
    groups = [
        {
            "code": g.code,
            "description": g.description,
            "members": sorted(m.client_identifier for m in g.members),
        }
        for g in session.scalars(select(GlobalGroup).order_by(GlobalGroup.code))
    ]
    return {
        "instance": instance,
        "members": members,
        "nodes": nodes,
        "approved_cas": cas,
        "approved_tsas": tsas,
        "groups": groups,
        "settings": settings(session),
    }


def latest(session: Session) -> ConfVersion | None:
    return session.scalars(select(ConfVersion).order_by(ConfVersion.version.desc())).first()


def _issue(
    session: Session,
    config: CentralConfig,
    passphrase: bytes,
    content: dict[str, Any],
    kind: str,
    at: dt.datetime,
) -> ConfVersion:
    """Sign ``content`` as the next version with the active key and store it."""
    active = signing.active_key(session)
    cert, signer = signing.load_signer(config, active, passphrase)
    version = int(session.scalar(select(func.max(ConfVersion.version))) or 0) + 1
    validity = int(content["settings"]["conf_validity_seconds"])
    generated = at.replace(microsecond=0)
    expires = generated + dt.timedelta(seconds=validity)
    document = canonical_json(
        {
            **content,
            "format": FORMAT,
            "version": version,
            "generated_at": format_time(generated),
            "expires_at": format_time(expires),
            "next_anchors": [k.cert_pem for k in signing.announced_keys(session)],
        }
    )
    row = ConfVersion(
        version=version,
        document=document,
        signature=sign_detached(document, cert, signer),
        signer_sha256=cert_sha256_hex(cert),
        kind=kind,
        generated_at=generated,
        expires_at=expires,
    )
    session.add(row)
    session.flush()
    if kind == "resign":  # scheduled copies carry no news: keep only the recent ones
        session.execute(
            delete(ConfVersion).where(
                ConfVersion.kind == "resign", ConfVersion.version <= version - KEEP_RESIGNED
            )
        )
    return row


def summary(row: ConfVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "kind": row.kind,
        "generated_at": row.generated_at,
        "expires_at": row.expires_at,
        "signer_sha256": row.signer_sha256,
        "document_bytes": len(row.document),
    }


#: Attempts at taking the next version number when other processes issue versions too.
VERSION_ATTEMPTS = 5
T = TypeVar("T")


def next_version_retried(issue: Callable[[], T]) -> T:
    """Run a transaction that issues a version again if another process took its number.

    The next number is ``max(version) + 1`` read inside the transaction; ``central conf
    publish`` and the re-signer of a running ``central serve`` (or two of them) can read the
    same maximum, and the second commit then breaks the version's uniqueness. Nothing of the
    failed transaction is kept, so issuing it again with a fresh maximum is safe.
    """
    for attempt in range(1, VERSION_ATTEMPTS + 1):
        try:
            return issue()
        except RegistryError as exc:
            if not isinstance(exc.__cause__, IntegrityError) or attempt == VERSION_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def publish(
    store: Store, config: CentralConfig, operator: str, passphrase: bytes
) -> dict[str, Any]:
    """Publish the registry as it is now (a new version)."""

    def issue() -> dict[str, Any]:
        with store.change(operator, "conf.publish") as (s, details):
            row = _issue(s, config, passphrase, snapshot(s, config.instance), "publish", now())
            details.update(version=row.version, expires_at=format_time(row.expires_at))
            return summary(row)

    return next_version_retried(issue)


def resign_in(
    session: Session, config: CentralConfig, passphrase: bytes, kind: str = "resign"
) -> ConfVersion | None:
    """Re-issue the latest content in ``session``'s transaction; None if nothing published."""
    previous = latest(session)
    if previous is None:
        return None
    data = json.loads(previous.document)
    content = {key: data[key] for key in CONTENT_KEYS}
    return _issue(session, config, passphrase, content, kind, now())


def resign(
    store: Store, config: CentralConfig, operator: str, passphrase: bytes, reason: str = "schedule"
) -> dict[str, Any]:
    """Re-issue the latest content with a new version, expiry, signer and next anchors."""

    def issue() -> dict[str, Any]:
        with store.change(operator, "conf.resign", {"reason": reason}) as (s, details):
            row = resign_in(s, config, passphrase)
            if row is None:
                raise NotFound("nothing has been published yet; run 'central conf publish'")
            details.update(version=row.version, expires_at=format_time(row.expires_at))
            return summary(row)

    return next_version_retried(issue)


@dataclass(frozen=True)
class Head:
    """The newest version's schedule, without its (possibly large) document."""

    version: int
    generated_at: dt.datetime
    expires_at: dt.datetime

    @property
    def resign_at(self) -> dt.datetime:
        """A third into the validity: at least two thirds remain for nodes to fetch it."""
        return self.generated_at + (self.expires_at - self.generated_at) / 3


def head(store: Store) -> Head | None:
    """The newest version's number and times (one small query; the re-signer polls it)."""
    with store.read() as s:
        row = s.execute(
            select(ConfVersion.version, ConfVersion.generated_at, ConfVersion.expires_at)
            .order_by(ConfVersion.version.desc())
            .limit(1)
        ).first()
    return Head(row.version, row.generated_at, row.expires_at) if row is not None else None


def resign_due(store: Store, at: dt.datetime | None = None) -> bool:
    """True when a third of the latest version's validity has passed (False if none exists)."""
    newest = head(store)
    return newest is not None and (at or now()) >= newest.resign_at


def get_version(store: Store, version: int | None = None) -> ConfVersion | None:
    with store.read() as s:
        if version is None:
            return latest(s)
        return s.get(ConfVersion, version)


def list_versions(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    with store.read() as s:
        rows = s.scalars(select(ConfVersion).order_by(ConfVersion.version.desc()).limit(limit))
        return [summary(r) for r in rows]
