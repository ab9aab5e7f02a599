"""How a transparency report is printed: table, JSON, CSV and the HTML a city publishes.

Every renderer escapes what it prints: recipient names and codes come from registry
data a city does not fully control. The counting is :mod:`.report`'s.
"""

from __future__ import annotations

import csv
import html
import io
import json
import unicodedata
from datetime import timedelta
from typing import Any

from .report import FORMATS, ReportError, ReportRow, TransparencyReport


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
"""Columns of the member-grouped table (``--by unit`` adds the unit after the recipient)."""


def _headers(report: TransparencyReport) -> tuple[str, ...]:
    if report.group_by != "unit":
        return HEADERS
    return (*HEADERS[:3], "提供先の部署 Unit", *HEADERS[3:])


def _cells(report: TransparencyReport) -> list[list[str]]:
    """Rows, each reason followed by its subtotal, then the grand total (text and CSV)."""
    units = report.group_by == "unit"
    out: list[list[str]] = []
    totals = {t.basis: t for t in report.reason_totals}
    for i, r in enumerate(report.rows):
        out.append(
            [
                str(report.fiscal_year),
                f"{r.label_ja} / {r.label_en} ({r.basis})",
                r.recipient_name,
                *([r.unit_name or ""] if units else []),
                str(r.provisions),
                report.subjects_cell(r.subjects),
                str(r.refused),
            ]
        )
        last = i + 1 == len(report.rows) or report.rows[i + 1].basis != r.basis
        if last and r.basis in totals:
            t = totals[r.basis]
            out.append(
                [
                    str(report.fiscal_year),
                    f"小計 Subtotal ({r.basis})",
                    "",
                    *([""] if units else []),
                    str(t.provisions),
                    report.reason_subjects_cell(t),
                    str(t.refused),
                ]
            )
    out.append(
        [
            str(report.fiscal_year),
            "合計 Total",
            "",
            *([""] if units else []),
            str(report.total_provisions),
            report.total_subjects_cell(),
            str(report.total_refused),
        ]
    )
    return out


def _period(report: TransparencyReport) -> str:
    last = report.period_end.date() - timedelta(days=1)
    return f"{report.period_start.date().isoformat()} – {last.isoformat()}"


def _period_ja(report: TransparencyReport) -> str:
    a, b = report.period_start.date(), report.period_end.date() - timedelta(days=1)
    return f"{a.year}年{a.month}月{a.day}日～{b.year}年{b.month}月{b.day}日"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _clean(text: str) -> str:
    """Control characters would let registry text rewrite a terminal; show them escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def render_table(report: TransparencyReport) -> str:
    headers = _headers(report)
    rows = [list(headers)] + [[_clean(c) for c in row] for row in _cells(report)]
    widths = [max(_width(r[i]) for r in rows) for i in range(len(headers))]
    numeric = {0, len(headers) - 3, len(headers) - 2, len(headers) - 1}

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
    notes = [*report.notes, *report.internal_notes]
    return "\n".join([title, "", *body, "", *notes]) + "\n"


def report_to_json(report: TransparencyReport) -> dict[str, Any]:
    """JSON form; suppressed counts are null with a flag, never the true number."""

    def subj(count: int | None, hidden: bool | None = None) -> dict[str, Any]:
        hide = report.is_suppressed(count) if hidden is None else hidden
        return {
            "subjects": None if hide else count,
            "subjects_suppressed": hide,
            "subjects_display": "*" if hide and hidden is not None else report.subjects_cell(count),
        }

    total = {
        "subjects": None if report.total_hidden else report.total_subjects,
        "subjects_suppressed": report.total_hidden,
        "subjects_display": report.total_subjects_cell(),
    }

    def row(r: ReportRow) -> dict[str, Any]:
        out: dict[str, Any] = {
            "basis": r.basis,
            "category": r.category,
            "label_ja": r.label_ja,
            "label_en": r.label_en,
            "recipient": r.recipient,
            "recipient_name": r.recipient_name,
        }
        if report.group_by == "unit":
            out.update(unit=r.unit, unit_name=r.unit_name)
        if r.article is not None:
            out["article"] = r.article
        return {**out, "provisions": r.provisions, **subj(r.subjects), "refused": r.refused}

    return {
        "fiscal_year": report.fiscal_year,
        "fiscal_year_ja": wareki_fiscal_year(report.fiscal_year),
        "period": {
            "from": report.period_start.isoformat(),
            "to": report.period_end.isoformat(),
            "to_exclusive": True,
        },
        "publisher": report.publisher,
        "contact": report.contact,
        "published": report.published.isoformat() if report.published else None,
        "group_by": report.group_by,
        "suppress_below": report.suppress_below,
        "rows": [row(r) for r in report.rows],
        "reason_totals": [
            {
                "basis": t.basis,
                "label_ja": t.label_ja,
                "label_en": t.label_en,
                "provisions": t.provisions,
                **subj(t.subjects, t.hidden),
                "refused": t.refused,
            }
            for t in report.reason_totals
        ],
        "total": {"provisions": report.total_provisions, **total, "refused": report.total_refused},
        "notes": [*report.notes, *report.internal_notes],
    }


def _csv_safe(cell: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas (CSV injection)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def render_csv(report: TransparencyReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    units = report.group_by == "unit"
    writer.writerow(
        [
            "fiscal_year",
            "basis",
            "reason_ja",
            "reason_en",
            "recipient",
            "recipient_name",
            *(["unit", "unit_name"] if units else []),
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
                *([_csv_safe(r.unit or ""), _csv_safe(r.unit_name or "")] if units else []),
                r.provisions,
                report.subjects_cell(r.subjects),
                r.refused,
            ]
        )
    for t in report.reason_totals:
        writer.writerow(
            [
                report.fiscal_year,
                _csv_safe(t.basis),
                "小計",
                "Subtotal",
                "",
                "",
                *(["", ""] if units else []),
                t.provisions,
                report.reason_subjects_cell(t),
                t.refused,
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
            *(["", ""] if units else []),
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
tr.subtotal td { font-weight: bold; background: #f6f6f6; }
tfoot td { font-weight: bold; } p.note { font-size: 0.9em; color: #333; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.meta dt { font-weight: bold; } dl.meta dd { margin: 0; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { margin: 0; font-size: 10pt; } th { background: #ddd !important; }
  tr.subtotal td { background: #eee !important; }
  thead { display: table-header-group; } tfoot { display: table-footer-group; }
  tr { page-break-inside: avoid; break-inside: avoid; }
}
"""


