"""Transparency report (Kakogawa style): provisions per fiscal year, basis and recipient.

Built only from decision-log entries (research §3.5), so it can be re-derived and
checked by an auditor. Small subject counts are suppressed ("<5") so the report a
city publishes cannot single anyone out. Every renderer escapes what it prints:
recipient names and codes come from registry data a city does not fully control.

This module counts; :mod:`.report_render` prints (table, JSON, CSV, HTML).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from certs.errors import SecnodeError

from .timeutil import fiscal_year_bounds, fiscal_year_of, parse_instant, require_aware
from .vocabulary import CATEGORY_LABELS, ORDINANCE_CODE, Category, builtin_basis

UNSPECIFIED = "UNSPECIFIED"
"""Row key for refusals whose request named no valid basis (never echo client input)."""
DEFAULT_SUPPRESS_BELOW = 5
FORMATS = ("table", "json", "csv", "html")


class ReportError(SecnodeError, ValueError):
    """A report cannot be made as asked (a suppression threshold below 1, an unknown format)."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """The decision-log fields the report needs."""

    time: datetime
    allow: bool
    basis: str | None
    reason: str
    recipient: str | None
    subject_ref: str | None = None
    client: str | None = None
    """The client subsystem (the receiving unit, e.g. one police station)."""


def entry_from(record: LogEntry | Mapping[str, Any]) -> LogEntry:
    """Accept a :class:`LogEntry` or a decision-log dict (``decision_log_entry`` shape)."""
    if isinstance(record, LogEntry):
        require_aware(record.time)
        return record
    raw_time = record.get("ts", record.get("time"))
    when = parse_instant(raw_time) if isinstance(raw_time, str) else raw_time
    if not isinstance(when, datetime):
        raise ValueError(f"decision-log entry has no time: {record!r}")
    allow = record.get("allow")
    if allow is None:
        allow = record.get("decision") == "ALLOW"
    recipient = record.get("recipient")
    if recipient is None and record.get("client"):
        recipient = "/".join(str(record["client"]).split("/")[:3])
    return LogEntry(
        time=require_aware(when),
        allow=bool(allow),
        basis=record.get("basis"),
        reason=str(record.get("reason", "")),
        recipient=recipient,
        subject_ref=record.get("subject_ref", record.get("subject")),
        client=record.get("client"),
    )


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One line of the published table."""

    basis: str
    category: str | None
    label_ja: str
    label_en: str
    recipient: str
    recipient_name: str
    provisions: int
    subjects: int | None
    """Distinct subjects among provisions; None when entries carry no subject ref."""
    refused: int
    unit: str | None = None
    """The receiving subsystem (grouping by unit); None when grouped by member."""
    unit_name: str | None = None
    article: str | None = None
    """What the provision rests on (APPI article, and the ordinance condition)."""


@dataclass(frozen=True, slots=True)
class ReasonTotal:
    """The total of one reason for provision (a city publishes it under each reason)."""

    basis: str
    label_ja: str
    label_en: str
    provisions: int
    subjects: int | None
    refused: int
    hidden: bool
    """A row of this reason is suppressed: the subtotal's subject count is hidden too."""


GROUPINGS = ("member", "unit")


