"""Administrative operations on the registry: each one a transaction with its audit row.

Functions take the :class:`~central.store.Store`, the operator's name and plain
values (identifier strings, PEM bytes), check them, and raise
:class:`~central.errors.RegistryError` with a one-line reason on refusal. They
return plain dicts so the CLI can print them as a table or as ``--json``.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.errors import Conflict, NotFound, RegistryError
from central.models import (
    ApprovedCA,
    ApprovedTSA,
    GlobalGroup,
    GroupMember,
    Member,
    RegisteredNode,
    Setting,
    Subsystem,
)
from central.store import Store, now
from certs import profiles
from certs.chain import ChainError, find_issuer, verify_chain
from secnode.core.globalconf import SETTINGS_DEFAULTS, cert_to_pem
from secnode.core.identifiers import (
    ClientId,
    IdentifierError,
    MemberId,
    NodeId,
    SubsystemId,
    parse_client,
    validate_part,
)
from secnode.core.jsonfmt import cert_sha256_hex
from secnode.core.registration import RegistrationError, check_address

_URL = re.compile(r"^https?://[^\s/?#]+(?:/[^\s]*)?$")


# ----- parsing helpers --------------------------------------------------------------------
def _parse(parse: Any, text: str, instance: str) -> Any:
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


def _url(value: str, what: str) -> str:
    if not _URL.match(value):
        raise RegistryError(f"{what} {value!r} is not an http:// or https:// URL")
    return value


def _address(value: str) -> str:
    try:
        return check_address(value)
    except RegistrationError as exc:
        raise RegistryError(str(exc)) from exc


def member_row(session: Session, member: MemberId) -> Member:
    row = session.scalars(select(Member).where(Member.identifier == str(member))).first()
    if row is None:
        raise NotFound(f"member {member} does not exist", code="UnknownMember")
    return row


def _count(session: Session, model: Any) -> int:
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


# ----- members ----------------------------------------------------------------------------
def add_member(
    store: Store, operator: str, instance: str, identifier: str, name: str
) -> dict[str, Any]:
    member = _parse(MemberId.parse, identifier, instance)
    if not name.strip():
        raise RegistryError("member name is empty")
    with store.change(operator, "member.add", {"member": str(member), "name": name}) as (s, _):
        if s.scalars(select(Member).where(Member.identifier == str(member))).first():
            raise Conflict(f"member {member} already exists", code="DuplicateMember")
        row = Member(
            identifier=str(member),
            member_class=member.member_class,
            code=member.code,
            name=name.strip(),
            created_at=now(),
        )
        s.add(row)
        s.flush()
        return member_view(row)


def list_members(store: Store) -> list[dict[str, Any]]:
    with store.read() as s:
        return [member_view(r) for r in s.scalars(select(Member).order_by(Member.identifier))]


def show_member(store: Store, instance: str, identifier: str) -> dict[str, Any]:
    member = _parse(MemberId.parse, identifier, instance)
    with store.read() as s:
        row = member_row(s, member)
        view = member_view(row)
        view["nodes"] = [node_view(n) for n in row.nodes]
        view["groups"] = _groups_of(s, [str(member), *view["subsystems"]])
        return view


def _groups_of(session: Session, clients: list[str]) -> list[str]:
    rows = session.scalars(
        select(GlobalGroup.code)
        .join(GroupMember)
        .where(GroupMember.client_identifier.in_(clients))
        .distinct()
    )
    return sorted(rows)


def remove_member(
    store: Store, operator: str, instance: str, identifier: str, cascade: bool = False
) -> dict[str, Any]:
    """Remove a member; refused while it owns nodes or subsystems unless ``cascade``."""
    member = _parse(MemberId.parse, identifier, instance)
    with store.change(operator, "member.remove", {"member": str(member), "cascade": cascade}) as (
        s,
        details,
    ):
        row = member_row(s, member)
        subs = [x.identifier for x in row.subsystems]
        nodes = [x.identifier for x in row.nodes]
        if (subs or nodes) and not cascade:
            owned = []
            if nodes:
                owned.append(f"node(s) {', '.join(nodes)}")
            if subs:
                owned.append(f"subsystem(s) {', '.join(subs)}")
            raise Conflict(
                f"member {member} still owns {' and '.join(owned)}; remove them first or "
                "use --cascade",
                code="MemberInUse",
            )
        memberships = s.scalars(
            select(GroupMember).where(GroupMember.client_identifier.in_([str(member), *subs]))
        ).all()
        for gm in memberships:
            s.delete(gm)
        for node in row.nodes:
            s.delete(node)
        for sub in row.subsystems:
            s.delete(sub)
        s.delete(row)
        details.update(
            removed_nodes=nodes, removed_subsystems=subs, removed_group_memberships=len(memberships)
        )
        return {"removed": str(member), "nodes": nodes, "subsystems": subs}


# ----- subsystems -------------------------------------------------------------------------
def add_subsystem(
    store: Store, operator: str, instance: str, identifier: str, name: str | None = None
) -> dict[str, Any]:
    sub = _parse(SubsystemId.parse, identifier, instance)
    with store.change(operator, "subsystem.add", {"subsystem": str(sub)}) as (s, _):
        return subsystem_view(_add_subsystem(s, sub, name))


def _add_subsystem(session: Session, sub: SubsystemId, name: str | None) -> Subsystem:
    member = member_row(session, sub.member)
    if session.scalars(select(Subsystem).where(Subsystem.identifier == str(sub))).first():
        raise Conflict(f"subsystem {sub} already exists", code="DuplicateSubsystem")
    row = Subsystem(
        identifier=str(sub), member=member, code=sub.subsystem, name=name, created_at=now()
    )
    session.add(row)
    session.flush()
    return row


def list_subsystems(store: Store, member: str | None = None) -> list[dict[str, Any]]:
    with store.read() as s:
        query = select(Subsystem).order_by(Subsystem.identifier)
        if member is not None:
            query = query.join(Member).where(Member.identifier == member)
        return [subsystem_view(r) for r in s.scalars(query)]


def remove_subsystem(store: Store, operator: str, instance: str, identifier: str) -> dict[str, Any]:
    sub = _parse(SubsystemId.parse, identifier, instance)
    with store.change(operator, "subsystem.remove", {"subsystem": str(sub)}) as (s, _):
        row = s.scalars(select(Subsystem).where(Subsystem.identifier == str(sub))).first()
        if row is None:
            raise NotFound(f"subsystem {sub} does not exist")
        groups = _groups_of(s, [str(sub)])
        if groups:
            raise Conflict(
                f"subsystem {sub} is in global group(s) {', '.join(groups)}; "
                "remove it from them first ('central group remove-member')"
            )
        s.delete(row)
        return {"removed": str(sub)}


# ----- trust: CAs, TSAs, certificate checks -----------------------------------------------
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
            f"{cert.subject.rfc4514_string()} is not a CA certificate (no basicConstraints CA)"
        )
    if cert.not_valid_after_utc < now():
        raise RegistryError(f"CA certificate {cert.subject.rfc4514_string()} has expired")
    urls = [_url(u, "OCSP URL") for u in ocsp_urls]
    digest = cert_sha256_hex(cert)
    label = name or cert.subject.rfc4514_string()
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
            f"{cert.subject.rfc4514_string()} is not a time-stamping "
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
            url=_url(url, "TSA URL"),
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


# ----- nodes ------------------------------------------------------------------------------
def put_node(
    session: Session, node: NodeId, address: str, auth_cert: x509.Certificate, replace: bool = False
) -> RegisteredNode:
    """Add ``node`` or (``replace``) give an existing one a new address and certificate."""
    owner = member_row(session, node.member)
    digest = cert_sha256_hex(auth_cert)
    other = node_with_auth_cert(session, digest)
    if other is not None and other.identifier != str(node):
        raise Conflict(
            f"auth certificate {digest[:16]}... is already registered for node {other.identifier}",
            code="DuplicateAuthCert",
        )
    row = session.scalars(
        select(RegisteredNode).where(RegisteredNode.identifier == str(node))
    ).first()
    if row is not None and not replace:
        raise Conflict(f"node {node} already exists", code="DuplicateNode")
    if row is None:
        row = RegisteredNode(
            identifier=str(node), owner=owner, server_code=node.server_code, created_at=now()
        )
        session.add(row)
    elif row.auth_cert_sha256 != digest:
        keep_previous_auth_cert(row)
    row.address = address
    row.auth_cert_pem = cert_to_pem(auth_cert)
    row.auth_cert_sha256 = digest
    session.flush()
    return row


def node_with_auth_cert(session: Session, digest: str) -> RegisteredNode | None:
    """The node that has ``digest`` as its current or previous auth certificate."""
    return session.scalars(
        select(RegisteredNode).where(
            (RegisteredNode.auth_cert_sha256 == digest)
            | (RegisteredNode.previous_auth_cert_sha256 == digest)
        )
    ).first()


def keep_previous_auth_cert(row: RegisteredNode) -> None:
    """A renewal: the replaced certificate stays published next to the new one, so peers
    accept the node on either while it switches (X-Road keeps both registered too)."""
    row.previous_auth_cert_pem = row.auth_cert_pem
    row.previous_auth_cert_sha256 = row.auth_cert_sha256


def drop_previous_auth_cert(
    store: Store, operator: str, instance: str, identifier: str
) -> dict[str, Any]:
    """Stop publishing a node's replaced auth certificate (after the node switched)."""
    node = _parse(NodeId.parse, identifier, instance)
    with store.change(operator, "node.drop_previous_auth_cert", {"node": str(node)}) as (s, d):
        row = s.scalars(
            select(RegisteredNode).where(RegisteredNode.identifier == str(node))
        ).first()
        if row is None:
            raise NotFound(f"node {node} does not exist")
        if row.previous_auth_cert_sha256 is None:
            raise NotFound(f"node {node} has no previous auth certificate")
        d.update(auth_cert_sha256=row.previous_auth_cert_sha256)
        row.previous_auth_cert_pem = row.previous_auth_cert_sha256 = None
        return node_view(row)


