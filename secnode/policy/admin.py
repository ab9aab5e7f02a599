"""Policy registry operations: what the ``secnode policy``, ``agreement``, ``consent``,
``stop-request`` and ``service classify`` commands do, as functions on an opened node.

Every change is validated by the pure core before it is stored, is recorded as a
registry change (who, what, when) and reaches running nodes sharing the database
with their next request. Documents read from files name the file in their
errors (:meth:`PolicyFormatError.in_source`). Refusals raise :class:`PolicyAdminError`
(or the store's :class:`~secnode.policy.store.StoreError`, the core's
:class:`PolicyFormatError`); the commands only parse options and print.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from certs.errors import SecnodeError
from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.policy import (
    AgreementState,
    DataClass,
    Decision,
    PolicySnapshot,
    dumps_policy,
    load_policy,
    parse_request,
)
from secnode.core.policy.strict_json import PolicyFormatError, parse_json
from secnode.home import NodeHome
from secnode.policy import records, store
from secnode.policy.common import actor, utc_text
from secnode.policy.evaluation import evaluate


class PolicyAdminError(SecnodeError):
    """A policy registry operation was refused; the message says why."""


def read_json(path: str) -> object:
    """A JSON document from ``path``, strictly parsed; errors name the file."""
    try:
        return parse_json(Path(path).read_bytes())
    except PolicyFormatError as exc:
        raise exc.in_source(path) from None


def _doc(row: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(row["doc"]))


# ----- the policy document ----------------------------------------------------------------------
def import_policy(
    node: NodeHome, file: str, by: str | None, *, check: bool = False
) -> tuple[PolicySnapshot, dict[str, int]]:
    """Validate ``file`` (strict: unknown vocabulary and terms that can never authorise
    anything are refused) and merge it into the store; ``check``: the same, then roll back."""
    snapshot = load_policy(file)
    with _transaction(node, check) as conn:
        counts = store.import_policy(conn, snapshot, actor(by), Path(file).name)
    return snapshot, counts


@contextlib.contextmanager
def _transaction(node: NodeHome, dry_run: bool) -> Iterator[Connection]:
    """A write transaction; a dry run does every check and write, then rolls back."""
    if not dry_run:
        with node.engine.begin() as conn:
            yield conn
        return
    with node.engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        finally:
            trans.rollback()


def export_policy(node: NodeHome, file: str) -> PolicySnapshot:
    """Write the stored policy (registry, consents, stop requests) as one document."""
    with node.engine.connect() as conn:
        snapshot = store.load_full(conn)
    Path(file).write_text(dumps_policy(snapshot), encoding="utf-8")
    return snapshot


def policy_state(node: NodeHome) -> dict[str, Any]:
    """Enforcement, generation, version, digest (or why the registry does not load), counts."""
    with node.engine.connect() as conn:
        state = store.state_row(conn)
        held = store.counts(conn)
        try:
            digest, error = store.load_registry(conn).digest, None
        except ValueError as exc:  # the stored registry no longer validates: say so
            digest, error = None, str(exc)
    return {
        "enforcing": bool(state["enforcing"]),
        "generation": int(state["generation"]),
        "policy_version": state["policy_version"],
        "registry_digest": digest,
        "load_error": error,
        "settings": json.loads(state["settings"]),
        "retention_years": max(
            records.MIN_RETENTION_YEARS, node.dir.config.policy.records_retention_years
        ),
        "counts": held,
    }


def explain_request(
    node: NodeHome, request_file: str, at: dt.datetime
) -> tuple[Decision, PolicySnapshot | None]:
    """Decide the request in ``request_file`` as the node would (same function), at ``at``."""
    try:
        request = parse_request(read_json(request_file))
    except PolicyFormatError as exc:
        raise exc.in_source(request_file) from None
    with node.engine.connect() as conn:
        try:
            registry: PolicySnapshot | None = store.load_registry(conn)
        except ValueError:  # no valid registry: the decision says so (deny)
            registry = None
        decision = evaluate(conn, registry, request, at, lock=False)
    return decision, registry


def history(node: NodeHome, limit: int) -> list[dict[str, Any]]:
    """Registry changes, newest first."""
    with node.engine.connect() as conn:
        return store.change_rows(conn, limit)


def decision_log(
    node: NodeHome,
    since: dt.datetime | None,
    until: dt.datetime | None,
    side: str | None,
    subject_ref: str | None,
    message_id: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Decision-log rows, allow and deny, in the time range."""
    with node.engine.connect() as conn:
        return records.decision_rows(
            conn,
            since=utc_text(since) if since else None,
            until=utc_text(until) if until else None,
            side=side,
            subject_ref=subject_ref,
            message_id=message_id,
            limit=limit,
        )


