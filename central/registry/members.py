"""Members and their subsystems: the parties of the federation.

Removing a member takes its nodes, subsystems and group memberships with it
(only with ``cascade``), so these operations know about those rows; adding
and judging nodes is :mod:`central.registry.nodes`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import Conflict, NotFound, RegistryError
from central.models import GroupMember, Member, Subsystem
from central.registry.common import member_row, member_view, node_view, parse_id, subsystem_view
from central.registry.groups import groups_of
from central.store import Store, now
from secnode.core.identifiers import MemberId, SubsystemId


# ----- members ----------------------------------------------------------------------------
def add_member(
    store: Store, operator: str, instance: str, identifier: str, name: str
) -> dict[str, Any]:
    member = parse_id(MemberId.parse, identifier, instance)
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
    member = parse_id(MemberId.parse, identifier, instance)
    with store.read() as s:
        row = member_row(s, member)
        view = member_view(row)
        view["nodes"] = [node_view(n) for n in row.nodes]
        view["groups"] = groups_of(s, [str(member), *view["subsystems"]])
        return view


def remove_member(
    store: Store, operator: str, instance: str, identifier: str, cascade: bool = False
) -> dict[str, Any]:
    """Remove a member; refused while it owns nodes or subsystems unless ``cascade``."""
    member = parse_id(MemberId.parse, identifier, instance)
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
    sub = parse_id(SubsystemId.parse, identifier, instance)
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
    sub = parse_id(SubsystemId.parse, identifier, instance)
    with store.change(operator, "subsystem.remove", {"subsystem": str(sub)}) as (s, _):
        row = s.scalars(select(Subsystem).where(Subsystem.identifier == str(sub))).first()
        if row is None:
            raise NotFound(f"subsystem {sub} does not exist")
        groups = groups_of(s, [str(sub)])
        if groups:
            raise Conflict(
                f"subsystem {sub} is in global group(s) {', '.join(groups)}; "
                "remove it from them first ('central group remove-member')"
            )
        s.delete(row)
        return {"removed": str(sub)}
