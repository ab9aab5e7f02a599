"""Resident disclosure (APPI Art. 33(5)): one-time access codes, the records a resident
may see, and the withdrawal and stop requests they leave for the privacy office.

A code is issued by the city (``secnode records access-code --subject ...``), shown
once, stored only as an argon2id hash, expires, and is spent by its first use. Checking
a code does the same work whether or not the subject exists (a dummy hash is verified for
unknown subjects) and answers the same way, so the page cannot be used to find out who
has records. Requests are only recorded: the privacy office acts on them.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from certs.errors import SecnodeError
from secnode.console import clock
from secnode.console.accounts import hash_secret, verify_secret
from secnode.console.tables import access_codes, resident_requests
from secnode.core.identifiers import IdentifierError, MemberId, parse_client
from secnode.core.policy import PolicySnapshot
from secnode.core.policy.vocabulary import builtin_basis
from secnode.globalconf import ConfStore
from secnode.home import NodeHome
from secnode.policy import store as policy_store
from secnode.policy import tables as pol
from secnode.policy.records import subject_records

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed by hand
CODE_GROUPS, GROUP_LEN = 3, 4  # 12 symbols of 5 bits: 60 bits
MAX_FAILURES = 5  # wrong codes per issued code before it is void
DEFAULT_LIFETIME = dt.timedelta(days=14)
KINDS = ("withdraw", "stop")


class DisclosureError(SecnodeError):
    """A disclosure operation was refused; the message says why."""


def normalise(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def issue_code(
    engine: Engine, subject_ref: str, issued_by: str, lifetime: dt.timedelta = DEFAULT_LIFETIME
) -> tuple[str, dt.datetime]:
    """A new code for ``subject_ref`` (returned once, stored hashed) and when it expires."""
    subject_ref = subject_ref.strip()
    if not subject_ref or len(subject_ref) > 255:
        raise DisclosureError("a subject reference is 1-255 characters")
    if lifetime <= dt.timedelta(0):
        raise DisclosureError("a code's lifetime must be positive")
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_GROUPS * GROUP_LEN))
    code = "-".join(raw[i : i + GROUP_LEN] for i in range(0, len(raw), GROUP_LEN))
    now = clock.now()
    expires = now + lifetime
    with engine.begin() as conn:
        conn.execute(
            insert(access_codes).values(
                subject_ref=subject_ref,
                code_hash=hash_secret(raw),
                issued_at=clock.text(now),
                expires_at=clock.text(expires),
                issued_by=issued_by,
                used_at=None,
                failures=0,
            )
        )
    return code, expires


def redeem(engine: Engine, subject_ref: str, code: str) -> bool:
    """Spend a valid code of ``subject_ref``; False for anything else, after the same work."""
    now = clock.text(clock.now())
    with engine.begin() as conn:
        live = conn.execute(
            select(access_codes.c.id, access_codes.c.code_hash)
            .where(
                access_codes.c.subject_ref == subject_ref.strip(),
                access_codes.c.used_at.is_(None),
                access_codes.c.expires_at > now,
                access_codes.c.failures < MAX_FAILURES,
            )
            .order_by(access_codes.c.id.desc())
            .limit(1)
        ).first()
        given = normalise(code)
        if live is None:
            verify_secret(None, given)  # the same argon2 work as a real check
            return False
        if not verify_secret(live.code_hash, given):
            conn.execute(
                update(access_codes)
                .where(access_codes.c.id == live.id)
                .values(failures=access_codes.c.failures + 1)
            )
            return False
        conn.execute(update(access_codes).where(access_codes.c.id == live.id).values(used_at=now))
        return True


# ----- what the resident sees -------------------------------------------------------------------
def _registry(conn: Connection) -> PolicySnapshot | None:
    """The policy registry for names and labels (None when it does not load: codes shown)."""
    try:
        return policy_store.load_registry(conn)
    except ValueError:
        return None


def _organisation(
    registry: PolicySnapshot | None, names: Mapping[MemberId, str], recipient: str
) -> str:
    """The recipient member's name: from the policy registry, else the global configuration."""
    try:
        member = parse_client(recipient).member
    except IdentifierError:
        return recipient
    known = registry.members.get(member) if registry is not None else None
    name = getattr(known, "name", None) or names.get(member)
    return str(name) if name else str(member)


