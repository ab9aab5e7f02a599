"""The services a node provides, their access rights, and the local systems allowed to call out.

The operations behind ``secnode service``, ``secnode acl`` and ``secnode
client`` (the commands only parse options and print), so the rules (a service
belongs to this node's member, a URL is http(s), a caller rule names exactly one
kind, no duplicates) hold for any caller, not only the CLI. Refusals raise
:class:`ServiceError`.
"""

from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certs.ca import load_certificate
from certs.errors import SecnodeError
from secnode.core.identifiers import (
    IdentifierError,
    MemberId,
    ServiceId,
    SubsystemId,
    parse_client,
)
from secnode.core.wsdl import WsdlError, check_wsdl
from secnode.home import NodeHome
from secnode.store import models
from secnode.trust import provider_tls
from secnode.trust.provider_tls import ProviderTls, ProviderTlsError


class ServiceError(SecnodeError):
    """A service, access-right or caller operation was refused; the message says why."""


@dataclass(frozen=True)
class NewService:
    """What ``service add`` stores: the provider system behind one service code."""

    subsystem: str
    service: str
    url: str
    kind: str  # rest | soap
    version: str = ""
    openapi: Path | None = None
    timeout: float = 30.0
    log_bodies: bool | None = None
    wsdl: str | None = None
    """A SOAP service's WSDL: a file or an http(s) URL (read now, and again on refresh)."""
    tls_ca: str | None = None
    """https: a CA file the provider's certificate must chain to, or ``system``."""
    tls_pin: str | None = None
    """https: the SHA-256 of the provider's certificate."""
    tls_client_cert: bool = False
    """https: present the node's internal TLS client certificate (mutual TLS)."""


# ----- who provides or calls: a subsystem, or the member itself ---------------------------------
def owner_of(node: NodeHome, stored: str) -> SubsystemId | MemberId:
    """The subsystem a stored code names, or the member itself for ``""``."""
    return SubsystemId.of(node.member_id, stored) if stored else node.member_id


def stored_owner(node: NodeHome, given: str) -> str:
    """The stored form of a ``SUBSYSTEM`` argument: a subsystem code as it is, or ``""`` for
    the node's member itself (given as its identifier ``INSTANCE/CLASS/CODE``), which X-Road
    lets provide services and call them without a subsystem."""
    if "/" not in given:
        if not given:
            raise ServiceError(
                f"give a subsystem code, or the member {node.member_id} for its own services"
            )
        try:
            SubsystemId.of(node.member_id, given)
        except IdentifierError as exc:
            raise ServiceError(str(exc)) from exc
        return given
    try:
        member = MemberId.parse(given)
    except IdentifierError as exc:
        raise ServiceError(
            f"{given!r}: give a subsystem code or this node's member id ({node.member_id})"
        ) from exc
    if member != node.member_id:
        raise ServiceError(f"{member} is not this node's member {node.member_id}")
    return ""


# ----- services ---------------------------------------------------------------------------------
def service_id(node: NodeHome, row: models.Service) -> ServiceId:
    return ServiceId.of(owner_of(node, row.subsystem), row.service_code, row.version or None)


def find_service(node: NodeHome, session: Session, service: str) -> models.Service:
    """Find a service by ``SUBSYSTEM/CODE[/VERSION]`` (``/CODE`` for a member's own) or a full
    service identifier (``INSTANCE/CLASS/CODE//SERVICE`` for a member's own)."""
    parts = service.split("/")
    if len(parts) >= 5:
        sid = ServiceId.parse(service)
        if sid.member != node.member_id:
            raise ServiceError(f"{service} is not a service of this node's member {node.member_id}")
        sub, code, version = sid.subsystem or "", sid.service, sid.version or ""
    elif len(parts) in (2, 3):  # "/CODE[/VERSION]": a member's own service
        sub, code, version = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    else:
        raise ServiceError(f"service {service!r}: use SUBSYSTEM/SERVICE[/VERSION] or a full id")
    row = session.scalars(
        select(models.Service).where(
            models.Service.subsystem == sub,
            models.Service.service_code == code,
            models.Service.version == version,
        )
    ).first()
    if row is None:
        raise ServiceError(f"unknown service {service}")
    return row