def add_node(
    store: Store, operator: str, instance: str, identifier: str, address: str, cert_data: bytes
) -> dict[str, Any]:
    node = _parse(NodeId.parse, identifier, instance)
    cert = load_cert(cert_data, "auth certificate")
    with store.change(
        operator,
        "node.add",
        {"node": str(node), "address": address, "auth_cert_sha256": cert_sha256_hex(cert)},
    ) as (s, _):
        check_member_cert(s, cert, "auth", "auth certificate")
        return node_view(put_node(s, node, _address(address), cert))


def list_nodes(store: Store) -> list[dict[str, Any]]:
    with store.read() as s:
        return [
            node_view(r)
            for r in s.scalars(select(RegisteredNode).order_by(RegisteredNode.identifier))
        ]


def remove_node(store: Store, operator: str, instance: str, identifier: str) -> dict[str, Any]:
    node = _parse(NodeId.parse, identifier, instance)
    with store.change(operator, "node.remove", {"node": str(node)}) as (s, _):
        row = s.scalars(
            select(RegisteredNode).where(RegisteredNode.identifier == str(node))
        ).first()
        if row is None:
            raise NotFound(f"node {node} does not exist")
        s.delete(row)
        return {"removed": str(node)}


# ----- global groups ----------------------------------------------------------------------
def add_group(store: Store, operator: str, code: str, description: str) -> dict[str, Any]:
    try:
        validate_part(code, "group code")
    except IdentifierError as exc:
        raise RegistryError(str(exc), code="InvalidIdentifier") from exc
    with store.change(operator, "group.add", {"group": code}) as (s, _):
        if s.scalars(select(GlobalGroup).where(GlobalGroup.code == code)).first():
            raise Conflict(f"global group {code} already exists")
        row = GlobalGroup(code=code, description=description, created_at=now())
        s.add(row)
        s.flush()
        return {"code": code, "description": description, "members": []}


