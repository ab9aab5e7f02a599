"""Auth certificate renewal without an outage: when a new certificate is put in use.

A node's auth certificate is what peers pin (client side) and check against the
global configuration (server side). A new one is therefore useless, and worse, an
outage, until every peer knows it. So, as X-Road does, a renewed auth certificate is
imported as **pending**: registered with the registry (``secnode register``) while the
old one stays in use, and put in use only when the global configuration lists it for
this node *and* every configuration that did not list it has expired:

    switch at  listed_at + conf_validity_seconds + conf_refresh_interval

where ``listed_at`` is the ``generated_at`` of the first configuration this node held
that lists the new certificate (configurations generated earlier expire at most
``conf_validity_seconds`` later; the refresh interval is a margin for peers' clocks).
Meanwhile the registry keeps publishing the replaced certificate too
(``previous_auth_certs``), so peers accept the node on either certificate.

The switch happens at once instead when the certificate in use is not (or no longer)
listed for this node: keeping it buys nothing. A pending certificate also needs a good,
fresh OCSP response (the OCSP job keeps it fresh) before it is put in use.

Sign certificates need no waiting period: peers check a sign certificate against the
approved CAs and its stapled OCSP response, not against a registration, so one becomes
active at import, which already requires its CA approved and its OCSP status good.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select

from secnode.core.globalconf import GlobalConf, setting
from secnode.core.jsonfmt import format_time
from secnode.home import NodeHome
from secnode.store import models

log = logging.getLogger("secnode.trust.renewal")


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def listed(conf: GlobalConf | None, node: NodeHome, digest: str | None) -> bool | None:
    """Whether ``conf`` lists ``digest`` as an auth certificate of this node (None: no conf)."""
    if conf is None:
        return None
    entry = conf.node(node.node_id)
    return entry is not None and digest is not None and entry.has_auth_cert(digest)


def switch_delay(conf: GlobalConf) -> dt.timedelta:
    """How long after ``listed_at`` every peer's valid configuration lists the new cert."""
    return dt.timedelta(
        seconds=setting(conf, "conf_validity_seconds") + setting(conf, "conf_refresh_interval")
    )


def switch_at(row: models.NodeCertificate, conf: GlobalConf) -> dt.datetime | None:
    listed_at = _utc(row.listed_at)
    return None if listed_at is None else listed_at + switch_delay(conf)


def auth_import_pending(node: NodeHome, conf: GlobalConf, digest: str) -> bool:
    """At import: wait (pending) only if the auth certificate in use is registered."""
    active = node.active_certificate("auth")
    if active is None or active.cert_sha256 == digest:
        return False
    return bool(listed(conf, node, active.cert_sha256))


def _ocsp_usable(row: models.NodeCertificate, conf: GlobalConf, now: dt.datetime) -> bool:
    this_update = _utc(row.ocsp_this_update)
    if row.ocsp_status != "good" or this_update is None:
        return False
    fresh_until = this_update + dt.timedelta(seconds=setting(conf, "ocsp_freshness_seconds"))
    next_update = _utc(row.ocsp_next_update)
    return now <= fresh_until and (next_update is None or now <= next_update)


@dataclass(frozen=True)
class PendingView:
    """What ``/health`` and ``secnode status`` say about a pending auth certificate."""

    sha256: str
    listed: bool | None
    listed_at: dt.datetime | None
    switch_at: dt.datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "sha256": self.sha256,
            "listed": self.listed,
            "listed_at": format_time(self.listed_at) if self.listed_at else None,
            "switch_at": format_time(self.switch_at) if self.switch_at else None,
        }


def pending_view(node: NodeHome, conf: GlobalConf | None) -> PendingView | None:
    row = node.pending_certificate("auth")
    if row is None:
        return None
    return PendingView(
        row.cert_sha256,
        listed(conf, node, row.cert_sha256),
        _utc(row.listed_at),
        switch_at(row, conf) if conf is not None else None,
    )


def _note_listing(row: models.NodeCertificate, is_listed: bool, conf: GlobalConf) -> None:
    """Remember the first configuration listing the pending certificate (or forget it)."""
    if is_listed and row.listed_at is None:
        row.listed_at = conf.generated_at
        log.info(
            "new auth certificate %s... is in global configuration version %d; it is put "
            "in use at %s",
            row.cert_sha256[:16],
            conf.version,
            format_time(conf.generated_at + switch_delay(conf)),
        )
    elif not is_listed and row.listed_at is not None:
        row.listed_at = None


def promote_due(
    node: NodeHome, conf: GlobalConf | None, now: dt.datetime | None = None
) -> str | None:
    """Put the pending auth certificate in use if its time has come; returns its SHA-256.

    Idempotent and safe with several processes on one database: the decision is taken
    in one transaction from the database rows and the verified configuration.
    """
    if conf is None or conf.is_expired(now):
        return None
    at = now or dt.datetime.now(dt.UTC)
    with node.session() as s:
        row = s.scalars(
            select(models.NodeCertificate)
            .where(models.NodeCertificate.usage == "auth", models.NodeCertificate.pending)
            .order_by(models.NodeCertificate.imported_at.desc())
        ).first()
        if row is None:
            return None
        active = s.scalars(
            select(models.NodeCertificate).where(
                models.NodeCertificate.usage == "auth", models.NodeCertificate.active
            )
        ).all()
        is_listed = bool(listed(conf, node, row.cert_sha256))
        _note_listing(row, is_listed, conf)
        active_listed = any(listed(conf, node, a.cert_sha256) for a in active)
        due_at = switch_at(row, conf)
        due = not active_listed or (due_at is not None and at >= due_at)
        if not due or not _ocsp_usable(row, conf, at):
            return None
        for old in active:
            old.active = False
        row.active, row.pending = True, False
        pem, digest = row.cert_pem, row.cert_sha256
    node.write_cert_file("auth", x509.load_pem_x509_certificate(pem.encode()))
    (node.path / "certs" / "auth-pending.pem").unlink(missing_ok=True)
    log.info(
        "auth certificate %s... put in use (%s)",
        digest[:16],
        "the one in use is not in the global configuration"
        if not active_listed
        else "every peer's configuration lists it",
    )
    return digest