@dataclass(frozen=True, slots=True)
class TransparencyReport:
    """A fiscal year's report; ``subjects_cell`` applies suppression for display."""

    fiscal_year: int
    period_start: datetime
    period_end: datetime
    rows: tuple[ReportRow, ...]
    total_provisions: int
    total_refused: int
    total_subjects: int | None
    suppress_below: int
    title_ja: str = "個人情報の外部提供状況"
    title_en: str = "Provision of personal information to outside parties"
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Published with the table (suppression)."""
    internal_notes: tuple[str, ...] = field(default_factory=tuple)
    """For operators (table and JSON forms), never in the published page."""
    group_by: str = "member"
    reason_totals: tuple[ReasonTotal, ...] = ()
    publisher: str | None = None
    """The city publishing the report (its name, not an identifier)."""
    contact: str | None = None
    """The office to ask (e.g. 総務部 情報公開課 個人情報保護担当, phone)."""
    published: date | None = None

    def subjects_cell(self, count: int | None) -> str:
        if count is None:
            return "–"
        if 0 < count < self.suppress_below:
            return f"<{self.suppress_below}"
        return str(count)

    def is_suppressed(self, count: int | None) -> bool:
        return count is not None and 0 < count < self.suppress_below

    @property
    def total_hidden(self) -> bool:
        """Hide the total if any row is hidden: total minus the others would reveal it."""
        return self.is_suppressed(self.total_subjects) or any(
            self.is_suppressed(r.subjects) for r in self.rows
        )

    def total_subjects_cell(self) -> str:
        """``*`` whenever a row is suppressed (the note says so), else the count."""
        return "*" if self.total_hidden else self.subjects_cell(self.total_subjects)

    def reason_subjects_cell(self, total: ReasonTotal) -> str:
        return "*" if total.hidden else self.subjects_cell(total.subjects)


def _row_basis(code: str | None, labels: Mapping[str, tuple[str, str]]) -> str:
    if code is None:
        return UNSPECIFIED
    if code in labels or builtin_basis(code) is not None or ORDINANCE_CODE.match(code):
        return code
    return UNSPECIFIED


def _labels(code: str, labels: Mapping[str, tuple[str, str]]) -> tuple[str | None, str, str]:
    if code in labels:
        ja, en = labels[code]
        return None, ja, en
    basis = builtin_basis(code)
    if basis is not None:
        ja, en = CATEGORY_LABELS[basis.category]
        return basis.category.value, ja, en
    if code == UNSPECIFIED:
        return None, "理由の記載なし", "No valid basis stated"
    return None, code, code


def build_transparency_report(
    entries: Iterable[LogEntry | Mapping[str, Any]],
    fiscal_year: int,
    *,
    suppress_below: int = DEFAULT_SUPPRESS_BELOW,
    recipient_names: Mapping[str, str] | None = None,
    basis_labels: Mapping[str, tuple[str, str]] | None = None,
    group_by: str = "member",
    unit_names: Mapping[str, str] | None = None,
    basis_articles: Mapping[str, str] | None = None,
    publisher: str | None = None,
    contact: str | None = None,
    published: date | None = None,
) -> TransparencyReport:
    """Aggregate decision-log entries of one Japanese fiscal year (April 1 – March 31 JST).

    Allowed entries without a basis (non-personal data) are not provisions of personal
    information and are left out; every refusal is counted. ``group_by="unit"`` makes a
    row per receiving subsystem (named by ``unit_names``) under its member, as a city lists
    police stations under the prefectural police. Rows are ordered by reason, then by
    provisions (most first), and each reason has its total.
    """
    if suppress_below < 1:
        raise ReportError("suppress_below must be at least 1")
    if group_by not in GROUPINGS:
        raise ReportError(f"unknown grouping {group_by!r} (choose from {', '.join(GROUPINGS)})")
    labels = basis_labels or {}
    start, end = fiscal_year_bounds(fiscal_year)
    tally = _tally(entries, fiscal_year, labels, group_by)
    rows = _rows(tally, labels, recipient_names or {}, unit_names or {}, basis_articles or {})
    return TransparencyReport(
        fiscal_year=fiscal_year,
        period_start=start,
        period_end=end,
        rows=rows,
        total_provisions=sum(tally.provisions.values()),
        total_refused=sum(tally.refused.values()),
        total_subjects=len(tally.all_subjects) if tally.all_subjects else None,
        suppress_below=suppress_below,
        notes=_public_notes(suppress_below),
        internal_notes=(
            "集計はノードの判定ログのみに基づきます。 Counted from the node's decision log only.",
        ),
        group_by=group_by,
        reason_totals=_reason_totals(rows, tally.by_reason, suppress_below),
        publisher=publisher,
        contact=contact,
        published=published,
    )


_Key = tuple[str, str, str | None]
"""A report row's identity: (basis code, recipient member, receiving unit or None)."""


@dataclass
class _Tally:
    """What one pass over the decision log counts, per row key and per reason."""

    provisions: dict[_Key, int] = field(default_factory=dict)
    refused: dict[_Key, int] = field(default_factory=dict)
    subjects: dict[_Key, set[str]] = field(default_factory=dict)
    by_reason: dict[str, set[str]] = field(default_factory=dict)
    all_subjects: set[str] = field(default_factory=set)