def _group_row(session: Session, code: str) -> GlobalGroup:
    row = session.scalars(select(GlobalGroup).where(GlobalGroup.code == code)).first()
    if row is None:
        raise NotFound(f"global group {code} does not exist")
    return row


def _client_exists(session: Session, client: ClientId) -> bool:
    model = Member if isinstance(client, MemberId) else Subsystem
    return session.scalars(select(model).where(model.identifier == str(client))).first() is not None


def add_group_member(
    store: Store, operator: str, instance: str, code: str, client_text: str
) -> dict[str, Any]:
    client = _parse(parse_client, client_text, instance)
    with store.change(operator, "group.add-member", {"group": code, "client": str(client)}) as (
        s,
        _,
    ):
        group = _group_row(s, code)
        if not _client_exists(s, client):
            raise NotFound(f"{client} is not a registered member or subsystem")
        if any(m.client_identifier == str(client) for m in group.members):
            raise Conflict(f"{client} is already in global group {code}")
        s.add(GroupMember(group=group, client_identifier=str(client), added_at=now()))
        s.flush()
        s.refresh(group)
        return group_view(group)


def remove_group_member(
    store: Store, operator: str, instance: str, code: str, client_text: str
) -> dict[str, Any]:
    client = _parse(parse_client, client_text, instance)
    with store.change(operator, "group.remove-member", {"group": code, "client": str(client)}) as (
        s,
        _,
    ):
        group = _group_row(s, code)
        found = [m for m in group.members if m.client_identifier == str(client)]
        if not found:
            raise NotFound(f"{client} is not in global group {code}")
        s.delete(found[0])
        return {"group": code, "removed": str(client)}


