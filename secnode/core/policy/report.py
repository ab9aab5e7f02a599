"""Transparency report (Kakogawa style): provisions per fiscal year, basis and recipient.

Built only from decision-log entries (research §3.5), so it can be re-derived and
checked by an auditor. Small subject counts are suppressed ("<5") so the report a
city publishes cannot single anyone out. Every renderer escapes what it prints:
recipient names and codes come from registry data a city does not fully control.
"""

from __future__ import annotations

import csv
import html
import io
import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
        return (
            f"<{self.suppress_below}"
            if self.is_suppressed(self.total_subjects)
            else ("*" if self.total_hidden else self.subjects_cell(self.total_subjects))
        )


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
) -> TransparencyReport:
    """Aggregate decision-log entries of one Japanese fiscal year (April 1 – March 31 JST).

    Allowed entries without a basis (non-personal data) are not provisions of personal
    information and are left out; every refusal is counted.
    """
    if suppress_below < 1:
        raise ReportError("suppress_below must be at least 1")
    names = recipient_names or {}
    labels = basis_labels or {}
    start, end = fiscal_year_bounds(fiscal_year)
    provisions: dict[tuple[str, str], int] = {}
    refused: dict[tuple[str, str], int] = {}
    subjects: dict[tuple[str, str], set[str]] = {}
    all_subjects: set[str] = set()
    for record in entries:
        e = entry_from(record)
        if fiscal_year_of(e.time) != fiscal_year:
            continue
        if e.allow and e.basis is None:
            continue
        key = (_row_basis(e.basis, labels), e.recipient or "(unknown)")
        if e.allow:
            provisions[key] = provisions.get(key, 0) + 1
            if e.subject_ref:
                subjects.setdefault(key, set()).add(e.subject_ref)
                all_subjects.add(e.subject_ref)
        else:
            refused[key] = refused.get(key, 0) + 1
    order = {c.value: i for i, c in enumerate(Category)}
    rows = []
    for key in set(provisions) | set(refused):
        code, recipient = key
        category, ja, en = _labels(code, labels)
        has_subjects = key in subjects
        rows.append(
            ReportRow(
                basis=code,
                category=category,
                label_ja=ja,
                label_en=en,
                recipient=recipient,
                recipient_name=names.get(recipient, recipient),
                provisions=provisions.get(key, 0),
                subjects=len(subjects[key]) if has_subjects else None,
                refused=refused.get(key, 0),
            )
        )
    rows.sort(key=lambda r: (order.get(r.category or "", len(order)), r.basis, r.recipient_name))
    return TransparencyReport(
        fiscal_year=fiscal_year,
        period_start=start,
        period_end=end,
        rows=tuple(rows),
        total_provisions=sum(provisions.values()),
        total_refused=sum(refused.values()),
        total_subjects=len(all_subjects) if all_subjects else None,
        suppress_below=suppress_below,
        notes=(
            f"対象者数が{suppress_below}未満の場合は「<{suppress_below}」と表示します。 "
            f'Subject counts below {suppress_below} are shown as "<{suppress_below}"; '
            'the total is then shown as "*" (対象者数の合計は非表示).',
            "集計はノードの判定ログのみに基づきます。 Counted from the node's decision log only.",
        ),
    )


def wareki_fiscal_year(fiscal_year: int) -> str:
    """令和/平成 name of a fiscal year (FY2019 = 令和元年度)."""
    if fiscal_year >= 2019:
        n = fiscal_year - 2018
        return f"令和{'元' if n == 1 else n}年度"
    n = fiscal_year - 1988
    return f"平成{'元' if n == 1 else n}年度"


# -- renderers -------------------------------------------------------------------------------

HEADERS = (
    "年度 FY",
    "提供理由 Reason",
    "提供先 Recipient",
    "提供件数 Provisions",
    "対象者数 Subjects",
    "拒否件数 Refused",
)


def _cells(report: TransparencyReport) -> list[list[str]]:
    out = [
        [
            str(report.fiscal_year),
            f"{r.label_ja} / {r.label_en} ({r.basis})",
            r.recipient_name,
            str(r.provisions),
            report.subjects_cell(r.subjects),
            str(r.refused),
        ]
        for r in report.rows
    ]
    out.append(
        [
            str(report.fiscal_year),
            "合計 Total",
            "",
            str(report.total_provisions),
            report.total_subjects_cell(),
            str(report.total_refused),
        ]
    )
    return out


