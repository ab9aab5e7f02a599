"""Bringing a node into the federation: its certificates, subsystems, registration, status.

The steps an operator runs after ``secnode init`` and ``secnode keys new`` (see
``docs/operations.md`` for the order), as functions the ``secnode certs``,
``subsystem``, ``register`` and ``status`` commands call and print. Each refusal
raises :class:`EnrolmentError` (or the library error of the step that refused)
with a message that says what to do next.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import select

from certs.errors import SecnodeError
from certs.names import display_name
from secnode.app import admin, jobs
from secnode.core.globalconf import GlobalConf, GlobalConfError
from secnode.core.identifiers import SubsystemId, validate_part
from secnode.core.jsonfmt import format_time
from secnode.core.registration import build_request
from secnode.globalconf import ConfStore
from secnode.home import NodeHome
from secnode.registration_client import submit
from secnode.store import models
from secnode.trust import own_certs

REGISTRATION_STATE_KEY = "registration"


class EnrolmentError(SecnodeError):
    """A setup step cannot run yet; the message names the step to run first."""


def held_conf(node: NodeHome) -> tuple[GlobalConf | None, str | None]:
    """The configuration on disk (no network) and, when unusable, why."""
    try:
        conf = ConfStore(node.dir.globalconf_dir).load_last_good()
    except GlobalConfError as exc:
        return None, str(exc)
    return conf, None if conf else "no global configuration yet (run 'secnode sync')"


# ----- certificates -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Imported:
    """An imported certificate as the operator is shown it."""

    summary: dict[str, Any]
    pending: bool
    replaced: int


def import_certificate(node: NodeHome, data: bytes) -> Imported:
    """Check (key match, profile, approved CA, OCSP good) and store a certificate."""
    result = own_certs.import_certificate(node, data)
    summary = {
        "usage": result.usage,
        "subject": display_name(result.cert.subject),
        "sha256": result.sha256,
        "not_after": format_time(result.cert.not_valid_after_utc),
        "ocsp_status": result.status.status,
        "ocsp_this_update": format_time(result.status.this_update),
        "file": str(result.path),
        "replaced": result.replaced,
        "pending": result.pending,
    }
    return Imported(summary, result.pending, result.replaced)


def certificate_rows(node: NodeHome) -> list[dict[str, Any]]:
    """Imported certificates with validity, OCSP status and the age of that status."""
    now = dt.datetime.now(dt.UTC)
    with node.sessions() as s:
        rows = list(
            s.scalars(
                select(models.NodeCertificate).order_by(
                    models.NodeCertificate.usage, models.NodeCertificate.imported_at.desc()
                )
            )
        )
    out: list[dict[str, Any]] = []
    for row in rows:
        view = admin.cert_view(row)
        this_update = view.ocsp_this_update
        out.append(
            {
                "usage": row.usage,
                "active": row.active,
                "pending": row.pending,
                "subject": view.subject,
                "serial": row.serial,
                "sha256": row.cert_sha256,
                "not_before": format_time(view.not_before),
                "not_after": format_time(view.not_after),
                "ocsp_status": row.ocsp_status,
                "ocsp_this_update": format_time(this_update) if this_update else None,
                "ocsp_age_seconds": None
                if this_update is None
                else int((now - this_update).total_seconds()),
                "ocsp_error": row.ocsp_error,
            }
        )
    return out


# ----- subsystems -------------------------------------------------------------------------------
def add_subsystem(node: NodeHome, code: str) -> SubsystemId:
    """Add a subsystem of this node's member; ``register`` announces it centrally."""
    validate_part(code, "subsystem code")
    sid = SubsystemId.of(node.member_id, code)
    with node.session() as s:
        if s.scalars(select(models.Subsystem).where(models.Subsystem.code == code)).first():
            raise EnrolmentError(f"subsystem {sid} already exists")
        s.add(models.Subsystem(code=code))
    return sid


def subsystem_rows(node: NodeHome, conf: GlobalConf | None) -> list[dict[str, Any]]:
    """Subsystems and whether ``conf`` lists them (``None``: unknown, no configuration)."""
    with node.sessions() as s:
        rows = list(s.scalars(select(models.Subsystem).order_by(models.Subsystem.code)))
    out = []
    for row in rows:
        sid = SubsystemId.of(node.member_id, row.code)
        out.append(
            {
                "id": str(sid),
                "code": row.code,
                "added_at": format_time(row.added_at),
                "registration_sent_at": format_time(row.registration_sent_at)
                if row.registration_sent_at
                else None,
                "registered": None if conf is None else conf.has_client(sid),
            }
        )
    return out


