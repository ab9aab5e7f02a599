"""Table-driven decision cases: every case of policy-research §3.6, then one or more per rule
of §3.3. The fixture is ``examples/policy/city-a.json`` (the §3.6 world plus a business
provider), so the example operators copy is the one the tests prove."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.policy import (
    Decision,
    FieldFilterError,
    ObligationKind,
    PolicySnapshot,
    Reason,
    decide,
    explain,
    filter_fields,
    parse_request,
    precheck,
    render_explanation,
)
from secnode.core.policy.model import Permission
from tests.support.policy_cases import (
    ANON,
    AT,
    CAMERA,
    CHILD,
    EXAMPLES,
    HEALTH,
    OWN_CASES,
    RESEARCH_CASES,
    SHOP,
    WELFARE,
    Case,
    _swap,
)


@pytest.mark.parametrize("case", RESEARCH_CASES + OWN_CASES, ids=lambda c: c.name)
def test_decision(case: Case, policy: PolicySnapshot) -> None:
    snap = case.edit(policy) if case.edit else policy
    decision = decide(case.request(), snap, case.at, case.usage)
    assert (decision.allow, decision.reason) == (case.allow, case.reason), decision.message
    if not decision.allow:
        assert decision.permitted_fields == ()
        assert decision.obligations == ()


@pytest.fixture(scope="module")
def policy() -> PolicySnapshot:
    from secnode.core.policy import load_policy

    return load_policy(EXAMPLES / "city-a.json")


# -- details the table does not show --------------------------------------------------------


def _decide(policy: PolicySnapshot, base: dict[str, Any], **changes: Any) -> Decision:
    data = {**base, **changes}
    return decide(parse_request({k: v for k, v in data.items() if v is not None}), policy, AT)


def test_case1_carries_article_record_and_counter(policy: PolicySnapshot) -> None:
    d = _decide(policy, WELFARE)
    assert d.article == "APPI Art. 69(1)"
    assert d.permitted_fields == ("name", "address", "birth_date")
    assert (d.agreement_id, d.agreement_version, d.basis) == ("DSA-1", 3, "APPI69-1-LAW")
    record = d.obligation(ObligationKind.PROVISION_RECORD)
    assert record is not None and record.params["record_type"] == "PUBLIC_BODY"
    count = d.obligation(ObligationKind.TRANSPARENCY_COUNT)
    assert count is not None
    assert count.params == {
        "fiscal_year": 2026,
        "basis": "APPI69-1-LAW",
        "category": "LAW",
        "recipient": "JP/GOV/CITY-B",
    }
    assert d.obligation(ObligationKind.NO_ONWARD_TRANSFER) is not None


def test_case8_record_carries_consent_id(policy: PolicySnapshot) -> None:
    d = _decide(policy, CHILD)
    record = d.obligation(ObligationKind.PROVISION_RECORD)
    assert record is not None
    assert record.params["consent_id"] == "CR-1"
    assert record.params["legally_required"] is False  # provider is a public body
    assert d.article == "APPI Art. 69(2)(i)"
    delete = d.obligation(ObligationKind.DELETE_AFTER)
    assert delete is not None and delete.params["duration"] == "P30D"


def test_case9_message_names_the_dpv_status(policy: PolicySnapshot) -> None:
    d = _decide(policy, CHILD, subject="S2", consent_id="CR-2")
    assert "ConsentWithdrawn" in d.message


def test_case22_no_verified_policy_is_system_error() -> None:
    d = decide(parse_request(WELFARE), None, AT)
    assert (d.allow, d.reason) == (False, Reason.SYSTEM_ERROR)


def test_case22_evaluator_exception_is_system_error(policy: PolicySnapshot) -> None:
    class Exploding(dict):  # type: ignore[type-arg]
        def get(self, *args: Any, **kw: Any) -> Any:
            raise RuntimeError("database went away")

    broken = replace(policy, members=Exploding(policy.members))
    d = decide(parse_request(WELFARE), broken, AT)
    assert (d.allow, d.reason) == (False, Reason.SYSTEM_ERROR)
    assert "RuntimeError" in d.message


def test_naive_decision_time_is_system_error(policy: PolicySnapshot) -> None:
    d = decide(parse_request(WELFARE), policy, datetime(2026, 6, 1, 10, 0))
    assert d.reason is Reason.SYSTEM_ERROR


def test_exception_allow_queues_review_and_notifies(policy: PolicySnapshot) -> None:
    d = _decide(policy, CAMERA)
    assert d.exception_profile_id == "EP-CAMERA" and d.record_type == "EXCEPTION"
    assert d.obligation(ObligationKind.POST_REVIEW) is not None
    notify = d.obligation(ObligationKind.NOTIFY_PRIVACY_OFFICER)
    assert notify is not None and notify.params["notify"] == ["privacy-officer@city-a.example"]
    record = d.obligation(ObligationKind.PROVISION_RECORD)
    assert record is not None and record.params["evidence"]["doc_type"] == "捜査関係事項照会書"


def test_anonymized_response_is_marked(policy: PolicySnapshot) -> None:
    d = _decide(policy, ANON)
    mark = d.obligation(ObligationKind.MARK_ANONYMIZED)
    assert mark is not None and mark.params["publication_ref"].startswith("https://")
    assert d.obligation(ObligationKind.NO_REIDENTIFICATION) is not None


def test_opt_out_record_is_legally_required_with_filing(policy: PolicySnapshot) -> None:
    d = _decide(policy, SHOP)
    record = d.obligation(ObligationKind.PROVISION_RECORD)
    receipt = d.obligation(ObligationKind.RECEIPT_RECORD)
    assert record is not None and record.params["legally_required"] is True
    assert record.params["record_type"] == "OPTOUT"
    assert receipt is not None and receipt.params["optout_filing_id"] == "PPC-OPTOUT-2024-0001"


def test_unpinned_refusal_reports_the_furthest_agreement(policy: PolicySnapshot) -> None:
    d = _decide(
        policy, SHOP, legal_basis="APPI27-5-1", agreement=None, fields=["member_name", "allergy"]
    )
    assert (d.reason, d.agreement_id) == (Reason.FIELD_NOT_PERMITTED, "DSA-10")
    assert d.alternatives == (("DSA-8", "BASIS_NOT_IN_AGREEMENT"),)


def test_legacy_service_without_fields_is_not_filtered(policy: PolicySnapshot) -> None:
    legacy = ServiceId.parse("JP/GOV/CITY-A/legacy/resident-soap")
    dsa = replace(
        policy.agreements["DSA-1"],
        uid="DSA-L",
        permissions=(
            Permission(target=legacy, purposes=("RESIDENT-ADMIN",), bases=("APPI69-1-PURPOSE",)),
        ),
        consumers=(SubsystemId.parse("JP/GOV/CITY-B/welfare"),),
    )
    snap = policy.with_changes(agreements=_swap(policy.agreements, "DSA-L", dsa))
    d = _decide(
        snap,
        {
            "client": "JP/GOV/CITY-B/welfare",
            "service": str(legacy),
            "purpose": "RESIDENT-ADMIN",
            "legal_basis": "APPI69-1-PURPOSE",
            "subject": "S1",
            "issue": "I-1",
        },
    )
    assert (d.allow, d.reason) == (True, Reason.OK_WITHIN_PURPOSE)
    assert d.permitted_fields is None
    assert d.obligation(ObligationKind.FILTER_FIELDS) is None


# -- client-side early check ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"purpose": None}, Reason.MISSING_PURPOSE),
        ({"legal_basis": None}, Reason.MISSING_LEGAL_BASIS),
        ({"legal_basis": "LEGITIMATE_INTEREST"}, Reason.UNKNOWN_LEGAL_BASIS),
        ({"subject": None}, Reason.MISSING_SUBJECT),
        ({"consent_id": None}, Reason.CONSENT_MISSING),
        ({"fields": ["shoe_size"]}, Reason.FIELD_UNKNOWN),
    ],
)
def test_precheck_refuses_what_the_client_node_can_know(
    policy: PolicySnapshot,
    changes: dict[str, Any],
    reason: Reason,
) -> None:
    data = {k: v for k, v in {**CHILD, **changes}.items() if v is not None}
    d = precheck(parse_request(data), policy, AT)
    assert d is not None and (d.allow, d.reason) == (False, reason)
    # the provider's full decision gives the same code
    assert decide(parse_request(data), policy, AT).reason is reason


def test_precheck_forwards_what_only_the_provider_can_judge(policy: PolicySnapshot) -> None:
    withdrawn = parse_request({**CHILD, "subject": "S2", "consent_id": "CR-2"})
    assert precheck(withdrawn, policy, AT) is None  # the consent state lives at the provider
    unknown = parse_request({"client": "JP/GOV/CITY-B/x", "service": "JP/GOV/CITY-C/a/b"})
    assert precheck(unknown, policy, AT) is None
    open_data = parse_request(
        {"client": "JP/GOV/CITY-B/x", "service": "JP/GOV/CITY-A/open/facilities"}
    )
    assert precheck(open_data, policy, AT) is None


def test_precheck_special_care_opt_out(policy: PolicySnapshot) -> None:
    req = parse_request({**HEALTH, "legal_basis": "APPI27-2", "consent_id": None})
    d = precheck(req, policy, AT)
    assert d is not None and d.reason is Reason.OPTOUT_SPECIAL_CARE_FORBIDDEN


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("welfare-law", Reason.OK_STATUTE),
        ("child-watch-consent", Reason.OK_CONSENT),
        ("child-watch-withdrawn", Reason.CONSENT_NOT_VALID),
        ("police-camera", Reason.OK_EXCEPTION),
        ("health-opt-out", Reason.OPTOUT_SPECIAL_CARE_FORBIDDEN),
    ],
)
def test_example_request_files(policy: PolicySnapshot, name: str, reason: Reason) -> None:
    """The request files docs/policy.md uses with `secnode policy explain`."""
    import json

    data = json.loads((EXAMPLES / "requests" / f"{name}.json").read_text(encoding="utf-8"))
    d = decide(parse_request(data), policy, AT)
    assert d.reason is reason, d.message
    assert render_explanation(d, policy).startswith(("ALLOW", "DENY"))
    assert explain(d, policy)["reason"] == reason.value


def test_filter_fields_keeps_only_permitted_paths() -> None:
    response = {
        "name": "山田",
        "income": 1,
        "items": [{"a": 1, "b": 2}, {"a": 3}],
        "address": {"city": "A市", "street": "1-1"},
    }
    out = filter_fields(response, ["name", "items.a", "address.city"])
    assert out == {"name": "山田", "items": [{"a": 1}, {"a": 3}], "address": {"city": "A市"}}
    assert filter_fields([{"name": "x", "income": 2}], ["name"]) == [{"name": "x"}]
    assert filter_fields(response, None) is response  # service declares no fields
    with pytest.raises(FieldFilterError, match=r"cannot filter str at \$"):
        filter_fields("plain text", ["name"])


def test_pure_core_imports_no_io_frameworks() -> None:
    import subprocess
    import sys

    code = (
        "import sys, secnode.core.policy; "
        "bad = [m for m in ('aiohttp', 'sqlalchemy', 'click') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.stdout.strip() == ""