def remove_group(store: Store, operator: str, code: str) -> dict[str, Any]:
    with store.change(operator, "group.remove", {"group": code}) as (s, _):
        group = _group_row(s, code)
        for m in group.members:
            s.delete(m)
        s.delete(group)
        return {"removed": code}


def list_groups(store: Store) -> list[dict[str, Any]]:
    with store.read() as s:
        return [group_view(g) for g in s.scalars(select(GlobalGroup).order_by(GlobalGroup.code))]


# ----- settings ---------------------------------------------------------------------------
def settings(session: Session) -> dict[str, int]:
    values = dict(SETTINGS_DEFAULTS)
    for row in session.scalars(select(Setting)):
        if row.name in values:
            values[row.name] = row.value
    return values


def show_settings(store: Store) -> dict[str, int]:
    with store.read() as s:
        return settings(s)


def check_settings(values: dict[str, int]) -> None:
    """Relations X-Road also enforces (ug-syspar §3.7, §4.2)."""
    for name, value in values.items():
        if value <= 0:
            raise RegistryError(f"{name} must be positive")
    if values["conf_refresh_interval"] >= values["conf_validity_seconds"]:
        raise RegistryError("conf_refresh_interval must be shorter than conf_validity_seconds")
    if values["timestamping_interval"] >= values["ocsp_freshness_seconds"]:
        raise RegistryError("timestamping_interval must be shorter than ocsp_freshness_seconds")
    if values["ocsp_fetch_interval"] >= values["ocsp_freshness_seconds"]:
        raise RegistryError("ocsp_fetch_interval must be shorter than ocsp_freshness_seconds")


def set_setting(store: Store, operator: str, name: str, value: str) -> dict[str, int]:
    if name not in SETTINGS_DEFAULTS:
        raise RegistryError(f"unknown setting {name!r}; use one of {', '.join(SETTINGS_DEFAULTS)}")
    try:
        number = int(value)
    except ValueError as exc:
        raise RegistryError(f"{name} must be a whole number of seconds, not {value!r}") from exc
    with store.change(operator, "settings.set", {"name": name, "value": number}) as (s, det):
        current = settings(s)
        det["previous"] = current[name]
        current[name] = number
        check_settings(current)
        row = s.get(Setting, name)
        if row is None:
            s.add(Setting(name=name, value=number))
        else:
            row.value = number
        return current


def counts(store: Store) -> dict[str, int]:
    """Row counts per table (used by tests and ``central status``)."""
    from central import models

    tables = {
        "members": models.Member,
        "subsystems": models.Subsystem,
        "nodes": models.RegisteredNode,
        "approved_cas": models.ApprovedCA,
        "approved_tsas": models.ApprovedTSA,
        "groups": models.GlobalGroup,
        "group_members": models.GroupMember,
        "requests": models.RegistrationRequest,
        "conf_versions": models.ConfVersion,
        "signing_keys": models.SigningKey,
        "audit": models.AuditEntry,
    }
    with store.read() as s:
        return {name: _count(s, model) for name, model in tables.items()}
