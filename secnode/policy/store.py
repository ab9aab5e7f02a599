"""The node's policy registry: import/export, agreements, consents, stop requests, classification.

Every write runs in one transaction that first bumps ``pol_state.generation``: on
PostgreSQL that row lock serialises concurrent writers (two operators, two CLI
processes) and on SQLite the write lock does, so each change is validated against
the state it will replace. Node processes sharing the database notice the new
generation and reload their snapshot.

Validation is the pure core's, never a second copy: entities are parsed with the
core codecs against the current registry, and whole snapshots are rebuilt from
their canonical JSON with :func:`parse_policy`, so the database can only ever
hold what the strict file loader accepts.

Why one module of this size: every write shares the one generation-bump
transaction above; splitting the entity writers apart would spread that
discipline over several modules that must all keep it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from certs.errors import SecnodeError
from secnode.core.policy import (
    FORMAT,
    FORMAT_VERSION,
    Agreement,
    AgreementState,
    ConsentRecord,
    ConsentStatus,
    PolicyFormatError,
    PolicySnapshot,
    StopRequest,
    Value,
    agreement_to_json,
    consent_to_json,
    dump_policy,
    parse_agreement,
    parse_consent,
    parse_policy,
    parse_service,
    parse_stop_request,
    service_to_json,
    stop_request_to_json,
)
from secnode.core.policy.codec import settings_to_json
from secnode.core.policy.model import PolicySettings
from secnode.policy import tables as t
from secnode.policy.common import canonical, utc_text

#: pol_registry kinds, in the order the document loader needs them, and their JSON sections.
REGISTRY_SECTIONS: tuple[tuple[str, str], ...] = (
    ("member", "members"),
    ("ordinance_basis", "ordinance_bases"),
    ("purpose", "purposes"),
    ("exception_profile", "exception_profiles"),
    ("service", "services"),
)
_KEY_OF: dict[str, Callable[[dict[str, Any]], str]] = {
    "member": lambda d: str(d["id"]),
    "ordinance_basis": lambda d: str(d["code"]),
    "purpose": lambda d: str(d["code"]),
    "exception_profile": lambda d: str(d["id"]),
    "service": lambda d: str(d["id"]),
}


class StoreError(SecnodeError, ValueError):
    """A registry change that is refused (the message says why and what to do)."""


# ----- state and generation --------------------------------------------------------------------
def _default_settings() -> str:
    return canonical(settings_to_json(PolicySettings()))


def state_row(conn: Connection) -> dict[str, Any]:
    """The ``pol_state`` row as a dict (a fresh database has none: generation 0, not enforcing)."""
    row = conn.execute(select(t.state).where(t.state.c.id == 1)).mappings().first()
    if row is None:
        return {
            "generation": 0,
            "enforcing": False,
            "policy_version": None,
            "settings": _default_settings(),
            "updated_at": None,
        }
    return dict(row)


_GENERATION = select(t.state.c.generation, t.state.c.enforcing).where(t.state.c.id == 1)


def generation(conn: Connection) -> tuple[int, bool]:
    """(generation, enforcing): one indexed read, done once per batch by the decision point."""
    row = conn.execute(_GENERATION).first()
    return (0, False) if row is None else (int(row[0]), bool(row[1]))


def begin_change(
    conn: Connection,
    *,
    enforcing: bool | None = True,
    settings: str | None = None,
    policy_version: str | None = None,
    set_version: bool = False,
) -> int:
    """Bump the generation first (the lock that serialises writers); returns the new value.

    Any registry write turns enforcement on: once a node has policy data, requests are
    decided by it (deny by default). ``enforcing=None`` leaves the switch as it is.
    """
    now = utc_text()
    values: dict[str, Any] = {"generation": t.state.c.generation + 1, "updated_at": now}
    if enforcing is not None:
        values["enforcing"] = enforcing
    if settings is not None:
        values["settings"] = settings
    if set_version:
        values["policy_version"] = policy_version
    done = conn.execute(update(t.state).where(t.state.c.id == 1).values(**values))
    if done.rowcount == 0:
        conn.execute(
            insert(t.state).values(
                id=1,
                generation=1,
                enforcing=bool(enforcing),
                updated_at=now,
                settings=settings or _default_settings(),
                policy_version=policy_version if set_version else None,
            )
        )
    return generation(conn)[0]


def log_change(
    conn: Connection,
    actor: str,
    action: str,
    kind: str,
    key: str,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(t.changes).values(
            at=utc_text(),
            actor=actor,
            action=action,
            kind=kind,
            key=key,
            detail=canonical(detail) if detail is not None else None,
        )
    )


def consent_event(
    conn: Connection,
    actor: str,
    event: str,
    consent: ConsentRecord,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(t.consent_events).values(
            at=utc_text(),
            consent_id=consent.consent_id,
            subject_ref=consent.subject_ref,
            event=event,
            status=consent.status.value,
            actor=actor,
            detail=canonical(detail) if detail is not None else None,
        )
    )


# ----- reading ---------------------------------------------------------------------------------
def _registry_docs(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {kind: [] for kind, _ in REGISTRY_SECTIONS}
    rows = conn.execute(
        select(t.registry.c.kind, t.registry.c.doc).order_by(t.registry.c.kind, t.registry.c.key)
    )
    for kind, doc in rows:
        out.setdefault(kind, []).append(json.loads(doc))
    return out


def current_agreement_docs(conn: Connection) -> list[dict[str, Any]]:
    """The highest version of every agreement uid (what decisions use), in uid order."""
    latest = (
        select(t.agreements.c.uid, func.max(t.agreements.c.version).label("v"))
        .group_by(t.agreements.c.uid)
        .subquery()
    )
    rows = conn.execute(
        select(t.agreements.c.doc)
        .join(latest, (t.agreements.c.uid == latest.c.uid) & (t.agreements.c.version == latest.c.v))
        .order_by(t.agreements.c.uid)
    )
    return [json.loads(doc) for (doc,) in rows]


def document(conn: Connection, *, with_subjects: bool) -> dict[str, Any]:
    """The stored registry as a policy document (consents and stop requests if asked)."""
    st = state_row(conn)
    doc: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
    if st["policy_version"] is not None:
        doc["policy_version"] = st["policy_version"]
    doc["settings"] = json.loads(st["settings"])
    docs = _registry_docs(conn)
    for kind, section in REGISTRY_SECTIONS:
        doc[section] = docs.get(kind, [])
    doc["agreements"] = current_agreement_docs(conn)
    doc["consents"] = (
        [
            json.loads(d)
            for (d,) in conn.execute(select(t.consents.c.doc).order_by(t.consents.c.consent_id))
        ]
        if with_subjects
        else []
    )
    doc["stop_requests"] = (
        [
            json.loads(d)
            for (d,) in conn.execute(select(t.stop_requests.c.doc).order_by(t.stop_requests.c.id))
        ]
        if with_subjects
        else []
    )
    return doc


def load_registry(conn: Connection) -> PolicySnapshot:
    """Members, purposes, profiles, services and current agreements, validated, with digest.

    Consents and stop requests are left out: they are per-subject state read per
    request (a withdrawal applies to the very next request). The digest therefore
    names the registry, and decisions name consents by id.
    """
    return parse_policy(document(conn, with_subjects=False))


def load_full(conn: Connection) -> PolicySnapshot:
    """Everything, consents and stop requests included (export, ``policy explain``)."""
    return parse_policy(document(conn, with_subjects=True))


# Built once, executed with parameters: the per-request reads skip SQL compilation.
_CONSENT = select(t.consents.c.doc).where(t.consents.c.consent_id == bindparam("cid"))
_STOPS = (
    select(t.stop_requests.c.doc)
    .where(t.stop_requests.c.subject_ref == bindparam("ref"))
    .order_by(t.stop_requests.c.id)
)


def consent_for(
    conn: Connection, consent_id: str, registry: PolicySnapshot
) -> ConsentRecord | None:
    row = conn.execute(_CONSENT, {"cid": consent_id}).first()
    return None if row is None else parse_consent(Value(json.loads(row[0])), registry)


def stops_for(
    conn: Connection, subject_ref: str, registry: PolicySnapshot
) -> tuple[StopRequest, ...]:
    rows = conn.execute(_STOPS, {"ref": subject_ref})
    return tuple(parse_stop_request(Value(json.loads(doc)), registry) for (doc,) in rows)


# ----- import ----------------------------------------------------------------------------------
def import_policy(
    conn: Connection,
    snapshot: PolicySnapshot,
    actor: str,
    source: str | None,
    enforcing: bool | None = True,
) -> dict[str, int]:
    """Merge a validated policy document into the registry; returns counts of changes.

    Entities in the file are added or replaced; entities only in the database stay
    (agreements end by ``terminate``, never by omission). An agreement whose content
    changed must carry a higher version; its state may change in place. The merged
    result is validated as a whole before commit, so an import is all or nothing.
    ``enforcing``: turn enforcement on (an import), or ``None`` to leave it as it is
    (one entry added by ``secnode policy member|purpose add``).
    """
    exported = dump_policy(snapshot)
    begin_change(
        conn,
        enforcing=enforcing,
        settings=canonical(exported["settings"]),
        policy_version=snapshot.policy_version,
        set_version=True,
    )
    counts = {"added": 0, "updated": 0, "unchanged": 0}

    def note(outcome: str) -> None:
        counts[outcome] += 1

    for kind, section in REGISTRY_SECTIONS:
        for doc in exported[section]:
            note(_put_registry(conn, kind, doc, actor))
    for i, doc in enumerate(exported["agreements"]):
        note(_merge_agreement(conn, doc, actor, f"agreements[{i}]"))
    for doc in exported["consents"]:
        note(_merge_consent(conn, doc, snapshot, actor))
    for doc in exported["stop_requests"]:
        note(_merge_stop(conn, doc, actor))
    try:
        load_full(conn)
    except PolicyFormatError as exc:
        raise StoreError(f"the import conflicts with what the node already holds: {exc}") from None
    conn.execute(
        insert(t.documents).values(
            imported_at=utc_text(),
            actor=actor,
            source=source,
            policy_version=snapshot.policy_version,
            digest=snapshot.digest or "",
            document=canonical(exported),
        )
    )
    log_change(
        conn,
        actor,
        "import",
        "policy",
        source or "-",
        {"digest": snapshot.digest, "policy_version": snapshot.policy_version, **counts},
    )
    return counts


def _put_registry(conn: Connection, kind: str, doc: dict[str, Any], actor: str) -> str:
    key = _KEY_OF[kind](doc)
    text = canonical(doc)
    row = conn.execute(
        select(t.registry.c.doc).where(t.registry.c.kind == kind, t.registry.c.key == key)
    ).first()
    if row is not None and row[0] == text:
        return "unchanged"
    if row is None:
        conn.execute(insert(t.registry).values(kind=kind, key=key, doc=text, updated_at=utc_text()))
        log_change(conn, actor, "add", kind, key, {"doc": doc})
        return "added"
    conn.execute(
        update(t.registry)
        .where(t.registry.c.kind == kind, t.registry.c.key == key)
        .values(doc=text, updated_at=utc_text())
    )
    log_change(conn, actor, "update", kind, key, {"before": json.loads(row[0]), "doc": doc})
    return "updated"


def _without_state(doc: dict[str, Any]) -> str:
    return canonical({k: v for k, v in doc.items() if k != "state"})


def _merge_agreement(conn: Connection, doc: dict[str, Any], actor: str, path: str) -> str:
    uid, version = str(doc["uid"]), int(doc["version"])
    current = _current_agreement_row(conn, uid)
    if current is None or version > current["version"]:
        _insert_agreement(conn, doc, actor)
        return "added"
    if version < current["version"]:
        raise StoreError(
            f"{path}: agreement {uid} v{version} is older than the stored "
            f"v{current['version']}; export, edit and raise the version"
        )
    stored = json.loads(current["doc"])
    if _without_state(stored) != _without_state(doc):
        raise StoreError(
            f"{path}: agreement {uid} v{version} differs from the stored v{version}; "
            "a changed agreement needs a new version"
        )
    if stored.get("state") == doc.get("state"):
        return "unchanged"
    _set_state(conn, uid, version, stored, str(doc["state"]), actor)
    return "updated"


def _merge_consent(
    conn: Connection, doc: dict[str, Any], snapshot: PolicySnapshot, actor: str
) -> str:
    record = snapshot.consents[str(doc["consent_id"])]
    text = canonical(doc)
    row = conn.execute(
        select(t.consents.c.doc).where(t.consents.c.consent_id == record.consent_id)
    ).first()
    if row is not None and row[0] == text:
        return "unchanged"
    values = {
        "subject_ref": record.subject_ref,
        "controller": str(record.controller),
        "status": record.status.value,
        "doc": text,
        "updated_at": utc_text(),
    }
    if row is None:
        conn.execute(insert(t.consents).values(consent_id=record.consent_id, **values))
        consent_event(conn, actor, "IMPORTED", record)
        return "added"
    conn.execute(
        update(t.consents).where(t.consents.c.consent_id == record.consent_id).values(**values)
    )
    consent_event(conn, actor, "UPDATED", record, {"before": json.loads(row[0])})
    return "updated"


def _merge_stop(conn: Connection, doc: dict[str, Any], actor: str) -> str:
    sid, text = str(doc["id"]), canonical(doc)
    row = conn.execute(select(t.stop_requests.c.doc).where(t.stop_requests.c.id == sid)).first()
    if row is not None and row[0] == text:
        return "unchanged"
    if row is None:
        conn.execute(
            insert(t.stop_requests).values(
                id=sid, subject_ref=str(doc["subject_ref"]), doc=text, added_at=utc_text()
            )
        )
        log_change(conn, actor, "add", "stop_request", sid, {"doc": doc})
        return "added"
    conn.execute(update(t.stop_requests).where(t.stop_requests.c.id == sid).values(doc=text))
    log_change(
        conn, actor, "update", "stop_request", sid, {"before": json.loads(row[0]), "doc": doc}
    )
    return "updated"


# ----- agreements ------------------------------------------------------------------------------
def _current_agreement_row(conn: Connection, uid: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(t.agreements)
            .where(t.agreements.c.uid == uid)
            .order_by(t.agreements.c.version.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


def _insert_agreement(conn: Connection, doc: dict[str, Any], actor: str) -> None:
    conn.execute(
        insert(t.agreements).values(
            uid=str(doc["uid"]),
            version=int(doc["version"]),
            state=str(doc["state"]),
            doc=canonical(doc),
            added_at=utc_text(),
        )
    )
    log_change(conn, actor, "add", "agreement", f"{doc['uid']}@{doc['version']}", {"doc": doc})


def _set_state(
    conn: Connection, uid: str, version: int, doc: dict[str, Any], state: str, actor: str
) -> None:
    before = doc.get("state")
    doc = {**doc, "state": state}
    conn.execute(
        update(t.agreements)
        .where(t.agreements.c.uid == uid, t.agreements.c.version == version)
        .values(state=state, doc=canonical(doc))
    )
    log_change(
        conn, actor, "state", "agreement", f"{uid}@{version}", {"before": before, "after": state}
    )


def add_agreement(conn: Connection, data: object, actor: str) -> Agreement:
    """Validate one agreement against the registry and store it as a new version."""
    begin_change(conn)
    registry = load_registry(conn)
    agreement = parse_agreement(Value(data), registry)
    current = _current_agreement_row(conn, agreement.uid)
    if current is not None and agreement.version <= current["version"]:
        raise StoreError(
            f"agreement {agreement.uid} is at v{current['version']}; a new version "
            f"must be higher than that (got v{agreement.version})"
        )
    _insert_agreement(conn, agreement_to_json(agreement), actor)
    return agreement


def set_agreement_state(
    conn: Connection, uid: str, state: AgreementState, actor: str
) -> tuple[int, str]:
    """Suspend, terminate (or re-activate) the current version; returns (version, old state)."""
    begin_change(conn)
    current = _current_agreement_row(conn, uid)
    if current is None:
        raise StoreError(f"unknown agreement {uid}")
    old = str(current["state"])
    if old == AgreementState.TERMINATED.value and state is not AgreementState.TERMINATED:
        raise StoreError(f"agreement {uid} is terminated; make a new agreement (or version)")
    if old != state.value:
        _set_state(
            conn, uid, int(current["version"]), json.loads(current["doc"]), state.value, actor
        )
    return int(current["version"]), old


def agreement_rows(conn: Connection, uid: str | None = None) -> list[dict[str, Any]]:
    query = select(t.agreements).order_by(t.agreements.c.uid, t.agreements.c.version)
    if uid is not None:
        query = query.where(t.agreements.c.uid == uid)
    return [dict(r) for r in conn.execute(query).mappings()]


# ----- consents and stop requests -------------------------------------------------------------
def add_consent(conn: Connection, data: object, actor: str) -> ConsentRecord:
    """Record a new consent (pairwise subject ref); an existing consent id is refused."""
    begin_change(conn)
    record = parse_consent(Value(data), load_registry(conn))
    exists = conn.execute(
        select(t.consents.c.consent_id).where(t.consents.c.consent_id == record.consent_id)
    ).first()
    if exists is not None:
        raise StoreError(
            f"consent {record.consent_id} exists; a changed consent is a new "
            "record (or withdraw this one)"
        )
    conn.execute(
        insert(t.consents).values(
            consent_id=record.consent_id,
            subject_ref=record.subject_ref,
            controller=str(record.controller),
            status=record.status.value,
            doc=canonical(consent_to_json(record)),
            updated_at=utc_text(),
        )
    )
    consent_event(
        conn,
        actor,
        "GIVEN"
        if record.status in (ConsentStatus.ConsentGiven, ConsentStatus.RenewedConsentGiven)
        else "RECORDED",
        record,
    )
    return record


def withdraw_consent(
    conn: Connection, consent_id: str, at: dt.datetime, actor: str
) -> ConsentRecord:
    """Set ``ConsentWithdrawn`` and ``withdrawn_at``; the next request using it is refused."""
    begin_change(conn)
    registry = load_registry(conn)
    record = consent_for(conn, consent_id, registry)
    if record is None:
        raise StoreError(f"unknown consent {consent_id}")
    if record.status is ConsentStatus.ConsentWithdrawn:
        raise StoreError(
            f"consent {consent_id} was already withdrawn at "
            f"{record.withdrawn_at.isoformat() if record.withdrawn_at else '?'}"
        )
    withdrawn = dataclasses.replace(record, status=ConsentStatus.ConsentWithdrawn, withdrawn_at=at)
    conn.execute(
        update(t.consents)
        .where(t.consents.c.consent_id == consent_id)
        .values(
            status=withdrawn.status.value,
            doc=canonical(consent_to_json(withdrawn)),
            updated_at=utc_text(),
        )
    )
    consent_event(
        conn,
        actor,
        "WITHDRAWN",
        withdrawn,
        {"previous_status": record.status.value, "withdrawn_at": at.isoformat()},
    )
    return withdrawn


def consent_rows(conn: Connection, subject_ref: str | None = None) -> list[dict[str, Any]]:
    query = select(t.consents).order_by(t.consents.c.consent_id)
    if subject_ref is not None:
        query = query.where(t.consents.c.subject_ref == subject_ref)
    return [dict(r) for r in conn.execute(query).mappings()]


def consent_event_rows(
    conn: Connection, consent_id: str | None = None, subject_ref: str | None = None
) -> list[dict[str, Any]]:
    query = select(t.consent_events).order_by(t.consent_events.c.id)
    if consent_id is not None:
        query = query.where(t.consent_events.c.consent_id == consent_id)
    if subject_ref is not None:
        query = query.where(t.consent_events.c.subject_ref == subject_ref)
    return [dict(r) for r in conn.execute(query).mappings()]


def add_stop_request(conn: Connection, data: object, actor: str) -> StopRequest:
    begin_change(conn)
    stop = parse_stop_request(Value(data), load_registry(conn))
    exists = conn.execute(
        select(t.stop_requests.c.id).where(t.stop_requests.c.id == stop.id)
    ).first()
    if exists is not None:
        raise StoreError(f"stop request {stop.id} exists")
    doc = stop_request_to_json(stop)
    conn.execute(
        insert(t.stop_requests).values(
            id=stop.id, subject_ref=stop.subject_ref, doc=canonical(doc), added_at=utc_text()
        )
    )
    log_change(conn, actor, "add", "stop_request", stop.id, {"doc": doc})
    return stop


def stop_rows(conn: Connection, subject_ref: str | None = None) -> list[dict[str, Any]]:
    query = select(t.stop_requests).order_by(t.stop_requests.c.id)
    if subject_ref is not None:
        query = query.where(t.stop_requests.c.subject_ref == subject_ref)
    return [dict(r) for r in conn.execute(query).mappings()]


# ----- service classification ------------------------------------------------------------------
def classify_service(conn: Connection, data: dict[str, Any], actor: str) -> str:
    """Store a service's classification (fields and data classes, purposes, profiles).

    The registry is re-validated with the new entry, so a classification that drops a
    field an agreement or profile still names is refused with that agreement's path.
    """
    begin_change(conn)
    registry = load_registry(conn)
    service = parse_service(Value(data), registry)
    doc = service_to_json(service)
    whole = document(conn, with_subjects=False)
    whole["services"] = [s for s in whole["services"] if s["id"] != doc["id"]] + [doc]
    parse_policy(whole)
    outcome = _put_registry(conn, "service", doc, actor)
    return outcome


def set_enforcing(conn: Connection, enforcing: bool, actor: str, reason: str) -> None:
    """Switch enforcement explicitly (``policy enable/disable``), recorded as a change."""
    begin_change(conn, enforcing=enforcing)
    log_change(conn, actor, "enable" if enforcing else "disable", "policy", "-", {"reason": reason})


def change_rows(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(select(t.changes).order_by(t.changes.c.id.desc()).limit(limit))
    return [dict(r) for r in rows.mappings()]


def counts(conn: Connection) -> dict[str, int]:
    """Entities held, for ``policy show``."""
    out: dict[str, int] = {}
    for kind, section in REGISTRY_SECTIONS:
        out[section] = int(
            conn.execute(
                select(func.count()).select_from(t.registry).where(t.registry.c.kind == kind)
            ).scalar_one()
        )
    for name, table in (
        ("agreement_versions", t.agreements),
        ("consents", t.consents),
        ("stop_requests", t.stop_requests),
        ("decisions", t.decisions),
        ("provisions", t.provisions),
        ("receipts", t.receipts),
    ):
        out[name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return out


def purge_before(conn: Connection, now: str, tables: Iterable[Any] | None = None) -> dict[str, int]:
    """Delete records whose retention ended (``retain_until`` < now)."""
    out = {}
    for table in tables or (t.decisions, t.provisions, t.receipts):
        done = conn.execute(delete(table).where(table.c.retain_until < now))
        out[table.name] = int(done.rowcount or 0)
    return out
