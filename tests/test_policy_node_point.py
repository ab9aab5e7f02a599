"""The policy decision point on the message path, without HTTP: real store, real
writer thread, real SQLite (and PostgreSQL when ``SECNODE_TEST_PG_URL`` is set).

Signed headers in, verdict out; every decision in the decision log; the response cut to
the permitted fields; provider and receipt records; quotas exact across processes; a
change made by another process (the CLI) decides the very next request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from secnode.core.errors import XRoadError
from secnode.core.policy.timeutil import parse_instant
from secnode.messagelog.convert import headers_sha256
from secnode.policy import records, store
from secnode.policy import tables as t
from secnode.policy.common import canonical, sha256_hex
from secnode.policy.point import NO_POLICY, NOT_FILTERABLE, PROVIDER_DECIDES, PolicyPoint
from secnode.proxy.hooks import Verdict
from secnode.store import db
from tests.support.policy_node import AT, EXAMPLE, NodeCli, make_node, write
from tests.support.policy_point import (
    MEMBER,
    decisions,
    headers_for,
    point_on,
    request,
    run,
)


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[tuple[NodeCli, PolicyPoint]]:
    node = make_node(tmp_path)
    node("policy", "import", EXAMPLE)
    point = point_on(node.db_url)
    yield node, point
    point.worker.close()


# ----- decisions and the log ---------------------------------------------------------------------
def test_allowed_request_is_logged_and_the_log_record_names_the_decision(
    provider: tuple[NodeCli, PolicyPoint],
) -> None:
    _, point = provider
    headers = headers_for(request("welfare-law"))
    verdict = run(point.decide(headers, "provider"))
    assert verdict.allow and verdict.reason == "OK_STATUTE"
    assert verdict.permitted_fields == ["name", "address", "birth_date"]
    digest = verdict.details["decision_sha256"]
    assert f"decision sha256:{digest}" in verdict.record and "APPI Art. 69(1)" in verdict.record
    [row] = decisions(point.worker.engine)
    entry = json.loads(row["entry"])
    assert row["entry_sha256"] == digest == sha256_hex(canonical(entry))
    assert entry["headers_sha256"] == headers_sha256(headers).hex()  # same as the log record's
    assert (entry["side"], entry["reason"], entry["agreement"], entry["message_id"]) == (
        "provider",
        "OK_STATUTE",
        "DSA-1@3",
        headers.message_id,
    )
    assert row["retain_until"].startswith("2029-06-01")


def test_refusal_is_logged_with_reason_article_and_digest(
    provider: tuple[NodeCli, PolicyPoint],
) -> None:
    _, point = provider
    verdict = run(point.decide(headers_for(request("child-watch-withdrawn")), "provider"))
    assert not verdict.allow and verdict.reason == "CONSENT_NOT_VALID"
    assert "APPI Art. 69(2)(i)" in verdict.message
    assert f"decision sha256:{verdict.details['decision_sha256']}" in verdict.message
    [row] = decisions(point.worker.engine)
    assert (row["allow"], row["reason"], row["subject_ref"]) == (False, "CONSENT_NOT_VALID", "S2")


def test_response_is_cut_to_permitted_fields_and_both_records_are_written(
    provider: tuple[NodeCli, PolicyPoint], tmp_path: Path
) -> None:
    _, point = provider
    headers = headers_for(request("welfare-law"))
    verdict = run(point.decide(headers, "provider"))
    body = json.dumps(
        {"name": "山田", "address": "A市", "birth_date": "1980-01-01", "income": 3_000_000}
    ).encode()
    out = run(point.after_response(headers, verdict, body, "application/json"))
    assert json.loads(out) == {"name": "山田", "address": "A市", "birth_date": "1980-01-01"}
    assert verdict.statement is not None
    said = json.loads(verdict.statement)
    assert said["receipt"]["provider_name"] == "A市"
    assert said["receipt"]["acquisition_circumstances"] == "住民基本台帳法に基づき取得"
    provided = records.subject_records(point.worker.engine, "9f2c1e7a-pairwise-ref")
    [record] = provided["provisions"]
    assert record["recipient"] == "JP/GOV/CITY-B/welfare" and record["basis"] == "APPI69-1-LAW"
    assert record["statement_sha256"] == sha256_hex(verdict.statement)
    # the client node (another database) records the receipt from the signed statement
    client_node = make_node(tmp_path / "client", member="JP/GOV/CITY-B")
    client = point_on(client_node.db_url, member="JP/GOV/CITY-B")
    run(client.on_response(headers, Verdict(True, PROVIDER_DECIDES), 200, out, verdict.statement))
    received = client_node.json("records", "--subject", "9f2c1e7a-pairwise-ref")
    [receipt] = received["receipts"]
    assert (receipt["provider_name"], receipt["provider_address"], receipt["data_items"]) == (
        "A市",
        "兵庫県A市中央1-1",
        ["name", "address", "birth_date"],
    )
    assert (
        receipt["consent_fact"] is False
        and receipt["decision_sha256"] == verdict.details["decision_sha256"]
    )
    other = headers_for(request("welfare-law"))  # a statement must be about this message
    with pytest.raises(XRoadError, match="another message"):
        run(client.on_response(other, Verdict(True), 200, out, verdict.statement))
    client.worker.close()


def test_unfilterable_response_is_not_released(provider: tuple[NodeCli, PolicyPoint]) -> None:
    _, point = provider
    headers = headers_for(request("welfare-law"))
    verdict = run(point.decide(headers, "provider"))
    with pytest.raises(XRoadError, match=r"cannot be cut to the permitted fields") as info:
        run(
            point.after_response(
                headers, verdict, b"<person><income>1</income></person>", "text/xml"
            )
        )
    assert info.value.code == NOT_FILTERABLE and verdict.statement is None
    assert records.subject_records(point.worker.engine, "9f2c1e7a-pairwise-ref")["provisions"] == []


def test_malformed_policy_headers_are_refused_and_logged(
    provider: tuple[NodeCli, PolicyPoint],
) -> None:
    _, point = provider
    headers = headers_for(request("welfare-law", raw_evidence="not json"))
    verdict = run(point.decide(headers, "provider"))
    assert not verdict.allow and verdict.reason == "MALFORMED_REQUEST"
    assert [r["reason"] for r in decisions(point.worker.engine)] == ["MALFORMED_REQUEST"]


def test_non_personal_requests_are_decided_fast_and_still_logged(
    provider: tuple[NodeCli, PolicyPoint],
) -> None:
    node, point = provider
    node(
        "service",
        "classify",
        "open/weather",
        "--field",
        "forecast=NON_PERSONAL",
        "--field",
        "reporter=PERSONAL",
        "--no-subject-required",
    )
    weather = {"client": "JP/GOV/CITY-B/welfare", "service": f"{MEMBER}/open/weather"}

    async def script() -> list[Verdict]:
        await point.refresh()  # the registry as of now: the fast path may use it
        out = [
            await point.decide(headers_for({**weather, "fields": ["forecast"]}), "provider")
            for _ in range(3)
        ]
        batches = point.worker.stats.batches
        assert all(v.reason == "NOT_PERSONAL_DATA" for v in out)
        assert point.worker.stats.batches == batches  # nothing awaited the database
        out.append(await point.decide(headers_for({**weather, "fields": ["reporter"]}), "provider"))
        await asyncio.sleep(0.2)  # rows written behind are committed within DEFER_SECONDS
        return out

    verdicts = run(script())
    assert verdicts[-1].reason == "MISSING_PURPOSE"  # personal field: the full path
    rows = decisions(point.worker.engine)
    assert [r["reason"] for r in rows] == ["NOT_PERSONAL_DATA"] * 3 + ["MISSING_PURPOSE"]
    assert [r["entry_sha256"] for r in rows[:3]] == [
        v.details["decision_sha256"] for v in verdicts[:3]
    ]
    # a reclassification reaches the fast path within REFRESH_SECONDS
    node(
        "service",
        "classify",
        "open/weather",
        "--field",
        "forecast=PERSONAL",
        "--field",
        "reporter=PERSONAL",
        "--no-subject-required",
    )
    time.sleep(1.1)
    again = run(point.decide(headers_for({**weather, "fields": ["forecast"]}), "provider"))
    assert again.reason == "MISSING_PURPOSE"


# ----- changes by another process --------------------------------------------------------------
def test_withdrawal_and_suspension_by_the_cli_decide_the_very_next_request(
    provider: tuple[NodeCli, PolicyPoint],
) -> None:
    node, point = provider
    child = request("child-watch-consent")
    assert run(point.decide(headers_for(child), "provider")).reason == "OK_CONSENT"
    node("consent", "withdraw", "CR-1")
    assert run(point.decide(headers_for(child), "provider")).reason == "CONSENT_NOT_VALID"
    welfare = request("welfare-law")
    assert run(point.decide(headers_for(welfare), "provider")).reason == "OK_STATUTE"
    node("agreement", "suspend", "DSA-1")
    assert run(point.decide(headers_for(welfare), "provider")).reason == "AGREEMENT_NOT_ACTIVE"


def test_quota_holds_exactly_across_two_node_processes(
    provider: tuple[NodeCli, PolicyPoint], tmp_path: Path
) -> None:
    node, point = provider
    dsa = json.loads(EXAMPLE.read_text())["agreements"][0]
    node(
        "agreement",
        "add",
        write(tmp_path / "v4.json", {**dsa, "version": 4, "quotas": {"max_per_day": 3}}),
    )
    other = point_on(node.db_url)  # a second process sharing the database

    async def burst() -> list[Verdict]:
        calls = [
            p.decide(headers_for(request("welfare-law", agreement=None)), "provider")
            for p in (point, other)
            for _ in range(6)
        ]
        return list(await asyncio.gather(*calls))

    verdicts = run(burst())
    assert sorted(v.reason for v in verdicts) == ["OK_STATUTE"] * 3 + ["QUOTA_EXCEEDED"] * 9
    with point.worker.engine.connect() as conn:
        assert conn.execute(select(t.usage.c.count)).scalars().all() == [3]
    other.worker.close()


# ----- no policy, broken policy, client side -----------------------------------------------------
def test_node_without_policy_lets_access_rights_decide(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    point = point_on(node.db_url)
    headers = headers_for(request("child-watch-consent"))
    verdict = run(point.decide(headers, "provider"))
    assert verdict.allow and verdict.reason == NO_POLICY
    assert point.health()["warnings"] and decisions(point.worker.engine) == []
    node("policy", "import", EXAMPLE)
    time.sleep(1.1)  # a non-enforcing node re-reads the switch at most once a second
    assert run(point.decide(headers, "provider")).reason == "OK_CONSENT"
    point.worker.close()


def test_store_that_does_not_load_refuses_everything_and_node_is_unhealthy(
    provider: tuple[NodeCli, PolicyPoint],
) -> None:
    _, point = provider
    with point.worker.engine.begin() as conn:
        conn.execute(
            update(t.registry)
            .where(t.registry.c.kind == "member", t.registry.c.key == "JP/GOV/CITY-B")
            .values(doc='{"id": "JP/GOV/CITY-B", "legal_type": "CITY"}')
        )
        store.begin_change(conn)
    verdict = run(point.decide(headers_for(request("welfare-law")), "provider"))
    assert not verdict.allow and verdict.reason == "SYSTEM_ERROR"
    assert point.health()["reasons"] and "members[" in point.health()["load_error"]
    assert [r["reason"] for r in decisions(point.worker.engine)] == ["SYSTEM_ERROR"]


def test_client_node_refuses_early_with_the_same_reason_codes(
    provider: tuple[NodeCli, PolicyPoint],
) -> None:
    _, point = provider  # this store also holds the provider's classification
    no_purpose = headers_for(request("child-watch-consent", purpose=None))
    verdict = run(point.decide(no_purpose, "client"))
    assert not verdict.allow and verdict.reason == "MISSING_PURPOSE"
    no_consent_id = headers_for(request("child-watch-consent", consent_id=None))
    assert run(point.decide(no_consent_id, "client")).reason == "CONSENT_MISSING"
    complete = run(point.decide(headers_for(request("child-watch-consent")), "client"))
    assert complete.allow and complete.reason == PROVIDER_DECIDES
    assert [(r["side"], r["reason"]) for r in decisions(point.worker.engine)] == [
        ("client", "MISSING_PURPOSE"),
        ("client", "CONSENT_MISSING"),
    ]


# ----- records and the report from the log -----------------------------------------------------
def test_report_and_disclosure_come_from_what_was_decided(
    provider: tuple[NodeCli, PolicyPoint],
) -> None:
    node, point = provider
    sent: list[tuple[str, dict[str, Any]]] = [
        ("welfare-law", {"subject": "W-1"}),
        ("welfare-law", {"subject": "W-2"}),
        ("welfare-law", {"subject": "W-2", "fields": ["name", "income"]}),  # refused
        ("child-watch-consent", {}),
        ("child-watch-withdrawn", {}),  # allowed, refused
    ]

    async def script() -> None:
        for name, changes in sent:
            headers = headers_for(request(name, **changes))
            verdict = await point.decide(headers, "provider")
            if verdict.allow:
                await point.after_response(headers, verdict, b"{}", "application/json")

    run(script())
    report = json.loads(
        node(
            "report",
            "transparency",
            "--fiscal-year",
            "2026",
            "--format",
            "json",
            "--suppress-below",
            "1",
        ).stdout
    )
    rows = {
        (r["basis"], r["recipient"]): (r["provisions"], r["subjects"], r["refused"])
        for r in report["rows"]
    }
    assert rows == {
        ("APPI69-1-LAW", "JP/GOV/CITY-B"): (2, 2, 1),
        ("CONSENT", "JP/COM/BIZ-X"): (1, 1, 1),
    }
    assert report["total"]["provisions"] == 3 and report["total"]["refused"] == 2
    names = {r["recipient_name"] for r in report["rows"]}
    assert names == {"B市", "株式会社X (見守りサービス)"}
    assert "B市" in node("report", "transparency", "--fiscal-year", "2026").stdout
    html_args = ("report", "transparency", "--fiscal-year", "2026", "--format", "html")
    assert "--contact" in node(*html_args, ok=False).stderr  # a published page names an office
    html = node(*html_args, "--contact", "A市 個人情報保護担当").stdout
    assert html.lstrip().startswith("<!DOCTYPE html>") and "<script" not in html
    assert "A市 個人情報保護担当" in html and "<h1>A市 " in html  # publisher: the node's member
    empty = json.loads(
        node("report", "transparency", "--fiscal-year", "2025", "--format", "json").stdout
    )
    assert empty["rows"] == [] and empty["total"]["provisions"] == 0
    disclosed = node.json("records", "--subject", "W-2")
    assert [p["data_items"] for p in disclosed["provisions"]] == [["name", "address", "birth_date"]]
    assert node.json("records", "--subject", "S2")["provisions"] == []  # refused: none


# ----- PostgreSQL ------------------------------------------------------------------------------
@pytest.mark.postgres
def test_store_decisions_and_quota_on_postgresql(pg_schema: str) -> None:
    from secnode.core.policy import load_policy

    engine = db.make_engine(pg_schema)
    db.migrate(engine)
    snapshot = load_policy(EXAMPLE)
    with engine.begin() as conn:
        store.import_policy(conn, snapshot, "pg-test", "city-a.json")
    dsa = json.loads(EXAMPLE.read_text())["agreements"][0]
    with engine.begin() as conn:
        store.add_agreement(conn, {**dsa, "version": 4, "quotas": {"max_per_day": 2}}, "pg-test")
    points = [point_on(pg_schema), point_on(pg_schema)]

    async def burst() -> list[Verdict]:
        return list(
            await asyncio.gather(
                *(
                    p.decide(headers_for(request("welfare-law", agreement=None)), "provider")
                    for p in points
                    for _ in range(4)
                )
            )
        )

    verdicts = run(burst())
    assert sorted(v.reason for v in verdicts) == ["OK_STATUTE"] * 2 + ["QUOTA_EXCEEDED"] * 6
    with engine.begin() as conn:
        store.withdraw_consent(conn, "CR-1", parse_instant(AT), "pg-test")
    child = run(points[0].decide(headers_for(request("child-watch-consent")), "provider"))
    assert child.reason == "CONSENT_NOT_VALID"
    assert len(decisions(engine)) == 9
    for p in points:
        p.worker.close()
        p.worker.engine.dispose()  # the pooled PostgreSQL connections
    engine.dispose()
