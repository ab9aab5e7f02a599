"""Registration requests: validate what a node POSTs, keep it pending, approve or reject.

Checks, in order (cheap before expensive, form before trust): size and JSON
form, identifiers, the request's age, both detached signatures over the exact
body bytes and that each was made by the certificate the body names, the node
is in this instance and its owner member exists, both certificates have the
right profile and chain to an approved CA, the sign certificate names the node's
owner, the optional OCSP response says ``good``, and the auth certificate is not
already someone else's. Only then is a ``pending`` row written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import Conflict, NotFound, RegistryError
from central.models import Member, RegistrationRequest, Subsystem
from central.registry.common import member_row
from central.registry.nodes import node_with_auth_cert, put_node
from central.registry.parameters import settings
from central.registry.trust import approved_ca_certs, check_member_cert
from central.store import Store, now
from certs import ocsp
from certs.chain import find_issuer
from certs.cms import CMSError, verify_detached
from certs.names import display_name
from secnode.core.cert_member import member_id_of
from secnode.core.globalconf import cert_to_pem
from secnode.core.identifiers import NodeId, SubsystemId
from secnode.core.jsonfmt import cert_sha256_hex, format_time
from secnode.core.registration import (
    Envelope,
    RegistrationBody,
    RegistrationError,
    parse_body,
    parse_envelope,
)

#: How far ``created_at`` may be from the registry's clock: limits replay of an old
#: request (e.g. after its node was removed) while tolerating modest clock skew.
MAX_REQUEST_AGE = dt.timedelta(minutes=15)
STATES = ("pending", "approved", "rejected")


def _signed_by(signature: bytes, body: bytes, cert: x509.Certificate, what: str) -> None:
    try:
        verified = verify_detached(signature, body)
    except CMSError as exc:
        raise RegistryError(f"{what} does not verify: {exc}", code="InvalidSignature") from exc
    der = cert.public_bytes(serialization.Encoding.DER)
    if verified.signer.public_bytes(serialization.Encoding.DER) != der:
        raise RegistryError(
            f"{what} was made by {display_name(verified.signer.subject)}, not by the "
            "certificate named in the request",
            code="InvalidSignature",
        )


def _check_ocsp(session: Session, der: bytes, cert: x509.Certificate) -> None:
    issuer = find_issuer(cert, approved_ca_certs(session))
    if issuer is None:  # chain was checked before; kept for type narrowing
        raise RegistryError("sign certificate issuer is not an approved CA")
    try:
        status = ocsp.validate_response(
            der, cert, issuer, max_age=settings(session)["ocsp_freshness_seconds"]
        )
    except ocsp.OCSPError as exc:
        raise RegistryError(f"sign_ocsp: {exc}", code="InvalidOcspResponse") from exc
    if status.status != "good":
        raise RegistryError(
            f"sign certificate status is {status.status} according to OCSP",
            code="CertificateRevoked",
        )


def validate(
    data: bytes, instance: str, at: dt.datetime | None = None
) -> tuple[RegistrationBody, Envelope]:
    """Form and signature checks that need no database; returns (body, envelope)."""
    when = at or now()
    try:
        envelope = parse_envelope(data)
        body = parse_body(envelope.body)
    except RegistrationError as exc:
        raise RegistryError(str(exc), code=exc.code, status=exc.status) from exc
    if body.node.instance != instance:
        raise RegistryError(
            f"node {body.node} is not in instance {instance}", code="InvalidIdentifier"
        )
    if abs(when - body.created_at) > MAX_REQUEST_AGE:
        raise RegistryError(
            f"request was created at {format_time(body.created_at)}, more than "
            f"{int(MAX_REQUEST_AGE.total_seconds() // 60)} minutes from the registry's clock "
            f"({format_time(when)}); build a fresh one",
            code="StaleRequest",
        )
    _signed_by(envelope.auth_signature, envelope.body, body.auth_cert, "auth_signature")
    _signed_by(envelope.sign_signature, envelope.body, body.sign_cert, "sign_signature")
    return body, envelope


def receive(
    store: Store,
    instance: str,
    data: bytes,
    source: str | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Validate a POSTed request and store it as ``pending``; returns ``{"id", "state"}``."""
    body, envelope = validate(data, instance, at)
    digest = hashlib.sha256(envelope.body).hexdigest()
    auth_sha = cert_sha256_hex(body.auth_cert)
    with store.change(
        f"node:{body.node}",
        "registration.receive",
        {"node": str(body.node), "source": source, "auth_cert_sha256": auth_sha},
    ) as (s, det):
        member_row(s, body.node.member)
        check_member_cert(s, body.auth_cert, "auth", "auth certificate")
        check_member_cert(s, body.sign_cert, "sign", "sign certificate")
        named = member_id_of(body.sign_cert.subject)
        if named != body.node.member:
            raise RegistryError(
                f"sign certificate names member {named}, but node {body.node} belongs to "
                f"{body.node.member}",
                code="MemberMismatch",
            )
        if envelope.sign_ocsp is not None:
            _check_ocsp(s, envelope.sign_ocsp, body.sign_cert)
        other = node_with_auth_cert(s, auth_sha)
        if other is not None:
            raise Conflict(
                f"auth certificate is already registered for node {other.identifier}",
                code="DuplicateAuthCert",
            )
        if s.scalars(
            select(RegistrationRequest).where(RegistrationRequest.body_sha256 == digest)
        ).first():
            raise Conflict("this exact request was already received", code="DuplicateRequest")
        pending = s.scalars(
            select(RegistrationRequest).where(
                RegistrationRequest.auth_cert_sha256 == auth_sha,
                RegistrationRequest.state == "pending",
            )
        ).first()
        if pending is not None:
            raise Conflict(
                f"request {pending.id} for this auth certificate is already pending",
                code="DuplicateRequest",
            )
        row = RegistrationRequest(
            state="pending",
            node_identifier=str(body.node),
            owner_identifier=str(body.node.member),
            address=body.address,
            subsystems=[str(x) for x in body.subsystems],
            auth_cert_pem=cert_to_pem(body.auth_cert),
            auth_cert_sha256=auth_sha,
            sign_cert_pem=cert_to_pem(body.sign_cert),
            body=envelope.body,
            body_sha256=digest,
            auth_signature=envelope.auth_signature,
            sign_signature=envelope.sign_signature,
            sign_ocsp=envelope.sign_ocsp,
            source=source,
            received_at=now(),
        )
        s.add(row)
        s.flush()
        det["request"] = row.id
        return {"id": row.id, "state": row.state}


