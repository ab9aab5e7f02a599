"""Global groups: named sets of members and subsystems that access rights can name.

A group refers to clients by identifier, so a member or subsystem cannot be
removed while a group still lists it; :func:`groups_of` is what the member
and subsystem operations ask.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import Conflict, NotFound, RegistryError
from central.models import GlobalGroup, GroupMember, Member, Subsystem
from central.registry.common import group_view, parse_id
from central.store import Store, now
from secnode.core.identifiers import (
    ClientId,
    IdentifierError,
    MemberId,
    parse_client,
    validate_part,
)


def groups_of(session: Session, clients: list[str]) -> list[str]:
    rows = session.scalars(
        select(GlobalGroup.code)
        .join(GroupMember)
        .where(GroupMember.client_identifier.in_(clients))
        .distinct()
    )
    return sorted(rows)


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
    client = parse_id(parse_client, client_text, instance)
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
    client = parse_id(parse_client, client_text, instance)
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