def member_names(node: NodeHome) -> dict[MemberId, str]:
    """Member names from the node's last verified global configuration (empty without one)."""
    conf = ConfStore(node.dir.globalconf_dir).load_last_good()
    return {} if conf is None else {m: member.name for m, member in conf.members.items()}


def _basis(registry: PolicySnapshot | None, code: str) -> dict[str, str]:
    basis = registry.basis(code) if registry is not None else builtin_basis(code)
    if basis is None:
        return {"code": code, "ja": code, "en": code}
    return {"code": code, "ja": basis.label_ja, "en": basis.label_en}


def _purpose(registry: PolicySnapshot | None, code: str | None) -> dict[str, str] | None:
    if not code:
        return None
    known = registry.purposes.get(code) if registry is not None else None
    if known is None:
        return {"code": code, "ja": code, "en": code}
    return {"code": code, "ja": known.label_ja, "en": known.label_en}


JST = dt.timezone(dt.timedelta(hours=9), "JST")


def _jst(at: str) -> str:
    """A stored UTC instant as a resident reads it: Japan time, to the minute."""
    try:
        instant = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return at
    return instant.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


def resident_view(
    engine: Engine, subject_ref: str, names: Mapping[MemberId, str] | None = None
) -> dict[str, Any]:
    """The provisions of this subject's data only, labelled for a resident, oldest first."""
    found = subject_records(engine, subject_ref)
    with engine.connect() as conn:
        registry = _registry(conn)
        purposes = dict(
            conn.execute(
                select(pol.decisions.c.entry_sha256, pol.decisions.c.purpose)
                .join(
                    pol.provisions,
                    pol.provisions.c.decision_sha256 == pol.decisions.c.entry_sha256,
                )
                .where(pol.provisions.c.subject_ref == subject_ref)
            ).all()
        )
        shas = [
            r[0]
            for r in conn.execute(
                select(pol.provisions.c.decision_sha256)
                .where(pol.provisions.c.subject_ref == subject_ref)
                .order_by(pol.provisions.c.id)
            )
        ]
    provisions = []
    for record, sha in zip(found["provisions"], shas, strict=True):
        provisions.append(
            {
                "at": record["at"],
                "at_jst": _jst(str(record["at"])),
                "recipient": record.get("recipient"),
                "organisation": _organisation(registry, names or {}, str(record.get("recipient"))),
                "service": record.get("service"),
                "items": list(record.get("data_items") or []),
                "purpose": _purpose(registry, purposes.get(sha)),
                "basis": _basis(registry, str(record.get("basis"))),
                "consent_id": record.get("consent_id"),
            }
        )
    consents = [
        {"consent_id": r["consent_id"], "status": r["status"]}
        for r in _consent_rows(engine, subject_ref)
    ]
    return {"subject_ref": subject_ref, "provisions": provisions, "consents": consents}


def _consent_rows(engine: Engine, subject_ref: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(policy_store.consent_rows(conn, subject_ref))


# ----- requests for the privacy office ----------------------------------------------------------
def add_request(engine: Engine, subject_ref: str, kind: str, target: str, note: str) -> int:
    """Record a resident's withdrawal or stop request (not applied: the office decides)."""
    if kind not in KINDS:
        raise DisclosureError(f"request kind {kind!r}: use one of {', '.join(KINDS)}")
    target, note = target.strip()[:255], note.strip()[:2000]
    if not target:
        raise DisclosureError("name the consent or the recipient the request is about")
    with engine.begin() as conn:
        done = conn.execute(
            insert(resident_requests).values(
                at=clock.text(clock.now()),
                subject_ref=subject_ref,
                kind=kind,
                target=target,
                note=note,
                status="open",
            )
        )
    key = done.inserted_primary_key
    return int(key[0]) if key else 0


def requests(engine: Engine, subject_ref: str | None = None) -> list[dict[str, Any]]:
    query = select(resident_requests).order_by(resident_requests.c.id.desc())
    if subject_ref is not None:
        query = query.where(resident_requests.c.subject_ref == subject_ref)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
