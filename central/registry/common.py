"""What every registry operation shares: identifier and value checks, row lookups, views.

The operations are split by what they administer (members and subsystems,
global groups, nodes, trust services, system parameters); the checks of
their inputs and the plain-dict views they return are the same for all of
them, so they live here once.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.errors import NotFound, RegistryError
from central.models import (
    ApprovedCA,
    ApprovedTSA,
    GlobalGroup,
    Member,
    RegisteredNode,
    Subsystem,
)
from secnode.core.identifiers import IdentifierError, MemberId
from secnode.core.registration import RegistrationError, check_address

_URL = re.compile(r"^https?://[^\s/?#]+(?:/[^\s]*)?$")


# ----- parsing helpers --------------------------------------------------------------------
def parse_id(parse: Any, text: str, instance: str) -> Any:
    try:
        value = parse(text)
    except IdentifierError as exc:
        raise RegistryError(str(exc), code="InvalidIdentifier") from exc
    if value.instance != instance:
        raise RegistryError(
            f"{text} belongs to instance {value.instance}, not this registry's {instance}",
            code="InvalidIdentifier",
        )
    return value


def load_cert(data: bytes, what: str) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise RegistryError(f"{what} is not an X.509 certificate") from exc


def check_url(value: str, what: str) -> str:
    if not _URL.match(value):
        raise RegistryError(f"{what} {value!r} is not an http:// or https:// URL")
    return value


def node_address(value: str) -> str:
    try:
        return check_address(value)
    except RegistrationError as exc:
        raise RegistryError(str(exc)) from exc


def member_row(session: Session, member: MemberId) -> Member:
    row = session.scalars(select(Member).where(Member.identifier == str(member))).first()
    if row is None:
        raise NotFound(f"member {member} does not exist", code="UnknownMember")
    return row


def count_rows(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


# ----- views ------------------------------------------------------------------------------
def member_view(row: Member) -> dict[str, Any]:
    return {
        "id": row.identifier,
        "name": row.name,
        "created_at": row.created_at,
        "subsystems": [s.identifier for s in row.subsystems],
        "nodes": [n.identifier for n in row.nodes],
    }


def subsystem_view(row: Subsystem) -> dict[str, Any]:
    return {
        "id": row.identifier,
        "member": row.member.identifier,
        "name": row.name,
        "created_at": row.created_at,
    }


def node_view(row: RegisteredNode, with_cert: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.identifier,
        "owner": row.owner.identifier,
        "address": row.address,
        "auth_cert_sha256": row.auth_cert_sha256,
        "created_at": row.created_at,
        "previous_auth_cert_sha256": row.previous_auth_cert_sha256,
    }
    if with_cert:
        view["auth_cert"] = row.auth_cert_pem
    return view


def ca_view(row: ApprovedCA) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "cert_sha256": row.cert_sha256,
        "ocsp_urls": list(row.ocsp_urls),
        "created_at": row.created_at,
    }


def tsa_view(row: ApprovedTSA) -> dict[str, Any]:
    return {
        "name": row.name,
        "url": row.url,
        "cert_sha256": row.cert_sha256,
        "created_at": row.created_at,
    }


def group_view(row: GlobalGroup) -> dict[str, Any]:
    return {
        "code": row.code,
        "description": row.description,
        "members": [m.client_identifier for m in row.members],
    }