def _tally(
    entries: Iterable[LogEntry | Mapping[str, Any]],
    fiscal_year: int,
    labels: Mapping[str, tuple[str, str]],
    group_by: str,
) -> _Tally:
    tally = _Tally()
    for record in entries:
        e = entry_from(record)
        if fiscal_year_of(e.time) != fiscal_year:
            continue
        if e.allow and e.basis is None:
            continue
        unit = (e.client or "(unknown)") if group_by == "unit" else None
        key = (_row_basis(e.basis, labels), e.recipient or "(unknown)", unit)
        if e.allow:
            tally.provisions[key] = tally.provisions.get(key, 0) + 1
            if e.subject_ref:
                tally.subjects.setdefault(key, set()).add(e.subject_ref)
                tally.by_reason.setdefault(key[0], set()).add(e.subject_ref)
                tally.all_subjects.add(e.subject_ref)
        else:
            tally.refused[key] = tally.refused.get(key, 0) + 1
    return tally


def _rows(
    tally: _Tally,
    labels: Mapping[str, tuple[str, str]],
    names: Mapping[str, str],
    unit_names: Mapping[str, str],
    basis_articles: Mapping[str, str],
) -> tuple[ReportRow, ...]:
    """One row per key, ordered as a city lists them: by reason, then provisions descending."""
    order = {c.value: i for i, c in enumerate(Category)}
    rows = []
    for key in set(tally.provisions) | set(tally.refused):
        code, recipient, unit = key
        category, ja, en = _labels(code, labels)
        rows.append(
            ReportRow(
                basis=code,
                category=category,
                label_ja=ja,
                label_en=en,
                recipient=recipient,
                recipient_name=names.get(recipient, recipient),
                provisions=tally.provisions.get(key, 0),
                subjects=len(tally.subjects[key]) if key in tally.subjects else None,
                refused=tally.refused.get(key, 0),
                unit=unit,
                unit_name=_unit_name(unit, recipient, unit_names),
                article=basis_articles.get(code),
            )
        )
    rows.sort(
        key=lambda r: (
            order.get(r.category or "", len(order)),
            r.basis,
            -r.provisions,
            -r.refused,
            r.recipient_name,
            r.unit_name or "",
        )
    )
    return tuple(rows)


def _reason_totals(
    rows: tuple[ReportRow, ...], by_reason: Mapping[str, set[str]], suppress_below: int
) -> tuple[ReasonTotal, ...]:
    """Each reason's subtotal; hidden when any of its rows or its own count is suppressed."""

    def hidden(count: int | None) -> bool:
        return count is not None and 0 < count < suppress_below

    totals: list[ReasonTotal] = []
    for r in rows:
        if totals and totals[-1].basis == r.basis:
            t = totals[-1]
            totals[-1] = replace(
                t,
                provisions=t.provisions + r.provisions,
                refused=t.refused + r.refused,
                hidden=t.hidden or hidden(r.subjects),
            )
        else:
            totals.append(
                ReasonTotal(
                    r.basis,
                    r.label_ja,
                    r.label_en,
                    r.provisions,
                    len(by_reason[r.basis]) if r.basis in by_reason else None,
                    r.refused,
                    hidden(r.subjects),
                )
            )
    return tuple(replace(t, hidden=t.hidden or hidden(t.subjects)) for t in totals)


def _public_notes(suppress_below: int) -> tuple[str, ...]:
    return (
        f"対象者数が{suppress_below}未満の行は「<{suppress_below}」と表示し、その場合、"
        "その理由の小計と合計の対象者数は「*」と表示します。 "
        f'Subject counts below {suppress_below} are shown as "<{suppress_below}"; the '
        'subtotal of that reason and the total are then shown as "*". '
        "「–」は対象者を特定しない提供（例：カメラ画像）です。 "
        '"–": provisions that name no individual (e.g. camera images).',
    )


def _unit_name(unit: str | None, recipient: str, names: Mapping[str, str]) -> str | None:
    """A unit's registered display name; without one, its subsystem code (never the full id)."""
    if unit is None:
        return None
    if unit in names:
        return names[unit]
    prefix = recipient + "/"
    return unit[len(prefix) :] if unit.startswith(prefix) else unit
