"""Transparency report: Japanese fiscal year boundaries, suppression, and escaping."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from secnode.core.policy import (
    JST,
    LogEntry,
    build_transparency_report,
    decide,
    decision_log_entry,
    fiscal_year_of,
    load_policy,
    parse_request,
    render_report,
)
from secnode.core.policy.report import UNSPECIFIED
from secnode.core.policy.report_render import (
    render_csv,
    render_html,
    render_table,
    report_to_json,
    wareki_fiscal_year,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policy" / "city-a.json"
CITY_B = "JP/GOV/CITY-B"
POLICE = "JP/GOV/POLICE-HYOGO"


def entry(
    when: datetime,
    *,
    allow: bool = True,
    basis: str | None = "APPI69-1-LAW",
    recipient: str = CITY_B,
    subject: str | None = "S1",
    reason: str = "OK_STATUTE",
) -> LogEntry:
    return LogEntry(
        when, allow, basis, reason if allow else "PURPOSE_NOT_IN_AGREEMENT", recipient, subject
    )


def test_fiscal_year_boundary_march_31_vs_april_1() -> None:
    last = datetime(2027, 3, 31, 23, 59, 59, tzinfo=JST)
    first = datetime(2027, 4, 1, 0, 0, 0, tzinfo=JST)
    assert (fiscal_year_of(last), fiscal_year_of(first)) == (2026, 2027)
    report = build_transparency_report([entry(last), entry(first, subject="S2")], 2026)
    assert report.total_provisions == 1
    next_year = build_transparency_report([entry(last), entry(first, subject="S2")], 2027)
    assert next_year.total_provisions == 1


def test_fiscal_year_is_judged_in_japan_time() -> None:
    # 2027-03-31T16:00Z is 2027-04-01T01:00 JST: fiscal year 2027, not 2026
    utc = datetime(2027, 3, 31, 16, 0, tzinfo=UTC)
    assert fiscal_year_of(utc) == 2027
    assert fiscal_year_of(utc - timedelta(hours=1, seconds=1)) == 2026
    assert build_transparency_report([entry(utc)], 2026).total_provisions == 0


def test_rows_per_basis_and_recipient_with_refusals() -> None:
    t = datetime(2026, 6, 1, tzinfo=JST)
    log = [
        entry(t, subject="S1"),
        entry(t, subject="S1"),
        entry(t, subject="S2"),
        entry(t, allow=False),
        entry(
            t,
            basis="ORD-CRIMINAL-INVESTIGATION",
            recipient=POLICE,
            subject=None,
            reason="OK_EXCEPTION",
        ),
        entry(t, allow=False, basis="ORD-CRIMINAL-INVESTIGATION", recipient=POLICE),
        entry(t, allow=True, basis=None, reason="NOT_PERSONAL_DATA"),  # not a provision
    ]
    report = build_transparency_report(log, 2026, suppress_below=1)
    rows = {(r.basis, r.recipient): r for r in report.rows}
    law = rows[("APPI69-1-LAW", CITY_B)]
    assert (law.provisions, law.subjects, law.refused) == (3, 2, 1)
    police = rows[("ORD-CRIMINAL-INVESTIGATION", POLICE)]
    assert (police.provisions, police.subjects, police.refused) == (1, None, 1)
    assert report.total_provisions == 4 and report.total_refused == 2
    assert len(report.rows) == 2


def test_small_subject_counts_are_suppressed_everywhere() -> None:
    t = datetime(2026, 6, 1, tzinfo=JST)
    log = [entry(t, subject=f"S{i}") for i in (0, 0, 1, 2)]  # 4 provisions, 3 people
    log += [entry(t, recipient="JP/GOV/FIRE-A", subject=f"F{i}") for i in range(7)]
    report = build_transparency_report(log, 2026, suppress_below=5)
    cells = {r.recipient: report.subjects_cell(r.subjects) for r in report.rows}
    assert cells == {CITY_B: "<5", "JP/GOV/FIRE-A": "7"}
    data = report_to_json(report)
    hidden = next(r for r in data["rows"] if r["recipient"] == CITY_B)
    assert hidden["subjects"] is None and hidden["subjects_suppressed"] is True
    assert hidden["subjects_display"] == "<5"
    assert "<5" in render_table(report)
    assert '"subjects": 3' not in json.dumps(data)
    csv_row = next(r for r in csv.reader(io.StringIO(render_csv(report))) if r[4] == CITY_B)
    assert (csv_row[6], csv_row[7]) == ("4", "<5")
    assert "&lt;5" in render_html(report)


def test_no_subject_refs_shows_a_dash_not_zero() -> None:
    t = datetime(2026, 6, 1, tzinfo=JST)
    report = build_transparency_report([entry(t, subject=None)], 2026)
    assert report.subjects_cell(report.rows[0].subjects) == "–"


def test_invalid_client_basis_is_grouped_not_echoed() -> None:
    t = datetime(2026, 6, 1, tzinfo=JST)
    report = build_transparency_report(
        [entry(t, allow=False, basis='=HYPERLINK("http://evil")')], 2026
    )
    assert report.rows[0].basis == UNSPECIFIED
    assert "HYPERLINK" not in render_csv(report)


def test_csv_escapes_quotes_commas_newlines_and_formulas() -> None:
    t = datetime(2026, 6, 1, tzinfo=JST)
    names = {CITY_B: '=cmd|"/c calc"!A1, B市\n福祉課'}
    report = build_transparency_report([entry(t)], 2026, recipient_names=names)
    text = render_csv(report)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "fiscal_year"
    assert rows[1][5] == "'" + names[CITY_B]  # quoted correctly, formula neutralised
    assert rows[-1][1] == "TOTAL"


def test_html_escapes_everything_and_is_self_contained() -> None:
    t = datetime(2026, 6, 1, tzinfo=JST)
    names = {CITY_B: "<script>alert('x')</script> & \"B市\""}
    labels = {"ORD-X": ("<b>条例</b>", "Ordinance & co")}
    log = [entry(t), entry(t, basis="ORD-X", recipient=CITY_B)]
    page = render_html(
        build_transparency_report(log, 2026, recipient_names=names, basis_labels=labels)
    )
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>条例</b>" not in page and "&lt;b&gt;条例&lt;/b&gt;" in page
    assert "&amp; &quot;B市&quot;" in page
    assert page.startswith("<!DOCTYPE html>") and 'lang="ja"' in page
    assert "令和8年度" in page and "@media print" in page
    assert "http" not in page.split("<body>")[0].replace("http-equiv", "")  # no remote assets


def test_table_neutralises_control_characters() -> None:
    t = datetime(2026, 6, 1, tzinfo=JST)
    report = build_transparency_report([entry(t)], 2026, recipient_names={CITY_B: "B市\x1b[2J"})
    assert "\x1b" not in render_table(report)


def test_wareki_names() -> None:
    assert wareki_fiscal_year(2019) == "令和元年度"
    assert wareki_fiscal_year(2026) == "令和8年度"
    assert wareki_fiscal_year(2018) == "平成30年度"


def test_render_report_formats() -> None:
    t = datetime(2026, 6, 1, tzinfo=JST)
    report = build_transparency_report([entry(t)], 2026)
    assert json.loads(render_report(report, "json"))["fiscal_year"] == 2026
    for fmt in ("table", "csv", "html"):
        assert render_report(report, fmt)
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        render_report(report, "pdf")


def test_report_from_real_decisions_matches_the_requests_sent() -> None:
    """The scripted-run acceptance in miniature: decide, log, report."""
    policy = load_policy(EXAMPLE)
    at = datetime(2026, 6, 1, 10, 0, tzinfo=JST)
    welfare = {
        "client": "JP/GOV/CITY-B/welfare",
        "service": "JP/GOV/CITY-A/resident/basic",
        "purpose": "WELFARE-ELIGIBILITY",
        "legal_basis": "APPI69-1-LAW",
        "fields": ["name"],
        "issue": "I",
    }
    child = {
        "client": "JP/COM/BIZ-X/app",
        "service": "JP/GOV/CITY-A/child/location",
        "purpose": "CHILD-WATCH",
        "legal_basis": "CONSENT",
        "issue": "I",
    }
    requests = [{**welfare, "subject": f"R{i}"} for i in range(6)] + [
        {**welfare, "subject": "R0", "purpose": "MARKETING"},  # refused
        {**child, "subject": "S1", "consent_id": "CR-1"},
        {**child, "subject": "S2", "consent_id": "CR-2"},  # withdrawn: refused
    ]
    log = [decision_log_entry(decide(parse_request(r), policy, at)) for r in requests]
    report = build_transparency_report(log, 2026, suppress_below=5)
    rows = {(r.basis, r.recipient): r for r in report.rows}
    assert (
        rows[("APPI69-1-LAW", CITY_B)].provisions,
        rows[("APPI69-1-LAW", CITY_B)].refused,
        rows[("APPI69-1-LAW", CITY_B)].subjects,
    ) == (6, 1, 6)
    consent = rows[("CONSENT", "JP/COM/BIZ-X")]
    assert (consent.provisions, consent.refused) == (1, 1)
    assert report.subjects_cell(consent.subjects) == "<5"


def test_naive_times_in_the_log_are_refused() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        build_transparency_report(
            [{"ts": "2026-06-01T10:00:00", "allow": True, "basis": "CONSENT", "recipient": CITY_B}],
            2026,
        )


def test_total_subjects_hidden_when_a_row_is_suppressed() -> None:
    """Otherwise total minus the visible rows would reveal the suppressed count."""
    t = datetime(2026, 6, 1, tzinfo=JST)
    log = [entry(t, subject=f"S{i}") for i in range(3)]
    log += [entry(t, recipient="JP/GOV/FIRE-A", subject=f"F{i}") for i in range(7)]
    report = build_transparency_report(log, 2026)
    assert report.total_subjects_cell() == "*"
    assert report_to_json(report)["total"]["subjects"] is None
    assert render_csv(report).splitlines()[-1].endswith(",10,*,0")
    visible = build_transparency_report(log[3:], 2026)
    assert visible.total_subjects_cell() == "7"
