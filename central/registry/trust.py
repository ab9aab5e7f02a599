"""Trust services: the approved CAs and TSAs, and the check that a certificate chains to one.

Every certificate the registry accepts from a member (a node's auth
certificate, a registration request's signature) must chain to an approved
CA, so :func:`check_member_cert` is used by the node and registration
operations too.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import Conflict, NotFound, RegistryError
from central.models import ApprovedCA, ApprovedTSA, RegisteredNode
from central.registry.common import ca_view, check_url, load_cert, tsa_view
from central.store import Store, now
from certs import profiles
from certs.chain import ChainError, find_issuer, verify_chain
from certs.names import display_name
from secnode.core.globalconf import cert_to_pem
from secnode.core.identifiers import IdentifierError, validate_part
from secnode.core.jsonfmt import cert_sha256_hex


def approved_ca_certs(session: Session) -> list[x509.Certificate]:
    return [
        x509.load_pem_x509_certificate(r.cert_pem.encode())
        for r in session.scalars(select(ApprovedCA).order_by(ApprovedCA.id))
    ]


def check_member_cert(session: Session, cert: x509.Certificate, profile: str, what: str) -> None:
    """``cert`` has ``profile`` and chains to an approved CA now."""
    try:
        profiles.require_profile(cert, profile)
    except profiles.ProfileError as exc:
        raise RegistryError(f"{what}: {exc}", code="InvalidCertificate") from exc
    try:
        verify_chain(cert, approved_ca_certs(session))
    except ChainError as exc:
        raise RegistryError(f"{what}: {exc}", code="UntrustedCertificate") from exc


def add_ca(
    store: Store, operator: str, cert_data: bytes, ocsp_urls: list[str], name: str | None = None
) -> dict[str, Any]:
    cert = load_cert(cert_data, "CA certificate")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise RegistryError(
            f"{display_name(cert.subject)} is not a CA certificate (no basicConstraints CA)"
        )
    if cert.not_valid_after_utc < now():
        raise RegistryError(f"CA certificate {display_name(cert.subject)} has expired")
    urls = [check_url(u, "OCSP URL") for u in ocsp_urls]
    digest = cert_sha256_hex(cert)
    label = name or display_name(cert.subject)
    with store.change(
        operator, "ca.add", {"name": label, "cert_sha256": digest, "ocsp_urls": urls}
    ) as (s, details):
        if s.scalars(select(ApprovedCA).where(ApprovedCA.cert_sha256 == digest)).first():
            raise Conflict(f"CA {label} is already approved")
        row = ApprovedCA(
            name=label,
            cert_pem=cert_to_pem(cert),
            cert_sha256=digest,
            ocsp_urls=urls,
            created_at=now(),
        )
        s.add(row)
        s.flush()
        details["id"] = row.id
        return ca_view(row)


def list_cas(store: Store) -> list[dict[str, Any]]:
    with store.read() as s:
        return [ca_view(r) for r in s.scalars(select(ApprovedCA).order_by(ApprovedCA.id))]


def _find_ca(session: Session, ref: str) -> ApprovedCA:
    rows = session.scalars(select(ApprovedCA)).all()
    found = [
        r
        for r in rows
        if str(r.id) == ref
        or r.name == ref
        or (len(ref) >= 8 and r.cert_sha256.startswith(ref.lower()))
    ]
    if len(found) != 1:
        raise NotFound(f"no single approved CA matches {ref!r} (give its id, name or sha256)")
    return found[0]


def remove_ca(store: Store, operator: str, ref: str, force: bool = False) -> dict[str, Any]:
    """Refused while registered nodes' auth certificates were issued by it, unless ``force``."""
    with store.change(operator, "ca.remove", {"ref": ref, "force": force}) as (s, details):
        row = _find_ca(s, ref)
        ca_cert = x509.load_pem_x509_certificate(row.cert_pem.encode())
        users = [
            n.identifier
            for n in s.scalars(select(RegisteredNode))
            if find_issuer(x509.load_pem_x509_certificate(n.auth_cert_pem.encode()), [ca_cert])
            is not None
        ]
        if users and not force:
            raise Conflict(
                f"CA {row.name} issued the auth certificates of node(s) "
                f"{', '.join(users)}; use --force to remove it anyway"
            )
        details.update(name=row.name, cert_sha256=row.cert_sha256)
        s.delete(row)
        return {"removed": row.name}


def add_tsa(store: Store, operator: str, name: str, url: str, cert_data: bytes) -> dict[str, Any]:
    try:
        validate_part(name, "TSA name")
    except IdentifierError as exc:
        raise RegistryError(str(exc)) from exc
    cert = load_cert(cert_data, "TSA certificate")
    if profiles.detect_profile(cert) != "tsa":
        raise RegistryError(
            f"{display_name(cert.subject)} is not a time-stamping "
            "certificate (needs extended key usage timeStamping)"
        )
    digest = cert_sha256_hex(cert)
    with store.change(operator, "tsa.add", {"name": name, "url": url, "cert_sha256": digest}) as (
        s,
        _,
    ):
        if s.scalars(
            select(ApprovedTSA).where(
                (ApprovedTSA.name == name) | (ApprovedTSA.cert_sha256 == digest)
            )
        ).first():
            raise Conflict(f"TSA {name} (or its certificate) is already approved")
        row = ApprovedTSA(
            name=name,
            url=check_url(url, "TSA URL"),
            cert_pem=cert_to_pem(cert),
            cert_sha256=digest,
            created_at=now(),
        )
        s.add(row)
        s.flush()
        return tsa_view(row)


def list_tsas(store: Store) -> list[dict[str, Any]]:
    with store.read() as s:
        return [tsa_view(r) for r in s.scalars(select(ApprovedTSA).order_by(ApprovedTSA.name))]


def remove_tsa(store: Store, operator: str, name: str) -> dict[str, Any]:
    with store.change(operator, "tsa.remove", {"name": name}) as (s, _):
        row = s.scalars(select(ApprovedTSA).where(ApprovedTSA.name == name)).first()
        if row is None:
            raise NotFound(f"TSA {name} is not approved")
        s.delete(row)
        return {"removed": name}