# ----- operator side ----------------------------------------------------------------------
def request_view(row: RegistrationRequest, full: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "state": row.state,
        "node": row.node_identifier,
        "owner": row.owner_identifier,
        "address": row.address,
        "subsystems": list(row.subsystems),
        "auth_cert_sha256": row.auth_cert_sha256,
        "received_at": row.received_at,
        "source": row.source,
        "decided_at": row.decided_at,
        "decided_by": row.decided_by,
        "reason": row.reason,
    }
    if full:
        sign_cert = x509.load_pem_x509_certificate(row.sign_cert_pem.encode())
        auth_cert = x509.load_pem_x509_certificate(row.auth_cert_pem.encode())
        view.update(
            auth_cert_subject=display_name(auth_cert.subject),
            auth_cert_issuer=display_name(auth_cert.issuer),
            sign_cert_subject=display_name(sign_cert.subject),
            sign_cert_member=str(member_id_of(sign_cert.subject)),
            sign_cert_sha256=cert_sha256_hex(sign_cert),
            sign_ocsp="included and good at receipt" if row.sign_ocsp else "not included",
        )
    return view


def list_requests(store: Store, state: str | None = None) -> list[dict[str, Any]]:
    with store.read() as s:
        query = select(RegistrationRequest).order_by(RegistrationRequest.id)
        if state is not None:
            query = query.where(RegistrationRequest.state == state)
        return [request_view(r) for r in s.scalars(query)]


def _request_row(session: Session, request_id: int) -> RegistrationRequest:
    row = session.get(RegistrationRequest, request_id)
    if row is None:
        raise NotFound(f"registration request {request_id} does not exist")
    return row


def show_request(store: Store, request_id: int) -> dict[str, Any]:
    with store.read() as s:
        return request_view(_request_row(s, request_id), full=True)


def _pending(session: Session, request_id: int) -> RegistrationRequest:
    row = _request_row(session, request_id)
    if row.state != "pending":
        raise Conflict(f"registration request {request_id} is already {row.state}")
    return row


def approve(store: Store, operator: str, request_id: int) -> dict[str, Any]:
    """Add (or renew) the node and any new subsystems; visible from the next publish."""
    with store.change(operator, "request.approve", {"request": request_id}) as (s, det):
        row = _pending(s, request_id)
        node = NodeId.parse(row.node_identifier)
        member = s.scalars(select(Member).where(Member.identifier == row.owner_identifier)).first()
        if member is None:
            raise NotFound(f"member {row.owner_identifier} no longer exists; reject the request")
        auth_cert = x509.load_pem_x509_certificate(row.auth_cert_pem.encode())
        check_member_cert(s, auth_cert, "auth", "auth certificate")  # CA may have gone since
        added = []
        for text in row.subsystems:
            sub = SubsystemId.parse(text)
            if s.scalars(select(Subsystem).where(Subsystem.identifier == str(sub))).first():
                continue
            s.add(
                Subsystem(identifier=str(sub), member=member, code=sub.subsystem, created_at=now())
            )
            added.append(str(sub))
        put_node(s, node, row.address, auth_cert, replace=True)
        row.state, row.decided_at, row.decided_by = "approved", now(), operator
        det.update(node=str(node), subsystems_added=added)
        return request_view(row)


def reject(store: Store, operator: str, request_id: int, reason: str) -> dict[str, Any]:
    with store.change(operator, "request.reject", {"request": request_id, "reason": reason}) as (
        s,
        _,
    ):
        row = _pending(s, request_id)
        row.state, row.decided_at, row.decided_by = "rejected", now(), operator
        row.reason = reason
        return request_view(row)
