"""Writing a policy without hand-editing the worked example: a starting template, and
members and purposes added one at a time (``secnode policy init|member|purpose``).

An entry added here goes through the same path as ``secnode policy import``: the stored
registry plus the new entry is validated as a whole by the strict loader, merged, and
recorded as a registry change; only the enforcement switch is left as it is.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from secnode.core.identifiers import MemberId
from secnode.core.policy import PolicySnapshot, parse_policy
from secnode.core.policy.codec import member_to_json, purpose_to_json
from secnode.core.policy.template import render_template
from secnode.core.policy.vocabulary import LegalType
from secnode.files import atomic_write
from secnode.home import NodeHome
from secnode.policy import store
from secnode.policy.admin import PolicyAdminError
from secnode.policy.common import actor


def write_template(path: Path, member: MemberId, name: str, legal_type: LegalType) -> None:
    """Write the starting policy for ``member`` to ``path`` (never over an existing file)."""
    if path.exists():
        raise PolicyAdminError(f"{path} exists; the template never overwrites a file")
    atomic_write(path, render_template(member, name, legal_type, dt.date.today()).encode())


def _stored(conn: Any) -> dict[str, Any]:
    if store.state_row(conn)["generation"] == 0:
        raise PolicyAdminError(
            "no policy stored yet: write one with 'secnode policy init FILE', edit it, "
            "and load it with 'secnode policy import FILE'"
        )
    return store.document(conn, with_subjects=False)


def _add(node: NodeHome, section: str, key: str, entry: dict[str, Any], by: str | None) -> None:
    with node.engine.begin() as conn:
        doc = _stored(conn)
        if any(e.get(key) == entry[key] for e in doc[section]):
            raise PolicyAdminError(
                f"{section[:-1]} {entry[key]} is already in the policy; to change it, "
                "edit an exported policy ('secnode policy export') and import it"
            )
        doc[section] = [*doc[section], entry]
        snapshot = parse_policy(doc)  # the whole registry with the entry, strictly
        store.import_policy(
            conn, snapshot, actor(by), f"secnode policy {section[:-1]} add", enforcing=None
        )


def add_member(node: NodeHome, entry: dict[str, Any], by: str | None) -> None:
    """Add a member (``{"id", "legal_type", "name", ...}``) to the stored registry."""
    _add(node, "members", "id", entry, by)


def add_purpose(node: NodeHome, entry: dict[str, Any], by: str | None) -> None:
    """Add a purpose code (``{"code", "label_ja", "label_en", ...}``) to the registry."""
    _add(node, "purposes", "code", entry, by)


def _registry(node: NodeHome) -> PolicySnapshot:
    with node.engine.connect() as conn:
        return parse_policy(_stored(conn))


def members(node: NodeHome) -> list[dict[str, Any]]:
    return [member_to_json(m) for m in _registry(node).members.values()]


def purposes(node: NodeHome) -> list[dict[str, Any]]:
    return [purpose_to_json(p) for p in _registry(node).purposes.values()]