# ----- registration -----------------------------------------------------------------------------
def _active(node: NodeHome, usage: str) -> models.NodeCertificate:
    row = node.active_certificate(usage)
    if row is None:
        raise EnrolmentError(f"no {usage} certificate imported; run 'secnode certs import' first")
    return row


def register(node: NodeHome, passphrase: bytes) -> dict[str, Any]:
    """Send the registration request (auth certificate + subsystems) to the registry.

    Signed with the auth key and the member's sign key; the registry operator
    approves it, and the node appears in the next published configuration. The
    request is remembered (node state) so ``status`` can say it is pending.
    """
    # A renewal registers the pending auth certificate (the one in use is registered already).
    auth_row = node.pending_certificate("auth") or _active(node, "auth")
    sign_row = _active(node, "sign")
    address = node.dir.config.server.address
    if not address:
        raise EnrolmentError(
            "[server] address is empty in secnode.toml; set the host:port other "
            "nodes use to reach this one"
        )
    with node.sessions() as s:
        subsystems = list(s.scalars(select(models.Subsystem).order_by(models.Subsystem.code)))
    ids = [SubsystemId.of(node.member_id, sub.code) for sub in subsystems]
    envelope = build_request(
        node.node_id,
        address,
        x509.load_pem_x509_certificate(auth_row.cert_pem.encode()),
        node.signer("auth", passphrase, auth_row),
        x509.load_pem_x509_certificate(sign_row.cert_pem.encode()),
        node.signer("sign", passphrase, sign_row),
        ids,
        sign_ocsp=sign_row.ocsp_der,
    )
    url = jobs.register_url(node.dir.config)
    answer = submit(url, envelope)
    sent = dt.datetime.now(dt.UTC)
    with node.session() as s:
        for sub in s.scalars(select(models.Subsystem)):
            sub.registration_sent_at = sent
    record = {
        "id": answer.get("id"),
        "state": answer.get("state"),
        "sent_at": format_time(sent),
        "url": url,
        "auth_cert_sha256": auth_row.cert_sha256,
        "subsystems": [str(i) for i in ids],
    }
    node.set_state(REGISTRATION_STATE_KEY, json.dumps(record, sort_keys=True))
    return record


def registration_state(
    node: NodeHome, conf: GlobalConf | None, auth_sha256: str | None
) -> dict[str, Any]:
    """Registration as the held configuration shows it, plus the last request sent."""
    raw = node.get_state(REGISTRATION_STATE_KEY)
    request = json.loads(raw) if raw else None
    entry = conf.node(node.node_id) if conf is not None else None
    pending = node.pending_certificate("auth")
    if conf is None:
        state = "unknown (no global configuration)"
    elif pending is not None and entry is not None and entry.has_auth_cert(pending.cert_sha256):
        state = "registered (new auth certificate registered, switching)"
    elif (
        pending is not None
        and request is not None
        and (request.get("auth_cert_sha256") == pending.cert_sha256)
    ):
        state = "registered (new auth certificate pending approval)"
    elif pending is not None:
        state = "registered (new auth certificate imported: run 'secnode register')"
    elif entry is not None and auth_sha256 is not None and entry.has_auth_cert(auth_sha256):
        state = "registered"
    elif request is not None and request.get("auth_cert_sha256") == auth_sha256:
        state = "pending approval" + (" (new auth certificate)" if entry is not None else "")
    elif entry is not None:
        state = "registered with another auth certificate"
    else:
        state = "not registered"
    return {
        "state": state,
        "registered": state == "registered" or state.startswith("registered ("),
        "address": entry.address if entry else None,
        "request": request,
    }


def status_report(node: NodeHome) -> dict[str, Any]:
    """Node id, registration, configuration, certificates and health, from disk only."""
    conf, conf_error = held_conf(node)
    result = admin.node_health(node, conf, conf_error)
    auth = result.report["certificates"]["auth"]
    return {
        "node": str(node.node_id),
        "member": str(node.member_id),
        "address": node.dir.config.server.address,
        "central": jobs.central_base(node.dir.config),
        "registration": registration_state(node, conf, auth["sha256"] if auth else None),
        "subsystems": subsystem_rows(node, conf),
        "conf": result.report["conf"],
        "certificates": result.report["certificates"],
        "health": {"status": result.status, "reasons": result.reasons, "warnings": result.warnings},
    }
