"""The node's policy store and commands, on a real node directory and database.

Commands run through click in-process (the same code as the shell's); the decision
point runs on its real writer thread against the node's SQLite database. Nothing of
ours is mocked. The decision point's message-path tests are in
``tests/test_policy_node_point.py``; the two-node exchange in ``tests/test_policy_e2e.py``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, update

from secnode.core import rest, rest_headers
from secnode.core.policy import (
    UsageCounters,
    decide,
    dump_policy,
    explain,
    load_policy,
    parse_request,
)
from secnode.core.policy.request import _REQUEST_KEYS
from secnode.core.policy.timeutil import parse_instant
from secnode.policy import tables as t
from tests.support.policy_node import (
    AT,
    EXAMPLE,
    REQUESTS,
    ROOT,
    NodeCli,
    make_node,
    write,
)


@pytest.fixture
def node(tmp_path: Path) -> NodeCli:
    return make_node(tmp_path)


@pytest.fixture
def loaded(node: NodeCli) -> NodeCli:
    node("policy", "import", EXAMPLE)
    return node


def by_id(doc: dict[str, Any]) -> dict[str, Any]:
    """A document with every section in id order (the store exports in id order)."""

    def key(item: dict[str, Any]) -> str:
        return str(item.get("id") or item.get("uid") or item.get("code") or item["consent_id"])

    return {k: sorted(v, key=key) if isinstance(v, list) else v for k, v in doc.items()}


def example() -> dict[str, Any]:
    return dict(json.loads(EXAMPLE.read_text()))


# ----- import / export / show ------------------------------------------------------------------
def test_fresh_node_holds_no_policy_and_does_not_enforce(node: NodeCli) -> None:
    shown = node.json("policy", "show")
    assert shown["enforcing"] is False and shown["generation"] == 0
    assert shown["retention_years"] == 3


def test_import_then_export_gives_the_same_policy(loaded: NodeCli, tmp_path: Path) -> None:
    shown = loaded.json("policy", "show")
    assert shown["enforcing"] is True and shown["generation"] == 1
    assert shown["policy_version"] == "2026-06-01.1"
    assert shown["counts"]["agreement_versions"] == 13 and shown["counts"]["consents"] == 8
    out = tmp_path / "exported.json"
    loaded("policy", "export", out)
    assert by_id(dump_policy(load_policy(out))) == by_id(dump_policy(load_policy(EXAMPLE)))
    again = loaded("policy", "import", out).stdout
    assert "0 added, 0 updated, 63 unchanged" in again
    history = loaded.json("policy", "history")
    assert [h["action"] for h in history[:2]] == ["import", "import"]
    assert {h["actor"] for h in history} == {"officer-test"}


def _spatial(doc: dict[str, Any]) -> None:
    doc["agreements"][0]["permission"][0]["constraint"].append(
        {"leftOperand": "spatial", "operator": "eq", "rightOperand": "x"}
    )


def _status(doc: dict[str, Any]) -> None:
    doc["consents"][0]["status"] = "given"


def _legitimate_interest(doc: dict[str, Any]) -> None:
    doc["agreements"][1]["permission"][0]["constraint"][1]["rightOperand"] = ["LEGITIMATE_INTEREST"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            _spatial,
            "agreements[0].permission[0].constraint[3].leftOperand: unknown constraint 'spatial'",
        ),
        (_status, "consents[0].status: unknown consent status (DPV) 'given'"),
        (_legitimate_interest, "is not a basis under APPI"),
    ],
)
def test_import_refuses_unknown_vocabulary_and_stores_nothing(
    node: NodeCli, tmp_path: Path, mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    doc = example()
    mutate(doc)
    bad = write(tmp_path / "bad.json", doc)
    result = node("policy", "import", bad, ok=False)
    assert expected in result.stderr and "bad.json" in result.stderr
    assert node.json("policy", "show")["generation"] == 0  # all or nothing


def test_changed_agreement_without_new_version_is_refused(loaded: NodeCli, tmp_path: Path) -> None:
    doc = example()
    doc["agreements"][0]["permission"][0]["constraint"][2]["rightOperand"] = ["name"]
    result = loaded("policy", "import", write(tmp_path / "edited.json", doc), ok=False)
    assert "a changed agreement needs a new version" in result.stderr
    assert loaded.json("policy", "show")["generation"] == 1


# ----- agreements --------------------------------------------------------------------------------
def test_agreement_versions_and_states_decide_the_next_request(
    loaded: NodeCli, tmp_path: Path
) -> None:
    welfare = json.loads((REQUESTS / "welfare-law.json").read_text())
    assert loaded.explain(welfare, tmp_path)["reason"] == "OK_STATUTE"
    v4 = copy.deepcopy(example()["agreements"][0])
    v4["version"] = 4
    v4["permission"][0]["constraint"][2]["rightOperand"] = ["name", "address"]
    loaded("agreement", "add", write(tmp_path / "dsa1-v4.json", v4))
    loaded("agreement", "add", write(tmp_path / "dsa1-v4.json", v4), ok=False)
    listed = {a["uid"]: a for a in loaded.json("agreement", "list")}
    assert listed["DSA-1"]["version"] == 4
    assert (
        len([a for a in loaded.json("agreement", "list", "--all-versions") if a["uid"] == "DSA-1"])
        == 2
    )
    assert loaded.json("agreement", "show", "DSA-1", "--version", "3")["version"] == 3
    # the request pinned v3: refused now; unpinned and narrower: allowed under v4
    assert loaded.explain(welfare, tmp_path)["reason"] == "AGREEMENT_VERSION_MISMATCH"
    narrow = {**welfare, "agreement": "DSA-1;v=4", "fields": ["name", "address"]}
    assert loaded.explain(narrow, tmp_path)["reason"] == "OK_STATUTE"
    assert (
        loaded.explain({**narrow, "fields": ["name", "birth_date"]}, tmp_path)["reason"]
        == "FIELD_NOT_PERMITTED"
    )
    loaded("agreement", "suspend", "DSA-1")
    assert loaded.explain(narrow, tmp_path)["reason"] == "AGREEMENT_NOT_ACTIVE"
    loaded("agreement", "resume", "DSA-1")
    assert loaded.explain(narrow, tmp_path)["reason"] == "OK_STATUTE"
    loaded("agreement", "terminate", "DSA-1")
    assert loaded.explain(narrow, tmp_path)["reason"] == "AGREEMENT_NOT_ACTIVE"
    assert "terminated" in loaded("agreement", "resume", "DSA-1", ok=False).stderr
    changes = [(h["action"], h["key"]) for h in loaded.json("policy", "history")]
    assert changes[:4] == [("state", "DSA-1@4")] * 3 + [("add", "DSA-1@4")]


def test_agreement_file_errors_name_the_file_and_path(loaded: NodeCli, tmp_path: Path) -> None:
    bad = copy.deepcopy(example()["agreements"][1])
    bad["uid"] = "DSA-NEW"
    bad["permission"][0]["constraint"][0]["rightOperand"] = ["NOT-A-PURPOSE"]
    result = loaded("agreement", "add", write(tmp_path / "a.json", bad), ok=False)
    assert "a.json: permission[0].constraint[0].rightOperand[0]" in result.stderr


# ----- consents and stop requests ----------------------------------------------------------------
def consent(cid: str, subject: str) -> dict[str, Any]:
    return {
        "consent_id": cid,
        "subject_ref": subject,
        "controller": "JP/GOV/CITY-A",
        "recipients": ["JP/COM/BIZ-X/app"],
        "services": ["JP/GOV/CITY-A/child/location"],
        "purposes": ["CHILD-WATCH"],
        "status": "ConsentGiven",
        "given_at": "2026-05-01T09:00:00+09:00",
        "expires_at": "2027-05-01T00:00:00+09:00",
    }


def child_watch(cid: str, subject: str) -> dict[str, Any]:
    return {
        "client": "JP/COM/BIZ-X/app",
        "service": "JP/GOV/CITY-A/child/location",
        "purpose": "CHILD-WATCH",
        "legal_basis": "CONSENT",
        "consent_id": cid,
        "subject": subject,
        "fields": ["location_history"],
        "issue": "CW-1",
    }


def test_consent_recorded_then_withdrawn_with_events(loaded: NodeCli, tmp_path: Path) -> None:
    loaded("consent", "add", write(tmp_path / "c.json", consent("CR-T1", "S-T1")))
    assert loaded.explain(child_watch("CR-T1", "S-T1"), tmp_path)["reason"] == "OK_CONSENT"
    assert "exists" in loaded("consent", "add", tmp_path / "c.json", ok=False).stderr
    listed = loaded.json("consent", "list", "--subject", "S-T1")
    assert [(c["consent_id"], c["status"]) for c in listed] == [("CR-T1", "ConsentGiven")]
    assert listed[0]["recipients"] == ["JP/COM/BIZ-X/app"]  # typed lists, not joined text
    assert listed[0]["purposes"] == ["CHILD-WATCH"]
    table = loaded("consent", "list", "--subject", "S-T1").stdout
    assert "JP/COM/BIZ-X/app" in table and "['" not in table
    loaded("consent", "withdraw", "CR-T1", "--at", "2026-05-20T12:00:00+09:00", "--by", "窓口")
    decision = loaded.explain(child_watch("CR-T1", "S-T1"), tmp_path)
    assert (decision["decision"], decision["reason"]) == ("DENY", "CONSENT_NOT_VALID")
    shown = loaded.json("consent", "show", "CR-T1")
    assert shown["consent"]["status"] == "ConsentWithdrawn"
    assert shown["consent"]["withdrawn_at"] == "2026-05-20T12:00:00+09:00"
    assert [(e["event"], e["actor"]) for e in shown["events"]] == [
        ("GIVEN", "officer-test"),
        ("WITHDRAWN", "窓口"),
    ]
    assert "already withdrawn" in loaded("consent", "withdraw", "CR-T1", ok=False).stderr


def test_consent_with_unknown_status_is_refused_with_its_path(
    loaded: NodeCli, tmp_path: Path
) -> None:
    bad = {**consent("CR-T2", "S-T2"), "status": "Given"}
    result = loaded("consent", "add", write(tmp_path / "c2.json", bad), ok=False)
    assert "c2.json: status: unknown consent status (DPV) 'Given'" in result.stderr
    assert loaded.json("consent", "list", "--subject", "S-T2") == []


def test_stop_request_refuses_consent_based_provision(loaded: NodeCli, tmp_path: Path) -> None:
    assert loaded.explain(child_watch("CR-1", "S1"), tmp_path)["reason"] == "OK_CONSENT"
    stop = {
        "id": "STOP-T",
        "subject_ref": "S1",
        "provider": "JP/GOV/CITY-A",
        "scope": "ALL",
        "since": "2026-05-01T00:00:00+09:00",
    }
    loaded("stop-request", "add", write(tmp_path / "stop.json", stop))
    assert loaded.explain(child_watch("CR-1", "S1"), tmp_path)["reason"] == "STOP_REQUESTED"
    assert [s["id"] for s in loaded.json("stop-request", "list", "--subject", "S1")] == ["STOP-T"]


# ----- classification ----------------------------------------------------------------------------
def test_classification_decides_personal_or_not(loaded: NodeCli, tmp_path: Path) -> None:
    request = {"client": "JP/GOV/CITY-B/welfare", "service": "JP/GOV/CITY-A/open/weather"}
    assert loaded.explain(request, tmp_path)["reason"] == "SERVICE_UNKNOWN"  # deny by default
    loaded("service", "classify", "open/weather", "--non-personal")
    assert loaded.explain(request, tmp_path)["reason"] == "NOT_PERSONAL_DATA"
    loaded(
        "service",
        "classify",
        "open/weather",
        "--field",
        "forecast=NON_PERSONAL",
        "--field",
        "reporter=PERSONAL",
        "--no-subject-required",
    )
    decision = loaded.explain({**request, "fields": ["reporter"]}, tmp_path)
    assert decision["reason"] == "MISSING_PURPOSE"
    assert (
        loaded.explain({**request, "fields": ["forecast"]}, tmp_path)["reason"]
        == "NOT_PERSONAL_DATA"
    )


def test_classification_that_breaks_an_agreement_is_refused(loaded: NodeCli) -> None:
    result = loaded(
        "service",
        "classify",
        "resident/basic",
        "--field",
        "name=PERSONAL",
        "--field",
        "address=PERSONAL",
        ok=False,
    )
    assert "birth_date" in result.stderr and "agreements[" in result.stderr
    assert (
        "--field"
        in loaded("service", "classify", "resident/basic", "--field", "name", ok=False).stderr
    )


# ----- explain is the node's decision --------------------------------------------------------
@pytest.mark.parametrize("request_file", sorted(REQUESTS.glob("*.json")), ids=lambda p: p.stem)
def test_explain_is_the_core_decision_on_the_stored_policy(
    loaded: NodeCli, request_file: Path
) -> None:
    got = loaded.json("policy", "explain", request_file, "--at", AT)
    snapshot = load_policy(EXAMPLE)
    request = parse_request(json.loads(request_file.read_text()))
    want = explain(decide(request, snapshot, parse_instant(AT), UsageCounters()), snapshot)
    for key in (
        "decision",
        "reason",
        "article",
        "message",
        "permitted_fields",
        "obligations",
        "checks_passed",
        "agreement",
        "consent_id",
        "record_type",
    ):
        assert got[key] == want[key], key


def test_explain_refuses_a_malformed_request_file(loaded: NodeCli, tmp_path: Path) -> None:
    bad = write(
        tmp_path / "r.json",
        {
            "client": "JP/GOV/CITY-B/welfare",
            "service": "JP/GOV/CITY-A/resident/basic",
            "evidence": {"colour": "red"},
        },
    )
    assert "unknown evidence key 'colour'" in loaded("policy", "explain", bad, ok=False).stderr


# ----- signed policy headers reach the engine ---------------------------------------------------
def test_rest_policy_extension_headers_are_signed_and_reissued() -> None:
    sent = [
        ("X-Road-Client", "JP/COM/BIZ-X/app"),
        ("X-Road-Purpose", "CHILD-WATCH"),
        ("X-Road-Legal-Basis", "CONSENT"),
        ("X-Road-Consent-Id", "CR-1"),
        ("X-Road-Data-Subject", "S1"),
        ("X-Road-Data-Items", "location_history"),
        ("X-Road-Agreement", "DSA-2;v=1"),
        ("X-Road-Evidence", '{"ref":"a"}'),
        ("X-Road-Recipient-Country", "JP"),
        ("X-Road-Recurring", "false"),
        ("X-Road-Data-From", "2026-05-01T00:00:00+09:00"),
    ]
    parsed = rest.parse_rest_request("GET", "/r1/JP/GOV/CITY-A/child/location", None, sent)
    headers = parsed.message_headers()
    assert (
        headers.consent_id,
        headers.data_items,
        headers.agreement,
        headers.evidence,
        headers.recipient_country,
        headers.recurring,
        headers.data_from,
    ) == (
        "CR-1",
        "location_history",
        "DSA-2;v=1",
        '{"ref":"a"}',
        "JP",
        "false",
        "2026-05-01T00:00:00+09:00",
    )
    assert parsed.passthrough_headers() == []  # never forwarded unsigned
    reissued = dict(rest_headers.provider_headers(headers, [("X-Road-Consent-Id", "forged")], "r"))
    assert reissued["X-Road-Consent-Id"] == "CR-1"


# ----- retention and purge ----------------------------------------------------------------------
def test_records_are_kept_at_least_three_years_and_purged_after(loaded: NodeCli) -> None:
    from secnode.policy import records

    at = parse_instant(AT)
    assert records.retain_until(at, 1).startswith("2029-06-01")
    assert records.retain_until(at, 5).startswith("2031-06-01")
    engine = create_engine(loaded.db_url)
    with engine.begin() as conn:
        for when, years in (("2020-01-01T00:00:00+09:00", 3), (AT, 3)):
            entry = {"side": "provider", "allow": False, "reason": "SYSTEM_ERROR"}
            records.insert_decision(conn, entry, "0" * 64, parse_instant(when), years)
    assert "would delete: pol_decisions 1" in loaded("policy", "purge", "--dry-run").stdout
    assert "deleted: pol_decisions 1" in loaded("policy", "purge").stdout
    with engine.connect() as conn:
        left = conn.execute(select(t.decisions.c.at)).scalars().all()
    assert [a[:4] for a in left] == ["2026"]


def test_a_corrupted_store_is_reported_not_used(loaded: NodeCli) -> None:
    engine = create_engine(loaded.db_url)
    with engine.begin() as conn:
        conn.execute(
            update(t.registry)
            .where(t.registry.c.kind == "purpose", t.registry.c.key == "CHILD-WATCH")
            .values(doc='{"code": "CHILD-WATCH"}')
        )
    shown = loaded.json("policy", "show")
    assert shown["registry_digest"] is None and "label_ja" in shown["load_error"]
    decision = loaded.json("policy", "explain", REQUESTS / "child-watch-consent.json", "--at", AT)
    assert (decision["decision"], decision["reason"]) == ("DENY", "SYSTEM_ERROR")


def test_the_documented_explain_request_is_decided_as_documented(
    loaded: NodeCli, tmp_path: Path
) -> None:
    """docs/policy.md §10.1: its example is the examples file, and explain allows it with
    the keys the text names."""
    text = (ROOT / "docs" / "policy.md").read_text()
    section = text[text.index("### 10.1 The request `policy explain` reads") :]
    section = section[: section.index("\n## ")]
    documented = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    assert documented == json.loads((REQUESTS / "welfare-law.json").read_text())
    decision = loaded.explain(documented, tmp_path)
    assert (decision["decision"], decision["reason"]) == ("ALLOW", "OK_STATUTE"), decision
    assert {
        "decision",
        "reason",
        "article",
        "permitted_fields",
        "step",
        "checks_passed",
        "obligations",
        "policy_digest",
        "request",
    } <= set(decision)
    keys = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    assert keys == {"client", "service", *_REQUEST_KEYS}  # every key the parser takes