def set_enforcing(node: NodeHome, on: bool, by: str | None, reason: str) -> None:
    """Turn enforcement on or off (recorded with who and why)."""
    with node.engine.begin() as conn:
        store.set_enforcing(conn, on, actor(by), reason)


def purge(node: NodeHome, dry_run: bool) -> dict[str, int]:
    """Delete decision-log rows and records whose retention ended (or only count them)."""
    with node.engine.begin() as conn:
        counts = store.purge_before(conn, utc_text())
        if dry_run:
            conn.rollback()
    return counts


# ----- agreements -------------------------------------------------------------------------------
def add_agreement(
    node: NodeHome, file: str, by: str | None, *, check: bool = False
) -> tuple[str, int, str]:
    """Validate the agreement in ``file`` and store it as a new version: (uid, version, state).
    ``check``: validate against the stored registry exactly so, and store nothing."""
    data = read_json(file)
    try:
        with _transaction(node, check) as conn:
            agreement = store.add_agreement(conn, data, actor(by))
    except PolicyFormatError as exc:
        raise exc.in_source(file) from None
    return agreement.uid, agreement.version, agreement.state.value


def _agreement_summary(row: dict[str, Any]) -> dict[str, Any]:
    doc = _doc(row)
    return {
        "uid": row["uid"],
        "version": row["version"],
        "state": row["state"],
        "type": doc.get("type"),
        "assignee": ",".join(doc.get("assignee", [])),
        "valid_from": doc.get("valid_from"),
        "valid_to": doc.get("valid_to"),
        "title": doc.get("title"),
        "added_at": row["added_at"],
    }


def agreements(node: NodeHome, all_versions: bool) -> list[dict[str, Any]]:
    """Agreement summaries: the current version of each, or every stored version."""
    with node.engine.connect() as conn:
        rows = store.agreement_rows(conn)
    if not all_versions:
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            latest[row["uid"]] = row
        rows = list(latest.values())
    return [_agreement_summary(r) for r in rows]


def agreement_doc(node: NodeHome, uid: str, version: int | None) -> dict[str, Any]:
    """One agreement as stored (the current version unless ``version``)."""
    with node.engine.connect() as conn:
        rows = store.agreement_rows(conn, uid)
    if version is not None:
        rows = [r for r in rows if r["version"] == version]
    if not rows:
        raise PolicyAdminError(f"unknown agreement {uid}" + (f" v{version}" if version else ""))
    return _doc(rows[-1])


def set_agreement_state(
    node: NodeHome, uid: str, state: AgreementState, by: str | None
) -> tuple[int, str]:
    """Suspend, terminate or resume an agreement: (version, old state)."""
    with node.engine.begin() as conn:
        version, old = store.set_agreement_state(conn, uid, state, actor(by))
    return version, old


# ----- consents and stop requests ---------------------------------------------------------------
def add_consent(node: NodeHome, file: str, by: str | None) -> tuple[str, str, str]:
    """Record the consent in ``file``: (consent id, subject reference, status)."""
    data = read_json(file)
    try:
        with node.engine.begin() as conn:
            record = store.add_consent(conn, data, actor(by))
    except PolicyFormatError as exc:
        raise exc.in_source(file) from None
    return record.consent_id, record.subject_ref, record.status.value


def withdraw_consent(node: NodeHome, consent_id: str, at: dt.datetime, by: str | None) -> str:
    """Withdraw a consent at ``at``; returns its id."""
    with node.engine.begin() as conn:
        record = store.withdraw_consent(conn, consent_id, at, actor(by))
    return record.consent_id


def _consent_summary(row: dict[str, Any]) -> dict[str, Any]:
    doc = _doc(row)
    return {
        "consent_id": row["consent_id"],
        "subject_ref": row["subject_ref"],
        "status": row["status"],
        "recipients": list(doc.get("recipients", [])),
        "purposes": list(doc.get("purposes", [])),
        "expires_at": doc.get("expires_at"),
        "updated_at": row["updated_at"],
    }