def render_html(report: TransparencyReport, *, publisher: str | None = None) -> str:
    """A self-contained page a city can publish as is: no scripts, no external resources,
    no internal identifiers (member and subsystem ids, basis codes) and no operator notes."""
    e = html.escape
    city = publisher or report.publisher
    units = report.group_by == "unit"
    title = f"{report.title_ja}（{wareki_fiscal_year(report.fiscal_year)}）"
    cols = ["提供理由<br>Reason", "提供先<br>Recipient"]
    if units:
        cols.append("提供先の部署<br>Receiving unit")
    cols += ["提供件数<br>Provisions", "対象者数<br>Subjects", "拒否件数<br>Refused"]
    head = "".join(f'<th scope="col">{h}</th>' for h in cols)
    span = len(cols) - 3
    totals = {t.basis: t for t in report.reason_totals}
    body = []
    for i, r in enumerate(report.rows):
        basis = f"{e(r.label_ja)}<br><small>{e(r.label_en)}</small>" + (
            f'<br><small class="basis">{e(r.article)}</small>' if r.article else ""
        )
        unit = f"<td>{e(r.unit_name or '')}</td>" if units else ""
        body.append(
            f"<tr><td>{basis}</td><td>{e(r.recipient_name)}</td>{unit}"
            f'<td class="n">{r.provisions}</td>'
            f'<td class="n">{e(report.subjects_cell(r.subjects))}</td>'
            f'<td class="n">{r.refused}</td></tr>'
        )
        last = i + 1 == len(report.rows) or report.rows[i + 1].basis != r.basis
        if last and r.basis in totals:
            t = totals[r.basis]
            body.append(
                f'<tr class="subtotal"><td colspan="{span}">小計 Subtotal: {e(t.label_ja)} / '
                f"{e(t.label_en)}</td>"
                f'<td class="n">{t.provisions}</td>'
                f'<td class="n">{e(report.reason_subjects_cell(t))}</td>'
                f'<td class="n">{t.refused}</td></tr>'
            )
    if not body:
        body.append(f'<tr><td colspan="{len(cols)}">該当なし / No provisions or refusals</td></tr>')
    foot = (
        f'<tr><td colspan="{span}">合計 Total</td>'
        f'<td class="n">{report.total_provisions}</td>'
        f'<td class="n">{e(report.total_subjects_cell())}</td>'
        f'<td class="n">{report.total_refused}</td></tr>'
    )
    meta = [("公表団体 Published by", city or "")]
    meta.append(("対象期間 Period", f"{_period_ja(report)} ({_period(report)})"))
    if report.published is not None:
        p = report.published
        meta.append(("公表日 Date of publication", f"{p.year}年{p.month}月{p.day}日 ({p})"))
    if report.contact:
        meta.append(("お問い合わせ先 Contact", report.contact))
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in meta if v)
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in report.notes)
    heading = f"{city} {title}" if city else title
    return (
        '<!DOCTYPE html>\n<html lang="ja">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(heading)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{e(heading)}</h1>\n<p>{e(report.title_en)} — FY{report.fiscal_year}</p>\n"
        f'<dl class="meta">{dl}</dl>\n<table>\n<caption>{e(title)}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n"
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