def add_service(node: NodeHome, new: NewService) -> ServiceId:
    """Store a service of this node's member (of a subsystem, or of the member itself); it is
    denied to everyone until granted."""
    subsystem = stored_owner(node, new.subsystem)
    try:
        sid = ServiceId.of(owner_of(node, subsystem), new.service, new.version or None)
    except IdentifierError as exc:
        raise ServiceError(str(exc)) from exc
    if not subsystem and new.kind == "rest":
        raise ServiceError(
            f"{sid}: X-Road's REST protocol addresses only services of subsystems "
            "(/r1/INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE, pr-rest §4.1); "
            "a member's own service must be a SOAP service"
        )
    if not new.url.startswith(("http://", "https://")):
        raise ServiceError("--url must be an http:// or https:// URL")
    if new.timeout <= 0:
        raise ServiceError("--timeout must be positive")
    try:
        text = new.openapi.read_text(encoding="utf-8") if new.openapi else None
    except UnicodeDecodeError as exc:
        raise ServiceError(f"{new.openapi}: an OpenAPI description must be UTF-8 text") from exc
    if new.wsdl is not None and new.kind != "soap":
        raise ServiceError("--wsdl describes a SOAP service; use --openapi for a REST service")
    wsdl = load_wsdl(new.wsdl, new.service) if new.wsdl is not None else None
    tls = _tls_setting(node, new.url, new.tls_ca, new.tls_pin, new.tls_client_cert)
    try:
        with node.session() as s:
            s.add(
                models.Service(
                    subsystem=subsystem,
                    service_code=new.service,
                    version=new.version,
                    type=new.kind,
                    url=new.url,
                    timeout=new.timeout,
                    openapi=text,
                    log_bodies=new.log_bodies,
                    wsdl=wsdl,
                    wsdl_source=new.wsdl,
                    **_tls_columns(tls),
                )
            )
    except IntegrityError as exc:
        raise ServiceError(f"service {sid} already exists") from exc
    return sid


def edit_service(
    node: NodeHome,
    service: str,
    url: str | None = None,
    timeout: float | None = None,
    openapi_text: str | None = None,
    clear_openapi: bool = False,
) -> ServiceId:
    """Change a service's URL, timeout or OpenAPI/WSDL description (what is not given stays)."""
    if url is not None and not url.startswith(("http://", "https://")):
        raise ServiceError("the URL must be an http:// or https:// URL")
    if timeout is not None and timeout <= 0:
        raise ServiceError("the timeout must be positive")
    with node.session() as s:
        row = find_service(node, s, service)
        if url is not None:
            _check_url_tls(url, row.tls_trust)
            row.url = url
        if timeout is not None:
            row.timeout = timeout
        if clear_openapi:
            row.openapi = None
        elif openapi_text:
            row.openapi = openapi_text
        return service_id(node, row)


def list_services(node: NodeHome) -> list[dict[str, Any]]:
    """Every service with its settings and the clients it is granted to."""
    with node.sessions() as s:
        rights: dict[int, list[str]] = {}
        for r in s.scalars(select(models.AccessRight)):
            rights.setdefault(r.service_id, []).append(r.client)
        return [
            {
                "id": str(service_id(node, r)),
                "type": r.type,
                "url": r.url,
                "timeout": r.timeout,
                "openapi": r.openapi is not None,
                "log_bodies": r.log_bodies,
                "wsdl": r.wsdl_source,
                "tls": _describe(tls_of(r)),
                "granted": sorted(rights.get(r.id, [])),
            }
            for r in s.scalars(select(models.Service).order_by(models.Service.id))
        ]


# ----- TLS towards the provider system ----------------------------------------------------------
def tls_of(row: models.Service) -> ProviderTls | None:
    """The stored TLS setting of a service (None: plain http)."""
    if row.tls_trust is None:
        return None
    return ProviderTls(row.tls_trust, row.tls_pin, row.tls_ca, bool(row.tls_client_cert))


def _describe(tls: ProviderTls | None) -> str:
    return tls.describe() if tls else "-"


def _tls_setting(
    node: NodeHome, url: str, ca: str | None, pin: str | None, client_cert: bool
) -> ProviderTls | None:
    try:
        tls = provider_tls.choose(url, ca, pin, client_cert)
    except ProviderTlsError as exc:
        raise ServiceError(str(exc)) from exc
    return None if tls is None else _check_client_cert(node, tls)


def _check_client_cert(node: NodeHome, tls: ProviderTls) -> ProviderTls:
    """Mutual TLS needs the internal client certificate (the CLI makes it first)."""
    if tls.client_cert and provider_tls.internal_cert_sha256(node.path) is None:
        raise ServiceError(
            "--tls-client-cert: this node has no internal TLS client certificate yet "
            "('secnode service tls SERVICE --tls-client-cert' makes it)"
        )
    return tls


def _tls_columns(tls: ProviderTls | None) -> dict[str, Any]:
    return {
        "tls_trust": tls.trust if tls else None,
        "tls_pin": tls.pin if tls else None,
        "tls_ca": tls.ca_pem if tls else None,
        "tls_client_cert": bool(tls and tls.client_cert),
    }


