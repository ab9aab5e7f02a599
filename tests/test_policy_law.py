"""Issue 17 items 1-4, table-driven: the law as the engine cites it, recurrence judged from the
node's own history, authoring mistakes refused at import, the optional agreement pin.

Every decision case of ``tests/test_policy_cases.py`` is re-run here to check what its
article field says: a public-body provider never gets a business-chapter (Ch. 4) article,
and a message never names an article its article field does not.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from secnode.core.policy import (
    PolicySnapshot,
    Reason,
    UsageCounters,
    decide,
    load_policy,
    parse_request,
)
from secnode.core.policy.vocabulary import LegalType
from tests.support.policy_cases import (
    AT,
    CAMERA,
    EXAMPLES,
    OWN_CASES,
    RESEARCH_CASES,
    Case,
)

CH4 = range(16, 47)
"""APPI Chapter 4 (businesses): Arts. 16-46 (the business rules; Art. 17 to 46 in practice)."""


@pytest.fixture(scope="module")
def policy() -> PolicySnapshot:
    return load_policy(EXAMPLES / "city-a.json")


def appi_articles(text: str | None) -> set[int]:
    """Article numbers cited as APPI articles (My Number Act and ordinances excluded)."""
    found: set[int] = set()
    for part in re.split(r"[;+]", text or ""):
        if "My Number" in part or "条例" in part:
            continue
        for m in re.finditer(r"Arts?\.\s*([0-9][0-9(),\s–\-a-z]*)", part):
            found |= {int(n) for n in re.findall(r"(?<![(\d])(\d+)", m.group(1))}
    return found


def provider_type(policy: PolicySnapshot, case: Case) -> LegalType:
    return policy.members[case.request().service.member].legal_type


ALL_CASES = RESEARCH_CASES + OWN_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_article_fields_per_provider_type(case: Case, policy: PolicySnapshot) -> None:
    snap = case.edit(policy) if case.edit else policy
    d = decide(case.request(), snap, case.at, case.usage)
    cited = appi_articles(d.article)
    ptype = provider_type(snap, case)
    if ptype in (LegalType.PUBLIC_BODY, LegalType.INVESTIGATIVE_AGENCY):
        assert not cited & set(CH4), (d.reason, d.article)
    in_message = appi_articles(d.message)
    assert in_message <= cited, (d.reason, d.message, d.article)


ARTICLES = [
    # (case name, provider type, expected article)
    ("r01 welfare query based on law", "PUBLIC_BODY", "APPI Art. 69(1)"),
    ("r08 consent CR-1", "PUBLIC_BODY", "APPI Art. 69(2)(i)"),
    ("r16 special-care data by opt-out", "PUBLIC_BODY", "APPI Art. 69 (no opt-out route "),
]


def test_article_table(policy: PolicySnapshot) -> None:
    by_name = {c.name: c for c in ALL_CASES}
    for name, ptype, article in ARTICLES:
        case = by_name[name]
        snap = case.edit(policy) if case.edit else policy
        assert provider_type(snap, case).value == ptype
        d = decide(case.request(), snap, case.at, case.usage)
        assert (d.article or "").startswith(article), (name, d.article)


def test_ordinance_decision_records_the_appi_basis_and_the_condition(
    policy: PolicySnapshot,
) -> None:
    d = decide(parse_request(CAMERA), policy, AT)
    assert d.allow and d.reason is Reason.OK_EXCEPTION
    assert d.basis == "ORD-CRIMINAL-INVESTIGATION"
    assert d.appi_basis == "APPI69-1-LAW"
    assert d.condition == "A市見守りカメラ条例 (捜査機関からの要請)"
    assert d.article == "APPI Art. 69(1) + A市見守りカメラ条例 (捜査機関からの要請)"
    from secnode.core.policy import ObligationKind, decision_log_entry

    record = d.obligation(ObligationKind.PROVISION_RECORD)
    assert record is not None
    assert record.params["appi_basis"] == "APPI69-1-LAW"
    assert record.params["condition"] == d.condition
    assert record.params["article"].startswith("kept for audit (public body")
    entry = decision_log_entry(d)
    assert (entry["appi_basis"], entry["condition"]) == ("APPI69-1-LAW", d.condition)


def test_consent_of_a_city_rests_on_art_69_2_i(policy: PolicySnapshot) -> None:
    case = {c.name: c for c in ALL_CASES}["r08 consent CR-1"]
    d = decide(case.request(), policy, AT, case.usage)
    assert d.allow and (d.basis, d.appi_basis) == ("CONSENT", "APPI69-2-1")


# -- item 2: recurrence from the node's own history ------------------------------------------

TODAY = AT.date()
FIRE_EMERGENCY = {  # ORD-EMERGENCY rests on Art. 69(2)(iv): ad hoc only
    **CAMERA,
    "client": "JP/GOV/FIRE-A/dispatch",
    "legal_basis": "ORD-EMERGENCY",
    "purpose": "EMERGENCY-RESPONSE",
    "evidence": {"ref": "119-2026-0601-7"},
}
FIRE_69_2_3 = {
    "client": "JP/GOV/FIRE-A/dispatch",
    "service": "JP/GOV/CITY-A/resident/basic",
    "purpose": "EMERGENCY-RESPONSE",
    "legal_basis": "APPI69-2-3",
    "agreement": "DSA-12",
    "subject": "S400",
    "fields": ["name", "address"],
    "issue": "FIRE-1",
}
CHILD_CONSENT = {
    "client": "JP/COM/BIZ-X/app",
    "service": "JP/GOV/CITY-A/child/location",
    "purpose": "CHILD-WATCH",
    "legal_basis": "CONSENT",
    "consent_id": "CR-1",
    "subject": "S1",
    "issue": "CW-2026-1",
}


def days_ago(*offsets: int) -> frozenset[date]:
    return frozenset(TODAY - timedelta(days=n) for n in offsets)


def active_dsa12(p: PolicySnapshot) -> PolicySnapshot:
    from secnode.core.policy import AgreementState

    dsa = replace(p.agreements["DSA-12"], state=AgreementState.ACTIVE)
    return p.with_changes(agreements={**p.agreements, "DSA-12": dsa})


def no_registered_child_watch(p: PolicySnapshot) -> PolicySnapshot:
    sid = next(s for s in p.services if str(s).endswith("child/location"))
    svc = replace(p.services[sid], registered_purposes=())
    return p.with_changes(services={**p.services, sid: svc})


def one_day_limit(p: PolicySnapshot) -> PolicySnapshot:
    return p.with_changes(settings=replace(p.settings, recurrence_max_days=1))


RECURRENCE = [
    # (name, request, history (days ago) or None, edit, expected reason)
    ("69(2)(iii) first time", FIRE_69_2_3, (), active_dsa12, Reason.OK_PUBLIC_BODY),
    ("69(2)(iii) 3rd separate day", FIRE_69_2_3, (1, 2), active_dsa12, Reason.OK_PUBLIC_BODY),
    ("69(2)(iii) 4th separate day", FIRE_69_2_3, (1, 2, 3), active_dsa12, Reason.AD_HOC_ONLY),
    ("69(2)(iii) many today only", FIRE_69_2_3, (0,), active_dsa12, Reason.OK_PUBLIC_BODY),
    ("69(2)(iii) old days outside", FIRE_69_2_3, (30, 31, 40), active_dsa12, Reason.OK_PUBLIC_BODY),
    ("69(2)(iii) window edge", FIRE_69_2_3, (1, 2, 29), active_dsa12, Reason.AD_HOC_ONLY),
    (
        "69(2)(iii) no history: fail closed",
        FIRE_69_2_3,
        None,
        active_dsa12,
        Reason.USAGE_UNAVAILABLE,
    ),
    (
        "69(2)(iii) limit 1, yesterday",
        FIRE_69_2_3,
        (1,),
        lambda p: one_day_limit(active_dsa12(p)),
        Reason.AD_HOC_ONLY,
    ),
    ("ordinance on 69(2)(iv) 5 days", FIRE_EMERGENCY, (1, 2, 3, 4), None, Reason.AD_HOC_ONLY),
    ("ordinance on 69(2)(iv) 2 days", FIRE_EMERGENCY, (5,), None, Reason.OK_EXCEPTION),
    ("ordinance on 69(1) every day", CAMERA, tuple(range(30)), None, Reason.OK_EXCEPTION),
    ("ordinance on 69(1) no history", CAMERA, None, None, Reason.OK_EXCEPTION),
    ("city consent within purpose", CHILD_CONSENT, tuple(range(20)), None, Reason.OK_CONSENT),
    (
        "city consent outside purpose, 4 days",
        CHILD_CONSENT,
        (1, 2, 3),
        no_registered_child_watch,
        Reason.AD_HOC_ONLY,
    ),
    (
        "city consent outside purpose, 1 day",
        CHILD_CONSENT,
        (),
        no_registered_child_watch,
        Reason.OK_CONSENT,
    ),
]


@pytest.mark.parametrize(
    ("name", "request_data", "history", "edit", "expected"),
    RECURRENCE,
    ids=[r[0] for r in RECURRENCE],
)
def test_recurrence_from_history(
    name: str,
    request_data: dict[str, Any],
    history: tuple[int, ...] | None,
    edit: Any,
    expected: Reason,
    policy: PolicySnapshot,
) -> None:
    snap = edit(policy) if edit else policy
    usage = UsageCounters(provision_days=None if history is None else days_ago(*history))
    for declared in (None, False):  # what the client says does not change the outcome
        data = dict(request_data)
        if declared is not None:
            data["recurring"] = declared
        d = decide(parse_request(data), snap, AT, usage)
        assert d.reason is expected, (name, d.message)
        if expected is Reason.AD_HOC_ONLY:
            assert (
                "separate days" in d.message
                and d.article == "APPI Arts. 61, 69(2) (PPC: ad hoc only)"
            )


def test_node_judges_recurrence_from_its_own_decision_log(tmp_path: Path) -> None:
    """A real decision point on a real SQLite store: the fire department's emergency pulls
    (ORD-EMERGENCY on Art. 69(2)(iv)) without any X-Road-Recurring header are allowed on
    three separate days and refused on the fourth; the refusal is in the decision log."""
    from tests.support.policy_node import EXAMPLE, make_node

    node = make_node(tmp_path)
    node("policy", "import", EXAMPLE)
    _recurrence_on(node.db_url)


@pytest.mark.postgres
def test_node_judges_recurrence_on_postgresql(pg_schema: str) -> None:
    from secnode.core.policy import load_policy
    from secnode.policy import store
    from secnode.store import db
    from tests.support.policy_node import EXAMPLE

    engine = db.make_engine(pg_schema)
    db.migrate(engine)
    with engine.begin() as conn:
        store.import_policy(conn, load_policy(EXAMPLE), "pg-test", "city-a.json")
    engine.dispose()
    _recurrence_on(pg_schema)


def _recurrence_on(url: str) -> None:
    from secnode.core.policy.timeutil import format_instant
    from secnode.policy.point import PolicyPoint
    from secnode.store import db
    from tests.support.policy_point import decisions, headers_for, run

    now = [AT]
    point = PolicyPoint(
        db.make_engine(url), "JP/GOV/CITY-A/ss1", "JP/GOV/CITY-A", 3, clock=lambda: now[0]
    )
    try:
        outcomes = []
        for day in (0, 0, 1, 5, 6):
            now[0] = AT + timedelta(days=day)
            data = {**FIRE_EMERGENCY, "data_from": format_instant(now[0] - timedelta(days=1))}
            headers = replace(headers_for(data), data_from=data["data_from"])
            verdict = run(point.decide(headers, "provider"))
            outcomes.append((day, verdict.reason))
        assert outcomes == [
            (0, "OK_EXCEPTION"),
            (0, "OK_EXCEPTION"),
            (1, "OK_EXCEPTION"),
            (5, "OK_EXCEPTION"),
            (6, "AD_HOC_ONLY"),
        ]
        rows = decisions(point.worker.engine)
        assert [(r["allow"], r["reason"]) for r in rows][-1] == (False, "AD_HOC_ONLY")
        assert json.loads(rows[-1]["entry"])["basis"] == "ORD-EMERGENCY"
    finally:
        point.worker.close()
        point.worker.engine.dispose()  # the pooled PostgreSQL connections


# -- item 3: authoring mistakes refused at import, with the JSON path -----------------------

Doc = dict[str, Any]


def _dsa(doc: Doc, uid: str) -> Doc:
    found: Doc = next(a for a in doc["agreements"] if a["uid"] == uid)
    return found


def _bases(doc: Doc, uid: str) -> list[str]:
    out: list[str] = _dsa(doc, uid)["permission"][0]["constraint"][1]["rightOperand"]
    return out


def _add_item_constraint(doc: Doc, uid: str, items: list[str]) -> None:
    _dsa(doc, uid)["permission"][0]["constraint"].append(
        {"leftOperand": "dataItem", "operator": "isPartOf", "rightOperand": items}
    )


def _set(doc: Doc, keys: tuple[Any, ...], value: Any) -> None:
    target: Any = doc
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value


def _consent_on_mynumber(doc: Doc) -> None:
    _bases(doc, "DSA-6").append("CONSENT")
    _add_item_constraint(doc, "DSA-6", ["my_number"])


def _recurring_consent_outside_purpose(doc: Doc) -> None:
    _dsa(doc, "DSA-2")["recurring"] = True
    _dsa(doc, "DSA-2")["permission"][0]["constraint"][0]["rightOperand"].append("MARKETING")


REFUSALS: list[tuple[str, Any, str, str]] = [
    # (name, edit of city-a.json, JSON path, words of the message)
    (
        "opt-out basis for a public-body provider",
        lambda d: _bases(d, "DSA-3").append("APPI27-2"),
        "agreements[2].permission[0].constraint[1].rightOperand[1]",
        "public bodies have no opt-out route",
    ),
    (
        "business basis for a public-body provider",
        lambda d: _bases(d, "DSA-1").append("APPI27-1-1"),
        "agreements[0].permission[0].constraint[1].rightOperand[2]",
        "provides under APPI Art. 69",
    ),
    (
        "Art. 69 basis for a business provider",
        lambda d: _bases(d, "DSA-8").append("APPI69-1-LAW"),
        "agreements[8].permission[0].constraint[1].rightOperand[1]",
        "exist only for public bodies",
    ),
    (
        "consent on a My-Number-only permission",
        _consent_on_mynumber,
        "agreements[6].permission[0].constraint[1].rightOperand[1]",
        "only My Number data",
    ),
    (
        "consent on a pseudonymised-only service",
        lambda d: _bases(d, "DSA-7").append("CONSENT"),
        "agreements[7].permission[0].constraint[1].rightOperand[1]",
        "only pseudonymized data",
    ),
    (
        "Art. 69(2) basis on a recurring agreement",
        lambda d: _dsa(d, "DSA-12").update(recurring=True),
        "agreements[12].permission[0].constraint[1].rightOperand[0]",
        "ad hoc only",
    ),
    (
        "within-purpose basis for a purpose the service does not register",
        lambda d: _dsa(d, "DSA-1")["permission"][0]["constraint"][0]["rightOperand"].append(
            "STATISTICS"
        ),
        "agreements[0].permission[0].constraint[0].rightOperand[1]",
        "not registered for JP/GOV/CITY-A/resident/basic",
    ),
    (
        "recurring consent by a city outside the registered purpose",
        _recurring_consent_outside_purpose,
        "agreements[1].permission[0].constraint[0].rightOperand[1]",
        "not registered for JP/GOV/CITY-A/child/location",
    ),
    (
        "ordinance resting on a business basis",
        lambda d: d["ordinance_bases"][0].update(appi_basis="APPI27-1-1"),
        "ordinance_bases[0].appi_basis",
        "rests on an APPI Art. 69 basis",
    ),
    (
        "recurrence window in months",
        lambda d: d["settings"].update(recurrence={"max_days": 3, "window": "P1M"}),
        "settings.recurrence.window",
        "whole number of days",
    ),
    (
        "agreement pin setting not a flag",
        lambda d: d["settings"].update(require_agreement_pin="yes"),
        "settings.require_agreement_pin",
        "true or false",
    ),
]


def city_a() -> Doc:
    doc: Doc = json.loads((EXAMPLES / "city-a.json").read_text())
    return doc


@pytest.mark.parametrize(("name", "edit", "path", "words"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_import_refuses_terms_that_can_never_authorise(
    name: str, edit: Any, path: str, words: str
) -> None:
    from secnode.core.policy import PolicyFormatError, parse_policy

    doc = city_a()
    edit(doc)
    with pytest.raises(PolicyFormatError, match=re.escape(words)) as caught:
        parse_policy(doc)
    assert caught.value.path == path, str(caught.value)
    assert words in str(caught.value), str(caught.value)


@pytest.fixture(scope="module")
def city_node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.support.policy_node import make_node

    return make_node(tmp_path_factory.mktemp("law-node"))


def test_policy_import_check_and_refusal_on_a_node(city_node: Any, tmp_path: Path) -> None:
    """``policy import --check`` validates against the store and stores nothing; a refused
    import names the file and the JSON path and stores nothing either."""
    from tests.support.policy_node import write

    node = city_node
    good = write(tmp_path / "city-a.json", city_a())
    checked = node("policy", "import", good, "--check").stdout
    assert checked.startswith("checked (nothing stored)")
    assert node.json("policy", "show")["generation"] == 0
    bad_doc = city_a()
    _bases(bad_doc, "DSA-3").append("APPI27-2")
    bad = write(tmp_path / "bad.json", bad_doc)
    for extra in ((), ("--check",)):
        refused = node("policy", "import", bad, *extra, ok=False)
        assert (
            "bad.json: agreements[2].permission[0].constraint[1].rightOperand[1]: APPI27-2 "
            "can never apply to JP/GOV/CITY-A" in refused.stderr
        ), refused.stderr
    assert node.json("policy", "show")["generation"] == 0
    node("policy", "import", good)
    assert node.json("policy", "show")["generation"] > 0


@pytest.mark.parametrize(
    ("name", "edit", "path", "words"), REFUSALS[:8], ids=[r[0] for r in REFUSALS[:8]]
)
def test_agreement_add_refuses_with_the_path_inside_the_file(
    city_node: Any, tmp_path: Path, name: str, edit: Any, path: str, words: str
) -> None:
    from tests.support.policy_node import write

    node = city_node
    if node.json("policy", "show")["generation"] == 0:
        node("policy", "import", write(tmp_path / "city-a.json", city_a()))
    doc = city_a()
    edit(doc)
    index = int(path.split("]")[0].split("[")[1])
    agreement = {**doc["agreements"][index], "version": 99}
    file = write(tmp_path / "dsa.json", agreement)
    inner = path.split(".", 1)[1]
    for extra in (("--check",), ()):
        refused = node("agreement", "add", file, *extra, ok=False)
        assert f"dsa.json: {inner}: " in refused.stderr and words in refused.stderr, refused.stderr
    fine = write(tmp_path / "fine.json", {**city_a()["agreements"][index], "version": 99})
    assert node("agreement", "add", fine, "--check").stdout.startswith("checked (nothing stored)")
    shown = node.json("agreement", "show", agreement["uid"])
    assert shown["version"] != 99


# -- item 4: optional mandatory agreement pin ------------------------------------------------

WELFARE_REQ = {
    "client": "JP/GOV/CITY-B/welfare",
    "service": "JP/GOV/CITY-A/resident/basic",
    "purpose": "WELFARE-ELIGIBILITY",
    "legal_basis": "APPI69-1-LAW",
    "subject": "S100",
    "fields": ["name", "address", "birth_date"],
    "issue": "WEL-2026-00123",
}
OPEN_DATA = {"client": "JP/COM/BIZ-X/app", "service": "JP/GOV/CITY-A/open/facilities"}
PIN = [
    # (name, request, require_agreement_pin, expected)
    ("unpinned, setting off", WELFARE_REQ, False, Reason.OK_STATUTE),
    ("unpinned, setting on", WELFARE_REQ, True, Reason.AGREEMENT_PIN_REQUIRED),
    ("pinned uid, setting on", {**WELFARE_REQ, "agreement": "DSA-1"}, True, Reason.OK_STATUTE),
    ("pinned v3, setting on", {**WELFARE_REQ, "agreement": "DSA-1;v=3"}, True, Reason.OK_STATUTE),
    (
        "pinned old version, setting on",
        {**WELFARE_REQ, "agreement": "DSA-1;v=2"},
        True,
        Reason.AGREEMENT_VERSION_MISMATCH,
    ),
    ("consent unpinned, setting on", CHILD_CONSENT, True, Reason.AGREEMENT_PIN_REQUIRED),
    ("exception basis needs no pin", CAMERA, True, Reason.OK_EXCEPTION),
    ("non-personal data needs no pin", OPEN_DATA, True, Reason.NOT_PERSONAL_DATA),
]


@pytest.mark.parametrize(("name", "data", "pin", "expected"), PIN, ids=[p[0] for p in PIN])
def test_agreement_pin(
    name: str, data: dict[str, Any], pin: bool, expected: Reason, policy: PolicySnapshot
) -> None:
    snap = policy.with_changes(settings=replace(policy.settings, require_agreement_pin=pin))
    d = decide(parse_request(data), snap, AT, UsageCounters(provision_days=frozenset()))
    assert d.reason is expected, d.message
    if expected is Reason.AGREEMENT_PIN_REQUIRED:
        assert "X-Road-Agreement" in d.message and d.article == "APPI Arts. 69–70"


def test_pin_setting_round_trips_through_the_file() -> None:
    from secnode.core.policy import dump_policy, parse_policy

    doc = city_a()
    doc["settings"].update(require_agreement_pin=True, recurrence={"max_days": 5, "window": "P60D"})
    snap = parse_policy(doc)
    s = snap.settings
    assert (s.require_agreement_pin, s.recurrence_max_days, str(s.recurrence_window)) == (
        True,
        5,
        "P60D",
    )
    assert parse_policy(dump_policy(snap)).settings == s
