"""Decision log, provider records (APPI Art. 29), receipt records (Art. 30), usage counters.

All appends happen on the decision point's writer thread inside its batch
transaction (:mod:`secnode.policy.worker`); the queries here serve the commands
(``secnode records``, ``secnode report transparency``) and ``policy explain``.
Every record carries ``retain_until`` (at least three years, APPI Rules on
Arts. 29/30; longer when the node's configuration says so).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from secnode.core.policy import (
    Decision,
    LogEntry,
    PolicyRequest,
    UsageCounters,
    decision_log_entry,
)
from secnode.core.policy.timeutil import fiscal_year_bounds, jst_day
from secnode.policy import tables as t
from secnode.policy.common import add_years, canonical, parse_utc, sha256_hex, utc_text

MIN_RETENTION_YEARS = 3


def retain_until(at: dt.datetime, years: int) -> str:
    """End of retention for a record made at ``at`` (never under three years)."""
    return utc_text(add_years(at, max(MIN_RETENTION_YEARS, years)))


# ----- decision log ----------------------------------------------------------------------------
def decision_entry(
    decision: Decision, side: str, node_id: str, headers_sha256: str | None
) -> tuple[dict[str, Any], str]:
    """The logged entry (core fields + where and for which message) and its SHA-256.

    ``headers_sha256`` is the message log's digest of the same MessageHeaders, so the
    entry is tied to the time-stamped log record, which in turn names this digest.
    """
    entry = decision_log_entry(decision)
    entry.update({"side": side, "node": node_id, "headers_sha256": headers_sha256})
    return entry, sha256_hex(canonical(entry))


INSERT_DECISION = insert(t.decisions)
"""Built once: executed with parameters, SQLAlchemy reuses the compiled form (hot path)."""


def insert_decision(
    conn: Connection, entry: dict[str, Any], digest: str, at: dt.datetime, years: int
) -> None:
    conn.execute(INSERT_DECISION, decision_params(entry, digest, at, years))


def decision_params(
    entry: dict[str, Any], digest: str, at: dt.datetime, years: int
) -> dict[str, Any]:
    """The ``pol_decisions`` row of an entry (prepared by the caller for write-behind)."""
    return {
        "at": utc_text(at),
        "side": entry["side"],
        "message_id": entry.get("message_id"),
        "client": entry.get("client"),
        "recipient": entry.get("recipient"),
        "service": entry.get("service"),
        "purpose": entry.get("purpose"),
        "basis": _short(entry.get("basis"), 64),
        "agreement": entry.get("agreement"),
        "consent_id": entry.get("consent_id"),
        "subject_ref": entry.get("subject_ref"),
        "allow": bool(entry["allow"]),
        "reason": str(entry["reason"]),
        "article": entry.get("article"),
        "entry": canonical(entry),
        "entry_sha256": digest,
        "retain_until": retain_until(at, years),
    }


def _short(value: Any, length: int) -> Any:
    return value[:length] if isinstance(value, str) else value


def decision_rows(
    conn: Connection,
    *,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
    subject_ref: str | None = None,
    message_id: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    query = select(t.decisions).order_by(t.decisions.c.id)
    if since is not None:
        query = query.where(t.decisions.c.at >= since)
    if until is not None:
        query = query.where(t.decisions.c.at < until)
    if side is not None:
        query = query.where(t.decisions.c.side == side)
    if subject_ref is not None:
        query = query.where(t.decisions.c.subject_ref == subject_ref)
    if message_id is not None:
        query = query.where(t.decisions.c.message_id == message_id)
    if limit is not None:
        query = query.limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def report_entries(conn: Connection, fiscal_year: int) -> list[LogEntry]:
    """Provider-side decisions of a Japanese fiscal year, as the report builder reads them."""
    start, end = fiscal_year_bounds(fiscal_year)
    rows = conn.execute(
        select(
            t.decisions.c.at,
            t.decisions.c.allow,
            t.decisions.c.basis,
            t.decisions.c.reason,
            t.decisions.c.recipient,
            t.decisions.c.subject_ref,
            t.decisions.c.client,
        )
        .where(
            t.decisions.c.side == "provider",
            t.decisions.c.at >= utc_text(start),
            t.decisions.c.at < utc_text(end),
        )
        .order_by(t.decisions.c.id)
    )
    return [
        LogEntry(
            time=parse_utc(at),
            allow=bool(allow),
            basis=basis,
            reason=reason,
            recipient=recipient,
            subject_ref=subject,
            client=client,
        )
        for at, allow, basis, reason, recipient, subject, client in rows
    ]


def provision_days(
    conn: Connection, request: PolicyRequest, at: dt.datetime, window_days: int
) -> frozenset[dt.date]:
    """JST days within the window on which this node provided to the request's client
    subsystem, from its service, for its purpose (the recurrence rule's evidence).

    Reads distinct UTC hours (at most 24 a day), so a busy routine flow costs a few hundred
    rows, not one per provision; each hour falls in one JST day.
    """
    since = utc_text(at - dt.timedelta(days=window_days + 1))
    c = t.decisions.c
    hours = conn.execute(
        select(func.substr(c.at, 1, 13))
        .where(
            c.side == "provider",
            c.allow.is_(True),
            c.basis.is_not(None),
            c.client == str(request.client),
            c.service == str(request.service),
            c.purpose == request.purpose,
            c.at >= since,
        )
        .distinct()
    )
    return frozenset(jst_day(dt.datetime.fromisoformat(f"{hour}:00:00+00:00")) for (hour,) in hours)


# ----- usage counters (quotas) -----------------------------------------------------------------
def _upsert(engine_name: str, table: Any) -> Any:
    if engine_name == "postgresql":
        return postgresql.insert(table)
    if engine_name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"policy store supports sqlite and postgresql, not {engine_name}")


_KEY = ["agreement_uid", "day"]
_USAGE_ROW: dict[str, Any] = {}
_USAGE_BUMP: dict[str, Any] = {}
_USAGE_TODAY = (
    select(t.usage.c.count)
    .where(t.usage.c.agreement_uid == bindparam("uid"), t.usage.c.day == bindparam("day"))
    .with_for_update()
)
_USAGE_TOTAL = select(func.coalesce(func.sum(t.usage.c.count), 0)).where(
    t.usage.c.agreement_uid == bindparam("uid")
)


def _usage_statements(dialect: str) -> tuple[Any, Any]:
    """(ensure the row, count one use) for ``dialect``, built once (hot path)."""
    if dialect not in _USAGE_ROW:
        values: dict[str, Any] = {"agreement_uid": bindparam("uid"), "day": bindparam("day")}
        _USAGE_ROW[dialect] = (
            _upsert(dialect, t.usage)
            .values(**values, count=0)
            .on_conflict_do_nothing(index_elements=_KEY)
        )
        _USAGE_BUMP[dialect] = (
            _upsert(dialect, t.usage)
            .values(**values, count=1)
            .on_conflict_do_update(index_elements=_KEY, set_={"count": t.usage.c.count + 1})
        )
    return _USAGE_ROW[dialect], _USAGE_BUMP[dialect]


def lock_usage(conn: Connection, uids: Iterable[str], at: dt.datetime) -> UsageCounters:
    """Counts for quota-bearing agreements, locked until commit so quotas hold exactly.

    The insert makes sure today's row exists (and, on SQLite, takes the database write
    lock); ``FOR UPDATE`` locks the row on PostgreSQL. Concurrent node processes thus
    decide one after the other for the same agreement.
    """
    day = jst_day(at).isoformat()
    per_day: dict[str, int] = {}
    total: dict[str, int] = {}
    ensure, _ = _usage_statements(conn.engine.dialect.name)
    for uid in sorted(set(uids)):
        key = {"uid": uid, "day": day}
        conn.execute(ensure, key)
        per_day[uid] = int(conn.execute(_USAGE_TODAY, key).scalar_one())
        total[uid] = int(conn.execute(_USAGE_TOTAL, {"uid": uid}).scalar_one())
    return UsageCounters(per_day=per_day, total=total)


def count_use(conn: Connection, uid: str, at: dt.datetime) -> None:
    """One allowed provision under agreement ``uid`` (same transaction as its decision row)."""
    _, bump = _usage_statements(conn.engine.dialect.name)
    conn.execute(bump, {"uid": uid, "day": jst_day(at).isoformat()})


# ----- provider and receipt records ------------------------------------------------------------
_INSERT_PROVISION = insert(t.provisions)
_INSERT_RECEIPT = insert(t.receipts)


def insert_provision(
    conn: Connection,
    at: dt.datetime,
    message_id: str | None,
    decision_sha256: str,
    record: dict[str, Any],
    years: int,
) -> None:
    conn.execute(
        _INSERT_PROVISION,
        {
            "at": utc_text(at),
            "message_id": message_id,
            "decision_sha256": decision_sha256,
            "recipient": str(record["recipient"]),
            "service": str(record["service"]),
            "subject_ref": record.get("subject_ref"),
            "basis": str(record["basis"]),
            "record_type": str(record["record_type"]),
            "record": canonical(record),
            "retain_until": retain_until(at, years),
        },
    )


def insert_receipt(
    conn: Connection,
    at: dt.datetime,
    message_id: str | None,
    record: dict[str, Any],
    statement_sha256: str,
    years: int,
) -> None:
    conn.execute(
        _INSERT_RECEIPT,
        {
            "at": utc_text(at),
            "message_id": message_id,
            "provider": str(record["provider"]),
            "service": str(record["service"]),
            "client": str(record["client"]),
            "subject_ref": record.get("subject_ref"),
            "basis": record.get("basis"),
            "statement_sha256": statement_sha256,
            "record": canonical(record),
            "retain_until": retain_until(at, years),
        },
    )


def _records(conn: Connection, table: Any, subject_ref: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(table.c.at, table.c.record)
        .where(table.c.subject_ref == subject_ref)
        .order_by(table.c.id)
    )
    return [{"at": at, **json.loads(record)} for at, record in rows]


def subject_records(engine: Engine, subject_ref: str) -> dict[str, Any]:
    """Art. 33(5) disclosure: the provisions (and receipts) this node holds about a subject."""
    with engine.connect() as conn:
        return {
            "subject_ref": subject_ref,
            "provisions": _records(conn, t.provisions, subject_ref),
            "receipts": _records(conn, t.receipts, subject_ref),
        }