def _check_url_tls(url: str, trust: str | None) -> None:
    if not url.startswith(("http://", "https://")):
        raise ServiceError("the URL must be an http:// or https:// URL")
    if url.startswith("https://") and trust is None:
        raise ServiceError(
            "an https:// URL needs a TLS setting first: 'secnode service tls SERVICE "
            "--tls-pin SHA256 | --tls-ca FILE | --tls-ca system'"
        )
    if url.startswith("http://") and trust is not None:
        raise ServiceError(
            "the service has a TLS setting; an http:// URL would ignore it "
            "(clear it with 'secnode service tls SERVICE --plain' first)"
        )


def set_service_tls(
    node: NodeHome,
    service: str,
    ca: str | None = None,
    pin: str | None = None,
    client_cert: bool | None = None,
    plain: bool = False,
) -> dict[str, Any]:
    """Change a service's TLS setting (what is not given stays); returns :func:`service_tls`.

    ``plain``: drop the setting (the URL must then be http://)."""
    with node.session() as s:
        row = find_service(node, s, service)
        if plain:
            if ca is not None or pin is not None or client_cert:
                raise ServiceError("--plain drops the TLS setting; give no other --tls option")
            if row.url.startswith("https://"):
                raise ServiceError(f"{service} is at an https:// URL; it needs a TLS setting")
            tls = None
        else:
            old = tls_of(row)
            mutual = bool(old and old.client_cert) if client_cert is None else client_cert
            if ca is None and pin is None and old is not None:  # keep the trust, change mTLS
                tls = _check_client_cert(node, ProviderTls(old.trust, old.pin, old.ca_pem, mutual))
            else:
                tls = _tls_setting(node, row.url, ca, pin, mutual)
        for key, value in _tls_columns(tls).items():
            setattr(row, key, value)
    return service_tls(node, service)


def service_tls(node: NodeHome, service: str) -> dict[str, Any]:
    """A service's TLS setting, and the internal client certificate a provider must trust."""
    with node.sessions() as s:
        row = find_service(node, s, service)
        tls = tls_of(row)
        out: dict[str, Any] = {
            "service": str(service_id(node, row)),
            "url": row.url,
            "tls": _describe(tls),
            "trust": tls.trust if tls else None,
            "pin": tls.pin if tls else None,
            "client_cert": bool(tls and tls.client_cert),
        }
    if out["client_cert"]:
        out["client_cert_file"] = str(node.path / provider_tls.INTERNAL_CERT)
        out["client_cert_sha256"] = provider_tls.internal_cert_sha256(node.path)
    return out


#: A WSDL bigger than this is refused (getWsdl answers are signed and logged like messages).
MAX_WSDL_BYTES = 4 * 1024 * 1024


def load_wsdl(source: str, service_code: str) -> str:
    """Read a WSDL from a file or an http(s) URL and check it (:mod:`secnode.core.wsdl`)."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=30) as resp:
                data = resp.read(MAX_WSDL_BYTES + 1)
        except (OSError, ValueError) as exc:
            raise ServiceError(f"could not fetch the WSDL from {source}: {exc}") from exc
    elif "://" in source:
        raise ServiceError(f"--wsdl {source}: use a file or an http(s) URL")
    else:
        try:
            with open(source, "rb") as fh:
                data = fh.read(MAX_WSDL_BYTES + 1)
        except OSError as exc:
            raise ServiceError(f"could not read the WSDL {source}: {exc}") from exc
    if len(data) > MAX_WSDL_BYTES:
        raise ServiceError(f"the WSDL {source} is larger than {MAX_WSDL_BYTES} bytes")
    try:
        return check_wsdl(data, service_code)
    except WsdlError as exc:
        raise ServiceError(f"{source}: {exc}") from exc


def refresh_wsdl(node: NodeHome, service: str) -> str:
    """Read a SOAP service's WSDL again from where it came from; returns that source."""
    with node.session() as s:
        row = find_service(node, s, service)
        if row.wsdl_source is None:
            raise ServiceError(f"service {service} has no WSDL (add one with 'service wsdl')")
        row.wsdl = load_wsdl(row.wsdl_source, row.service_code)
        return row.wsdl_source


def set_wsdl(node: NodeHome, service: str, source: str) -> None:
    """Store (or replace) a SOAP service's WSDL, read from a file or an http(s) URL."""
    with node.session() as s:
        row = find_service(node, s, service)
        if row.type != "soap":
            raise ServiceError(f"service {service} is a {row.type} service; a WSDL is for SOAP")
        row.wsdl = load_wsdl(source, row.service_code)
        row.wsdl_source = source


