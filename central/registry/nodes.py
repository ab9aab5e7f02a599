"""Nodes and their auth certificates, including the overlap while a node renews one.

A node is registered with the auth certificate peers will see in TLS; on
renewal the replaced certificate stays published until the operator drops
it. The registration flow (:mod:`central.registration`) adds and replaces
nodes through :func:`put_node` as well.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import Conflict, NotFound
from central.models import RegisteredNode
from central.registry.common import load_cert, member_row, node_address, node_view, parse_id
from central.registry.trust import check_member_cert
from central.store import Store, now
from secnode.core.globalconf import cert_to_pem
from secnode.core.identifiers import NodeId
from secnode.core.jsonfmt import cert_sha256_hex


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
    node = parse_id(NodeId.parse, identifier, instance)
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
    node = parse_id(NodeId.parse, identifier, instance)
    cert = load_cert(cert_data, "auth certificate")
    with store.change(
        operator,
        "node.add",
        {"node": str(node), "address": address, "auth_cert_sha256": cert_sha256_hex(cert)},
    ) as (s, _):
        check_member_cert(s, cert, "auth", "auth certificate")
        return node_view(put_node(s, node, node_address(address), cert))


def list_nodes(store: Store) -> list[dict[str, Any]]:
    with store.read() as s:
        return [
            node_view(r)
            for r in s.scalars(select(RegisteredNode).order_by(RegisteredNode.identifier))
        ]


def remove_node(store: Store, operator: str, instance: str, identifier: str) -> dict[str, Any]:
    node = parse_id(NodeId.parse, identifier, instance)
    with store.change(operator, "node.remove", {"node": str(node)}) as (s, _):
        row = s.scalars(
            select(RegisteredNode).where(RegisteredNode.identifier == str(node))
        ).first()
        if row is None:
            raise NotFound(f"node {node} does not exist")
        s.delete(row)
        return {"removed": str(node)}
