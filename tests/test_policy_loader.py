"""Policy files: strict loading against the closed vocabulary (errors name the path) and
round-trip export; request files and headers."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.policy import (
    AgreementRef,
    PolicyFormatError,
    PolicyRequestError,
    dump_policy,
    dumps_policy,
    load_policy,
    loads_policy,
    parse_agreement,
    parse_policy,
    parse_request,
    policy_digest,
    request_from_headers,
    request_to_json,
    save_policy,
    validate_snapshot,
)
from secnode.core.policy.strict_json import Value

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policy" / "city-a.json"
DOC: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))


def refused(edit: Callable[[dict[str, Any]], None], path: str, message: str) -> None:
    doc = copy.deepcopy(DOC)
    edit(doc)
    with pytest.raises(PolicyFormatError, match=re.escape(message)) as info:
        parse_policy(doc)
    assert info.value.path == path, str(info.value)


# -- round trip ------------------------------------------------------------------------------


def test_example_round_trips_through_export() -> None:
    snap = load_policy(EXAMPLE)
    again = parse_policy(dump_policy(snap))
    assert again == snap
    assert dump_policy(again) == dump_policy(snap)
    assert loads_policy(dumps_policy(snap)) == snap


def test_save_and_load_file(tmp_path: Path) -> None:
    snap = load_policy(EXAMPLE)
    target = tmp_path / "policy.json"
    save_policy(snap, target)
    assert load_policy(target) == snap
    assert not list(tmp_path.glob(".policy.json.*"))  # no temp file left behind


def test_digest_is_stable_and_tracks_content() -> None:
    snap = load_policy(EXAMPLE)
    assert snap.digest == policy_digest(snap)
    assert snap.digest is not None and snap.digest.startswith("sha256:")
    changed = copy.deepcopy(DOC)
    changed["agreements"][0]["version"] = 4
    assert parse_policy(changed).digest != snap.digest


def test_date_bounds_are_whole_days_in_jst() -> None:
    dsa = load_policy(EXAMPLE).agreements["DSA-1"]
    assert dsa.valid_from.isoformat() == "2025-04-01T00:00:00+09:00"
    assert dsa.valid_to is not None and dsa.valid_to.isoformat() == "2027-04-01T00:00:00+09:00"


def test_snapshot_from_elsewhere_is_validated_with_document_paths() -> None:
    snap = load_policy(EXAMPLE)
    assert replace(validate_snapshot(snap), digest=None) == replace(snap, digest=None)
    bad_perm = replace(snap.agreements["DSA-2"].permissions[0], purposes=("NOT-DECLARED",))
    bad = snap.with_changes(
        agreements=MappingProxyType(
            {**snap.agreements, "DSA-2": replace(snap.agreements["DSA-2"], permissions=(bad_perm,))}
        )
    )
    with pytest.raises(PolicyFormatError, match="unknown purpose code 'NOT-DECLARED'") as info:
        validate_snapshot(bad)
    assert info.value.path == "agreements[1].permission[0].constraint[0].rightOperand[0]"


def test_single_agreement_parses_against_an_existing_registry() -> None:
    snap = load_policy(EXAMPLE)
    data = copy.deepcopy(DOC["agreements"][0])
    data["uid"] = "DSA-NEW"
    agreement = parse_agreement(Value(data, "agreement"), snap)
    assert agreement.uid == "DSA-NEW"
    data["assignee"] = ["JP/GOV/NOWHERE/x"]
    with pytest.raises(PolicyFormatError, match="unknown member 'JP/GOV/NOWHERE'"):
        parse_agreement(Value(data, "agreement"), snap)


# -- refusals with paths ---------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    refused(lambda d: d.update(agreemnts=[]), "agreemnts", "unknown key 'agreemnts'")


def test_unknown_key_in_an_agreement() -> None:
    refused(
        lambda d: d["agreements"][0].update(colour="red"),
        "agreements[0].colour",
        "unknown key 'colour'",
    )


def test_unknown_key_in_a_nested_object() -> None:
    refused(
        lambda d: d["agreements"][0]["duties"].update(delete_afterr="P1Y"),
        "agreements[0].duties.delete_afterr",
        "unknown key 'delete_afterr'",
    )


def test_unknown_constraint_left_operand() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["agreements"][0]["permission"][0]["constraint"].append(
            {"leftOperand": "spatial", "operator": "eq", "rightOperand": "JP"}
        )

    refused(
        edit,
        "agreements[0].permission[0].constraint[3].leftOperand",
        "unknown constraint 'spatial'",
    )


def test_operator_not_in_the_profile() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["agreements"][0]["permission"][0]["constraint"][0]["operator"] = "eq"

    refused(
        edit,
        "agreements[0].permission[0].constraint[0].operator",
        "operator 'eq' is not allowed for 'purpose'",
    )


def test_unknown_purpose_code_in_a_permission() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["agreements"][0]["permission"][0]["constraint"][0]["rightOperand"].append("SPYING")

    refused(
        edit,
        "agreements[0].permission[0].constraint[0].rightOperand[1]",
        "unknown purpose code 'SPYING'",
    )


def test_unknown_basis_code() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["agreements"][0]["permission"][0]["constraint"][1]["rightOperand"][0] = "APPI99"

    refused(
        edit,
        "agreements[0].permission[0].constraint[1].rightOperand[0]",
        "unknown legal basis code 'APPI99'",
    )


def test_legitimate_interest_is_refused_with_the_reason() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["agreements"][1]["permission"][0]["constraint"][1]["rightOperand"] = [
            "LEGITIMATE_INTEREST"
        ]

    refused(
        edit,
        "agreements[1].permission[0].constraint[1].rightOperand[0]",
        "no legitimate-interest basis",
    )


def test_exception_basis_belongs_in_a_profile_not_an_agreement() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["agreements"][1]["permission"][0]["constraint"][1]["rightOperand"] = ["APPI27-1-2"]

    refused(
        edit,
        "agreements[1].permission[0].constraint[1].rightOperand[0]",
        "configure it in an exception profile",
    )


def test_undeclared_ordinance_basis() -> None:
    refused(
        lambda d: d["ordinance_bases"].pop(2),
        "exception_profiles[0].reasons[2].basis",
        "unknown legal basis code 'ORD-CRIMINAL-INVESTIGATION'",
    )


def test_unknown_data_class() -> None:
    refused(
        lambda d: d["services"][0]["fields"][0].update({"class": "SECRET"}),
        "services[0].fields[0].class",
        "unknown data class 'SECRET'",
    )


def test_unknown_consent_status_names_dpv() -> None:
    refused(
        lambda d: d["consents"][0].update(status="given"),
        "consents[0].status",
        "unknown consent status (DPV) 'given'",
    )


def test_unknown_legal_type() -> None:
    refused(
        lambda d: d["members"][0].update(legal_type="NGO"),
        "members[0].legal_type",
        "unknown legal type 'NGO'",
    )


def test_data_item_not_declared_by_the_service() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["agreements"][0]["permission"][0]["constraint"][2]["rightOperand"].append("blood")

    refused(
        edit, "agreements[0].permission[0].constraint[2].rightOperand[3]", "has no field 'blood'"
    )


def test_permission_target_of_another_provider() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["agreements"][0]["permission"][0]["target"] = "JP/COM/BIZ-X/shop/members"

    refused(edit, "agreements[0].permission[0].target", "does not belong to the assigner")


def test_unknown_member_in_a_consent() -> None:
    refused(
        lambda d: d["consents"][0].update(recipients=["JP/COM/NOBODY/app"]),
        "consents[0].recipients[0]",
        "unknown member 'JP/COM/NOBODY'",
    )


def test_unknown_exception_profile_on_a_service() -> None:
    refused(
        lambda d: d["services"][1].update(exception_profiles=["EP-NONE"]),
        "services[1].exception_profiles[0]",
        "unknown exception profile 'EP-NONE'",
    )


def test_unknown_evidence_key() -> None:
    refused(
        lambda d: d["exception_profiles"][0]["reasons"][0].update(
            required_evidence=["fingerprint"]
        ),
        "exception_profiles[0].reasons[0].required_evidence[0]",
        "unknown evidence key",
    )


def test_naive_time_is_refused() -> None:
    refused(
        lambda d: d["consents"][0].update(given_at="2025-05-01T09:00:00"),
        "consents[0].given_at",
        "must include a UTC offset",
    )


def test_retention_below_three_years() -> None:
    refused(
        lambda d: d["settings"].update(record_retention="P1Y"),
        "settings.record_retention",
        "below the 3 years",
    )


def test_validity_ending_before_it_starts() -> None:
    refused(
        lambda d: d["agreements"][0].update(valid_to="2024-01-01"),
        "agreements[0].valid_to",
        "ends before it starts",
    )


def test_missing_required_key() -> None:
    refused(
        lambda d: d["agreements"][0].pop("assigner"),
        "agreements[0].assigner",
        "required key is missing",
    )


def test_duplicate_ids() -> None:
    refused(
        lambda d: d["consents"].append(copy.deepcopy(d["consents"][0])),
        "consents[8]",
        "duplicate id CR-1",
    )


def test_wrong_format_version() -> None:
    refused(lambda d: d.update(format_version=2), "format_version", "unsupported format_version 2")


def test_bad_identifier_names_the_path() -> None:
    refused(lambda d: d["members"][0].update(id="JP/GOV"), "members[0].id", "has 2 part(s)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": "secnode-policy", "format": "x"}', "duplicate key 'format'"),
        ('{"format": NaN}', "NaN is not valid JSON"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_json(text: str, message: str) -> None:
    with pytest.raises(PolicyFormatError, match=re.escape(message)):
        loads_policy(text)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    doc = copy.deepcopy(DOC)
    doc["members"][0]["colour"] = "blue"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(PolicyFormatError, match=r"bad\.json: members\[0\]\.colour: unknown key"):
        load_policy(path)


# -- requests --------------------------------------------------------------------------------


def test_request_file_round_trips() -> None:
    data = {
        "client": "JP/GOV/CITY-B/welfare",
        "service": "JP/GOV/CITY-A/resident/basic",
        "purpose": "WELFARE-ELIGIBILITY",
        "legal_basis": "APPI69-1-LAW",
        "agreement": "DSA-1;v=3",
        "subject": "S1",
        "fields": ["name"],
        "issue": "I-1",
        "evidence": {"ref": "R-1"},
        "recurring": True,
        "data_from": "2026-05-01T00:00:00+09:00",
        "time": "2026-06-01T10:00:00+09:00",
    }
    request = parse_request(data)
    assert request.agreement == AgreementRef("DSA-1", 3)
    assert parse_request(request_to_json(request)) == request


def test_request_file_refuses_unknown_keys() -> None:
    with pytest.raises(PolicyFormatError, match="unknown key 'purpose_code'") as info:
        parse_request(
            {
                "client": "JP/GOV/CITY-B/welfare",
                "service": "JP/GOV/CITY-A/resident/basic",
                "purpose_code": "X",
            }
        )
    assert info.value.path == "purpose_code"


def test_request_from_headers() -> None:
    headers = {
        "x-road-purpose": "CHILD-WATCH",
        "X-Road-Legal-Basis": "CONSENT",
        "X-Road-Data-Subject": "S1",
        "X-Road-Consent-Id": "CR-1",
        "X-Road-Data-Items": "location_history, device_id",
        "X-Road-Agreement": "DSA-2;v=1",
        "X-Road-Evidence": '{"ref": "R-1"}',
        "X-Road-Recipient-Country": "JP",
        "X-Road-Recurring": "false",
        "X-Road-Issue": "CW-1",
        "Accept": "application/json",
    }
    req = request_from_headers(
        SubsystemId.parse("JP/COM/BIZ-X/app"),
        ServiceId.parse("JP/GOV/CITY-A/child/location"),
        headers,
    )
    assert (req.purpose, req.basis, req.subject_ref, req.consent_id) == (
        "CHILD-WATCH",
        "CONSENT",
        "S1",
        "CR-1",
    )
    assert req.fields == ("location_history", "device_id")
    assert req.agreement == AgreementRef("DSA-2", 1)
    assert dict(req.evidence) == {"ref": "R-1"}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Road-Evidence": '{"password": "x"}'}, "unknown evidence key 'password'"),
        ({"X-Road-Evidence": "not json"}, "not valid JSON"),
        ({"X-Road-Data-Items": "name;drop table"}, "invalid field name"),
        ({"X-Road-Agreement": "DSA-1;version=2"}, "expected 'ID;v=N'"),
        ({"X-Road-Recipient-Country": "Japan"}, "ISO 3166"),
        ({"X-Road-Recurring": "sometimes"}, "expected true or false"),
        ({"X-Road-Purpose": "A\x07B"}, "control characters"),
        ({"X-Road-Data-From": "yesterday"}, "ISO 8601"),
    ],
)
def test_malformed_policy_headers_are_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyRequestError, match=re.escape(message)) as info:
        request_from_headers(
            SubsystemId.parse("JP/COM/BIZ-X/app"),
            ServiceId.parse("JP/GOV/CITY-A/child/location"),
            headers,
        )
    assert info.value.reason == "MALFORMED_REQUEST"