def consents(node: NodeHome, subject_ref: str | None) -> list[dict[str, Any]]:
    """Consent summaries (status as stored; validity also depends on time)."""
    with node.engine.connect() as conn:
        rows = store.consent_rows(conn, subject_ref)
    return [_consent_summary(r) for r in rows]


def consent_detail(node: NodeHome, consent_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One consent record and its events (given, withdrawn, ...)."""
    with node.engine.connect() as conn:
        rows = [r for r in store.consent_rows(conn) if r["consent_id"] == consent_id]
        events = store.consent_event_rows(conn, consent_id=consent_id)
    if not rows:
        raise PolicyAdminError(f"unknown consent {consent_id}")
    return _doc(rows[0]), [{k: e[k] for k in ("at", "event", "status", "actor")} for e in events]


def add_stop_request(node: NodeHome, file: str, by: str | None) -> tuple[str, str, str]:
    """Record the stop request in ``file``: (id, subject reference, scope)."""
    data = read_json(file)
    try:
        with node.engine.begin() as conn:
            stop = store.add_stop_request(conn, data, actor(by))
    except PolicyFormatError as exc:
        raise exc.in_source(file) from None
    return stop.id, stop.subject_ref, stop.scope.value


def stop_requests(node: NodeHome, subject_ref: str | None) -> list[dict[str, Any]]:
    with node.engine.connect() as conn:
        return [_doc(r) for r in store.stop_rows(conn, subject_ref)]


# ----- service classification -------------------------------------------------------------------
@dataclass(frozen=True)
class Classification:
    """How ``service classify`` describes a service's data, from a file and/or options."""

    file: str | None = None
    non_personal: bool = False
    fields: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    subject_required: bool | None = None
    acquisition: str | None = None
    title: str | None = None


def service_of(node: NodeHome, text: str) -> ServiceId:
    """``SUBSYSTEM/CODE[/VERSION]`` of this member (``/CODE`` for the member's own service),
    or a full service id (any member)."""
    parts = text.split("/")
    if len(parts) >= 5:
        return ServiceId.parse(text)
    if len(parts) in (2, 3):
        return ServiceId.of(
            SubsystemId.of(node.member_id, parts[0]) if parts[0] else node.member_id,
            parts[1],
            parts[2] if len(parts) == 3 else None,
        )
    raise PolicyAdminError(f"service {text!r}: use SUBSYSTEM/SERVICE[/VERSION] or a full id")


def service_entry(service: ServiceId, c: Classification) -> dict[str, Any]:
    """The ``services`` entry of a policy document that ``c`` describes."""
    data: dict[str, Any] = {}
    if c.file is not None:
        raw = read_json(c.file)
        if not isinstance(raw, dict):
            raise PolicyAdminError(f"{c.file}: expected a JSON object (one service entry)")
        data = dict(raw)
        if "id" in data and str(data["id"]) != str(service):
            raise PolicyAdminError(f"{c.file}: id {data['id']} is not {service}")
    data["id"] = str(service)
    if c.non_personal:
        data.pop("fields", None)
        data["data_classes"] = [DataClass.NON_PERSONAL.value]
        data.setdefault("subject_required", False)
    if c.fields:
        data.pop("data_classes", None)
        parsed = []
        for item in c.fields:
            name, sep, cls = item.partition("=")
            if not sep:
                raise PolicyAdminError(f"--field {item!r}: use NAME=CLASS (e.g. name=PERSONAL)")
            parsed.append({"name": name, "class": cls})
        data["fields"] = parsed
    if c.purposes:
        data["registered_purposes"] = list(c.purposes)
    if c.profiles:
        data["exception_profiles"] = list(c.profiles)
    if c.subject_required is not None:
        data["subject_required"] = c.subject_required
    if c.acquisition:
        data["acquisition_circumstances"] = c.acquisition
    if c.title:
        data["title"] = c.title
    if "fields" not in data and "data_classes" not in data:
        raise PolicyAdminError("give a classification: FILE, --non-personal or --field NAME=CLASS")
    return data


def classify(
    node: NodeHome, service: str, c: Classification, by: str | None
) -> tuple[ServiceId, str]:
    """Store ``service``'s classification: (service id, what changed)."""
    sid = service_of(node, service)
    data = service_entry(sid, c)
    try:
        with node.engine.begin() as conn:
            outcome = store.classify_service(conn, data, actor(by))
    except PolicyFormatError as exc:
        raise (exc.in_source(c.file) if c.file else exc) from None
    return sid, outcome