def remove_service(node: NodeHome, service: str) -> None:
    """Remove a service and its access rights."""
    with node.session() as s:
        row = find_service(node, s, service)
        for r in s.scalars(
            select(models.AccessRight).where(models.AccessRight.service_id == row.id)
        ):
            s.delete(r)
        s.delete(row)


# ----- access rights ----------------------------------------------------------------------------
def client_ref(client: str) -> str:
    """The stored form of an access-right holder: a client id or ``group:CODE``."""
    if client.startswith("group:"):
        if not client.removeprefix("group:"):
            raise ServiceError("group: needs a global group code")
        return client
    try:
        return str(parse_client(client))
    except IdentifierError as exc:
        raise ServiceError(str(exc)) from exc


def grant(node: NodeHome, service: str, client: str) -> str:
    """Grant ``service`` to ``client``; returns the stored client reference."""
    ref = client_ref(client)
    try:
        with node.session() as s:
            row = find_service(node, s, service)
            s.add(models.AccessRight(service_id=row.id, client=ref))
    except IntegrityError as exc:
        raise ServiceError(f"{ref} already has access to {service}") from exc
    return ref


def revoke(node: NodeHome, service: str, client: str) -> str:
    """Revoke ``client``'s access to ``service``; returns the client reference."""
    ref = client_ref(client)
    with node.session() as s:
        row = find_service(node, s, service)
        right = s.scalars(
            select(models.AccessRight).where(
                models.AccessRight.service_id == row.id, models.AccessRight.client == ref
            )
        ).first()
        if right is None:
            raise ServiceError(f"{ref} has no access right to {service}")
        s.delete(right)
    return ref


def list_rights(node: NodeHome, service: str | None = None) -> list[dict[str, Any]]:
    """Access rights of one service, or of all."""
    with node.sessions() as s:
        services = {r.id: r for r in s.scalars(select(models.Service))}
        if service:
            only = find_service(node, s, service).id
            rights = s.scalars(
                select(models.AccessRight).where(models.AccessRight.service_id == only)
            ).all()
        else:
            rights = s.scalars(select(models.AccessRight)).all()
        return [
            {
                "service": str(service_id(node, services[r.service_id])),
                "client": r.client,
                "granted_at": r.granted_at.isoformat(),
            }
            for r in rights
        ]


# ----- local callers ----------------------------------------------------------------------------
def caller_rule(address: str | None, cert_file: str | None, any_caller: bool) -> tuple[str, str]:
    """(kind, value) of a client whitelist rule from exactly one of the three ways."""
    chosen = [x for x in (address, cert_file, any_caller or None) if x]
    if len(chosen) != 1:
        raise ServiceError("give exactly one of --address, --cert, --any")
    if cert_file:
        der = load_certificate(cert_file).public_bytes(serialization.Encoding.DER)
        return "cert", hashlib.sha256(der).hexdigest()
    if address:
        return "address", address
    return "any", "*"


def allow_caller(
    node: NodeHome, subsystem: str, address: str | None, cert_file: str | None, any_caller: bool
) -> tuple[SubsystemId | MemberId, str, str]:
    """Let a local system (by address, certificate, or any) act as ``subsystem``, or as the
    member itself when ``subsystem`` is the node's member id.

    Returns the client identity and the stored rule (kind, value).
    """
    subsystem = stored_owner(node, subsystem)
    sid = owner_of(node, subsystem)
    kind, value = caller_rule(address, cert_file, any_caller)
    try:
        with node.session() as s:
            s.add(models.ClientWhitelist(subsystem=subsystem, kind=kind, value=value))
    except IntegrityError as exc:
        raise ServiceError("that caller is already allowed") from exc
    return sid, kind, value


def remove_caller(
    node: NodeHome, subsystem: str, address: str | None, cert_file: str | None, any_caller: bool
) -> tuple[str, str]:
    """Stop letting a local system act as ``subsystem`` (or the member); returns the rule."""
    given, subsystem = subsystem, stored_owner(node, subsystem)
    kind, value = caller_rule(address, cert_file, any_caller)
    with node.session() as s:
        row = s.scalars(
            select(models.ClientWhitelist).where(
                models.ClientWhitelist.subsystem == subsystem,
                models.ClientWhitelist.kind == kind,
                models.ClientWhitelist.value == value,
            )
        ).first()
        if row is None:
            raise ServiceError(f"no such rule for {given}: {kind} {value}")
        s.delete(row)
    return kind, value


def list_callers(node: NodeHome) -> list[dict[str, str]]:
    """Every allowed local caller."""
    with node.sessions() as s:
        return [
            {
                "subsystem": w.subsystem or str(node.member_id),
                "kind": w.kind,
                "value": w.value,
            }
            for w in s.scalars(select(models.ClientWhitelist))
        ]