def _period(report: TransparencyReport) -> str:
    last = report.period_end.date() - timedelta(days=1)
    return f"{report.period_start.date().isoformat()} – {last.isoformat()}"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _clean(text: str) -> str:
    """Control characters would let registry text rewrite a terminal; show them escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def render_table(report: TransparencyReport) -> str:
    rows = [list(HEADERS)] + [[_clean(c) for c in row] for row in _cells(report)]
    widths = [max(_width(r[i]) for r in rows) for i in range(len(HEADERS))]
    numeric = {0, 3, 4, 5}

    def line(row: list[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - _width(cell))
            parts.append(pad + cell if i in numeric else cell + pad)
        return "  ".join(parts).rstrip()

    title = (
        f"{report.title_ja} {wareki_fiscal_year(report.fiscal_year)} "
        f"(FY{report.fiscal_year}: {_period(report)})"
    )
    sep = "  ".join("-" * w for w in widths)
    body = [line(rows[0]), sep] + [line(r) for r in rows[1:-1]] + [sep, line(rows[-1])]
    return "\n".join([title, "", *body, "", *report.notes]) + "\n"


def report_to_json(report: TransparencyReport) -> dict[str, Any]:
    """JSON form; suppressed counts are null with a flag, never the true number."""

    def subj(count: int | None) -> dict[str, Any]:
        hidden = report.is_suppressed(count)
        return {
            "subjects": None if hidden else count,
            "subjects_suppressed": hidden,
            "subjects_display": report.subjects_cell(count),
        }

    total = {
        "subjects": None if report.total_hidden else report.total_subjects,
        "subjects_suppressed": report.total_hidden,
        "subjects_display": report.total_subjects_cell(),
    }

    return {
        "fiscal_year": report.fiscal_year,
        "fiscal_year_ja": wareki_fiscal_year(report.fiscal_year),
        "period": {
            "from": report.period_start.isoformat(),
            "to": report.period_end.isoformat(),
            "to_exclusive": True,
        },
        "suppress_below": report.suppress_below,
        "rows": [
            {
                "basis": r.basis,
                "category": r.category,
                "label_ja": r.label_ja,
                "label_en": r.label_en,
                "recipient": r.recipient,
                "recipient_name": r.recipient_name,
                "provisions": r.provisions,
                **subj(r.subjects),
                "refused": r.refused,
            }
            for r in report.rows
        ],
        "total": {"provisions": report.total_provisions, **total, "refused": report.total_refused},
        "notes": list(report.notes),
    }


def _csv_safe(cell: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas (CSV injection)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def render_csv(report: TransparencyReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(
        [
            "fiscal_year",
            "basis",
            "reason_ja",
            "reason_en",
            "recipient",
            "recipient_name",
            "provisions",
            "subjects",
            "refused",
        ]
    )
    for r in report.rows:
        writer.writerow(
            [
                report.fiscal_year,
                _csv_safe(r.basis),
                _csv_safe(r.label_ja),
                _csv_safe(r.label_en),
                _csv_safe(r.recipient),
                _csv_safe(r.recipient_name),
                r.provisions,
                report.subjects_cell(r.subjects),
                r.refused,
            ]
        )
    writer.writerow(
        [
            report.fiscal_year,
            "TOTAL",
            "合計",
            "Total",
            "",
            "",
            report.total_provisions,
            report.total_subjects_cell(),
            report.total_refused,
        ]
    )
    return buf.getvalue()


_CSS = """
body { font-family: "Noto Sans JP", "Hiragino Sans", "Yu Gothic", sans-serif; margin: 2em; }
h1 { font-size: 1.4em; } table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #444; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #eee; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: bold; } p.note { font-size: 0.9em; color: #333; }
@media print { body { margin: 1cm; } th { background: #ddd !important; }
  thead { display: table-header-group; } tr { page-break-inside: avoid; } }
"""


def render_html(report: TransparencyReport, *, publisher: str | None = None) -> str:
    """A self-contained printable page (no scripts, no external resources)."""
    e = html.escape
    title = f"{report.title_ja}（{wareki_fiscal_year(report.fiscal_year)}）"
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in HEADERS)
    body = []
    for r in report.rows:
        body.append(
            "<tr>"
            f'<td class="n">{report.fiscal_year}</td>'
            f"<td>{e(r.label_ja)}<br><small>{e(r.label_en)} ({e(r.basis)})</small></td>"
            f"<td>{e(r.recipient_name)}<br><small>{e(r.recipient)}</small></td>"
            f'<td class="n">{r.provisions}</td>'
            f'<td class="n">{e(report.subjects_cell(r.subjects))}</td>'
            f'<td class="n">{r.refused}</td></tr>'
        )
    if not body:
        body.append('<tr><td colspan="6">該当なし / No provisions or refusals</td></tr>')
    foot = (
        f'<tr><td class="n">{report.fiscal_year}</td><td>合計 Total</td><td></td>'
        f'<td class="n">{report.total_provisions}</td>'
        f'<td class="n">{e(report.total_subjects_cell())}</td>'
        f'<td class="n">{report.total_refused}</td></tr>'
    )
    period = _period(report)
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in report.notes)
    by = f"<p>{e(publisher)}</p>" if publisher else ""
    return (
        '<!DOCTYPE html>\n<html lang="ja">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{e(title)}</h1>\n<p>{e(report.title_en)} — FY{report.fiscal_year}, {e(period)}</p>\n"
        f"{by}<table>\n<caption>{e(title)}</caption>\n<thead><tr>{head}</tr></thead>\n"
        f"<tbody>\n{chr(10).join(body)}\n</tbody>\n<tfoot>{foot}</tfoot>\n</table>\n"
        f"{notes}\n</body>\n</html>\n"
    )


def render_report(report: TransparencyReport, fmt: str = "table") -> str:
    """Render in one of :data:`FORMATS` (``table``, ``json``, ``csv``, ``html``)."""
    if fmt == "table":
        return render_table(report)
    if fmt == "json":
        return json.dumps(report_to_json(report), ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report)
    raise ReportError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")
