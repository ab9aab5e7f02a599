"""The policy decision cases (no tests here): every case of policy-research §3.6, then one or
more per rule of §3.3, over ``examples/policy/city-a.json``; ``tests/test_policy_cases.py``
decides them and ``tests/test_policy_law.py`` checks them against the law's articles.

Over 600 lines on purpose: it is one table of cases, read top to bottom; splitting it would
scatter the cases of one rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from secnode.core.identifiers import MemberId, ServiceId
from secnode.core.policy import (
    JST,
    AgreementState,
    ConsentStatus,
    LegalType,
    PolicySnapshot,
    Reason,
    Status,
    UsageCounters,
    parse_request,
)
from secnode.core.policy.model import Agreement, Permission

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policy"
AT = datetime(2026, 6, 1, 10, 0, tzinfo=JST)
NO_HISTORY = UsageCounters(provision_days=frozenset())
"""The node's history for an ad-hoc-only basis: nothing provided before (item 2 of issue 17)."""

# -- policy edits used by cases (each returns a new snapshot) --------------------------------

Edit = Callable[[PolicySnapshot], PolicySnapshot]


def _swap(mapping: Any, key: Any, value: Any) -> MappingProxyType[Any, Any]:
    out = dict(mapping)
    out[key] = value
    return MappingProxyType(out)


def agreement(uid: str, **changes: Any) -> Edit:
    return lambda p: p.with_changes(
        agreements=_swap(p.agreements, uid, replace(p.agreements[uid], **changes))
    )


def permission(uid: str, **changes: Any) -> Edit:
    def edit(p: PolicySnapshot) -> PolicySnapshot:
        a: Agreement = p.agreements[uid]
        perm: Permission = replace(a.permissions[0], **changes)
        return p.with_changes(
            agreements=_swap(p.agreements, uid, replace(a, permissions=(perm, *a.permissions[1:])))
        )

    return edit


def member(mid: str, **changes: Any) -> Edit:
    key = MemberId.parse(mid)
    return lambda p: p.with_changes(
        members=_swap(p.members, key, replace(p.members[key], **changes))
    )


def service(sid: str, **changes: Any) -> Edit:
    key = ServiceId.parse(sid)
    return lambda p: p.with_changes(
        services=_swap(p.services, key, replace(p.services[key], **changes))
    )


def consent(cid: str, **changes: Any) -> Edit:
    return lambda p: p.with_changes(
        consents=_swap(p.consents, cid, replace(p.consents[cid], **changes))
    )


def settings(**changes: Any) -> Edit:
    return lambda p: p.with_changes(settings=replace(p.settings, **changes))


def stop(subject: str, **changes: Any) -> Edit:
    return lambda p: p.with_changes(
        stop_requests=_swap(
            p.stop_requests, subject, tuple(replace(s, **changes) for s in p.stop_requests[subject])
        )
    )


def both(*edits: Edit) -> Edit:
    def edit(p: PolicySnapshot) -> PolicySnapshot:
        for e in edits:
            p = e(p)
        return p

    return edit


# -- base requests (JSON form, as `secnode policy explain REQUEST.json` reads them) ----------

WELFARE = {  # research case 1
    "client": "JP/GOV/CITY-B/welfare",
    "service": "JP/GOV/CITY-A/resident/basic",
    "purpose": "WELFARE-ELIGIBILITY",
    "legal_basis": "APPI69-1-LAW",
    "agreement": "DSA-1;v=3",
    "subject": "S100",
    "fields": ["name", "address", "birth_date"],
    "issue": "WEL-2026-00123",
}
CHILD = {  # research case 8
    "client": "JP/COM/BIZ-X/app",
    "service": "JP/GOV/CITY-A/child/location",
    "purpose": "CHILD-WATCH",
    "legal_basis": "CONSENT",
    "consent_id": "CR-1",
    "subject": "S1",
    "issue": "CW-2026-1",
}
HEALTH = {
    "client": "JP/COM/BIZ-X/app",
    "service": "JP/GOV/CITY-A/health/checkup",
    "purpose": "HEALTH-PROGRAM",
    "legal_basis": "CONSENT",
    "consent_id": "CR-5",
    "subject": "S6",
    "issue": "HP-1",
}
CAMERA = {
    "client": "JP/GOV/POLICE-HYOGO/investigation",
    "service": "JP/GOV/CITY-A/camera/images",
    "purpose": "CRIME-INVESTIGATION",
    "legal_basis": "ORD-CRIMINAL-INVESTIGATION",
    "fields": ["image", "captured_at"],
    "issue": "HYOGO-2026-0042",
    "evidence": {
        "doc_type": "捜査関係事項照会書",
        "doc_no": "兵A捜第123号",
        "statute": "刑事訴訟法197条2項",
        "offence": "窃盗",
    },
    "data_from": "2026-05-29T00:00:00+09:00",
}
TAX = {
    "client": "JP/GOV/CITY-B/tax",
    "service": "JP/GOV/CITY-A/tax/mynumber-link",
    "purpose": "TAX-ASSESSMENT",
    "legal_basis": "MYNUMBER19-8",
    "agreement": "DSA-6",
    "subject": "S300",
    "issue": "TAX-1",
}
MOBILITY = {
    "client": "JP/GOV/CITY-B/planning",
    "service": "JP/GOV/CITY-A/mobility/pseudo",
    "purpose": "MOBILITY-PLANNING",
    "legal_basis": "APPI69-1-LAW",
    "issue": "MP-1",
}
ANON = {
    "client": "JP/COM/BIZ-X/app",
    "service": "JP/GOV/CITY-A/stats/anon",
    "purpose": "STATISTICS",
    "legal_basis": "APPI43-44",
    "fields": ["age_band", "district"],
    "issue": "ST-1",
}
SHOP = {
    "client": "JP/COM/BIZ-Y/crm",
    "service": "JP/COM/BIZ-X/shop/members",
    "purpose": "LOYALTY-PROGRAM",
    "legal_basis": "APPI27-2",
    "agreement": "DSA-8",
    "subject": "S21",
    "fields": ["member_name", "purchase_history"],
    "issue": "LP-1",
}
FIRE = {
    "client": "JP/GOV/FIRE-A/dispatch",
    "service": "JP/GOV/CITY-A/resident/basic",
    "purpose": "EMERGENCY-RESPONSE",
    "legal_basis": "APPI69-2-3",
    "agreement": "DSA-12",
    "subject": "S400",
    "fields": ["name", "address"],
    "issue": "FIRE-1",
}


@dataclass(frozen=True)
class Case:
    name: str
    base: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    """Request changes; a value of None removes the key (the header is absent)."""
    allow: bool = False
    reason: Reason = Reason.SYSTEM_ERROR
    edit: Edit | None = None
    usage: UsageCounters | None = None
    at: datetime = AT

    def request(self) -> Any:
        data = dict(self.base)
        for key, value in self.changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return parse_request(data)


def ok(name: str, base: dict[str, Any], reason: Reason, **kw: Any) -> Case:
    return Case(name, base, allow=True, reason=reason, **kw)


def no(name: str, base: dict[str, Any], reason: Reason, **kw: Any) -> Case:
    return Case(name, base, allow=False, reason=reason, **kw)


RESEARCH_CASES = [
    ok("r01 welfare query based on law", WELFARE, Reason.OK_STATUTE),
    no(
        "r02 purpose MARKETING",
        WELFARE,
        Reason.PURPOSE_NOT_IN_AGREEMENT,
        changes={"purpose": "MARKETING"},
    ),
    no(
        "r03 fields plus income",
        WELFARE,
        Reason.FIELD_NOT_PERMITTED,
        changes={"fields": ["name", "address", "birth_date", "income"]},
    ),
    no("r04 no purpose header", WELFARE, Reason.MISSING_PURPOSE, changes={"purpose": None}),
    no(
        "r05 client subsystem CITY-B/tax",
        WELFARE,
        Reason.SUBSYSTEM_NOT_IN_AGREEMENT,
        changes={"client": "JP/GOV/CITY-B/tax"},
    ),
    no(
        "r06 expired DSA-OLD",
        WELFARE,
        Reason.AGREEMENT_NOT_ACTIVE,
        changes={"agreement": "DSA-OLD"},
    ),
    no(
        "r07 basis LEGITIMATE_INTEREST",
        WELFARE,
        Reason.UNKNOWN_LEGAL_BASIS,
        changes={"legal_basis": "LEGITIMATE_INTEREST"},
    ),
    ok("r08 consent CR-1", CHILD, Reason.OK_CONSENT),
    no(
        "r09 withdrawn consent CR-2",
        CHILD,
        Reason.CONSENT_NOT_VALID,
        changes={"subject": "S2", "consent_id": "CR-2"},
    ),
    no(
        "r10 no consent id",
        CHILD,
        Reason.CONSENT_MISSING,
        changes={"subject": "S3", "consent_id": None},
    ),
    no(
        "r11 purpose ADVERTISING not in DSA-2",
        CHILD,
        Reason.PURPOSE_NOT_IN_AGREEMENT,
        changes={"purpose": "ADVERTISING"},
    ),
    no(
        "r16 special-care data by opt-out",
        HEALTH,
        Reason.OPTOUT_SPECIAL_CARE_FORBIDDEN,
        changes={"legal_basis": "APPI27-2", "consent_id": None, "subject": "S4"},
    ),
]

OWN_CASES = [
    # S0 integrity
    no(
        "s0 request time far from clock",
        WELFARE,
        Reason.CLOCK_SKEW,
        changes={"time": "2026-06-01T09:00:00+09:00"},
    ),
    ok(
        "s0 request time within skew",
        WELFARE,
        Reason.OK_STATUTE,
        changes={"time": "2026-06-01T09:58:00+09:00"},
    ),
    # S1 parties
    no(
        "s1 unclassified service",
        WELFARE,
        Reason.SERVICE_UNKNOWN,
        changes={"service": "JP/GOV/CITY-A/resident/unknown"},
    ),
    no(
        "s1 suspended service",
        WELFARE,
        Reason.SERVICE_INACTIVE,
        edit=service("JP/GOV/CITY-A/resident/basic", status=Status.SUSPENDED),
    ),
    no(
        "s1 client member not registered",
        WELFARE,
        Reason.PARTY_UNKNOWN_MEMBER,
        changes={"client": "JP/GOV/CITY-Z/welfare"},
    ),
    no(
        "s1 client member suspended",
        WELFARE,
        Reason.PARTY_INACTIVE,
        edit=member("JP/GOV/CITY-B", status=Status.SUSPENDED),
    ),
    no(
        "s1 client claims another legal type",
        WELFARE,
        Reason.PARTY_LEGAL_TYPE_MISMATCH,
        changes={"client_legal_type": "INVESTIGATIVE_AGENCY"},
    ),
    ok(
        "s1 versioned service id matches versionless classification",
        WELFARE,
        Reason.OK_STATUTE,
        changes={"service": "JP/GOV/CITY-A/resident/basic/v1"},
    ),
    # S2 envelope
    no(
        "s2 unknown field", WELFARE, Reason.FIELD_UNKNOWN, changes={"fields": ["name", "shoe_size"]}
    ),
    no(
        "s2 fields requested from a service that declares none",
        WELFARE,
        Reason.FIELD_UNKNOWN,
        changes={"service": "JP/GOV/CITY-A/legacy/resident-soap", "agreement": None},
    ),
    no(
        "s2 no fields header means all fields (incl. income)",
        WELFARE,
        Reason.FIELD_NOT_PERMITTED,
        changes={"fields": None},
    ),
    no(
        "s2 unknown purpose code",
        WELFARE,
        Reason.UNKNOWN_PURPOSE,
        changes={"purpose": "WELFARE-CHECK"},
    ),
    no("s2 no basis header", WELFARE, Reason.MISSING_LEGAL_BASIS, changes={"legal_basis": None}),
    no(
        "s2 unknown basis code",
        WELFARE,
        Reason.UNKNOWN_LEGAL_BASIS,
        changes={"legal_basis": "APPI27-1-9"},
    ),
    no(
        "s2 lower-case basis is not the closed-list code",
        WELFARE,
        Reason.UNKNOWN_LEGAL_BASIS,
        changes={"legal_basis": "consent"},
    ),
    no(
        "s2 purpose admits only consent",
        WELFARE,
        Reason.BASIS_NOT_ALLOWED_FOR_PURPOSE,
        changes={"purpose": "DIRECT-MAIL"},
    ),
    no("s2 no issue (case reference)", WELFARE, Reason.MISSING_ISSUE, changes={"issue": None}),
    ok(
        "s2 issue optional when settings say so",
        WELFARE,
        Reason.OK_STATUTE,
        changes={"issue": None},
        edit=settings(require_issue=False),
    ),
    no(
        "s2 no subject for a per-person service",
        WELFARE,
        Reason.MISSING_SUBJECT,
        changes={"subject": None},
    ),
    no(
        "s2 consent basis always needs a subject",
        ANON,
        Reason.MISSING_SUBJECT,
        changes={"legal_basis": "CONSENT"},
    ),
    # S3 data classes: non-personal
    ok(
        "s3 non-personal service without any policy header",
        {"client": "JP/COM/BIZ-US/app", "service": "JP/GOV/CITY-A/open/facilities"},
        Reason.NOT_PERSONAL_DATA,
    ),
    ok(
        "s3 only non-personal fields of a personal service",
        {
            "client": "JP/COM/BIZ-X/app",
            "service": "JP/GOV/CITY-A/camera/images",
            "fields": ["camera_id", "captured_at"],
        },
        Reason.NOT_PERSONAL_DATA,
    ),
    # S3 My Number
    ok(
        "s3 My Number under Art. 19 item in the agreement",
        TAX,
        Reason.OK_STATUTE,
        usage=UsageCounters(),
    ),
    no(
        "s3 My Number with consent",
        TAX,
        Reason.MYNUMBER_BASIS,
        changes={"legal_basis": "CONSENT", "consent_id": "CR-1", "agreement": None},
    ),
    no(
        "s3 My Number with law basis that is not Art. 19",
        TAX,
        Reason.MYNUMBER_BASIS,
        changes={"legal_basis": "APPI69-1-LAW"},
    ),
    no(
        "s3 My Number item not configured in the agreement",
        TAX,
        Reason.BASIS_NOT_IN_AGREEMENT,
        changes={"legal_basis": "MYNUMBER19-9"},
        usage=UsageCounters(),
    ),
    no(
        "s3 My Number item outside the Act's range",
        TAX,
        Reason.UNKNOWN_LEGAL_BASIS,
        changes={"legal_basis": "MYNUMBER19-99"},
    ),
    # S3 pseudonymized
    ok("s3 pseudonymized data based on law", MOBILITY, Reason.OK_STATUTE),
    no(
        "s3 pseudonymized data by consent",
        MOBILITY,
        Reason.PSEUDONYMIZED_PROVISION,
        changes={"legal_basis": "CONSENT", "subject": "S1", "consent_id": "CR-1"},
    ),
    no(
        "s3 pseudonymized data to another public body (69-2-3)",
        MOBILITY,
        Reason.PSEUDONYMIZED_PROVISION,
        changes={"legal_basis": "APPI69-2-3"},
    ),
    ok(
        "s3 pseudonymized data in announced joint use",
        {
            "client": "JP/COM/BIZ-Y/crm",
            "service": "JP/COM/BIZ-X/shop/pseudo",
            "purpose": "LOYALTY-PROGRAM",
            "legal_basis": "APPI27-5-3",
            "issue": "J-1",
        },
        Reason.OK_JOINT_USE,
    ),
    no(
        "s3 joint use without announcement",
        {
            "client": "JP/COM/BIZ-Y/crm",
            "service": "JP/COM/BIZ-X/shop/pseudo",
            "purpose": "LOYALTY-PROGRAM",
            "legal_basis": "APPI27-5-3",
            "issue": "J-1",
        },
        Reason.JOINT_USE_NOT_ANNOUNCED,
        edit=agreement("DSA-9", joint_use_notice_ref=None),
    ),
    # S3 anonymized
    ok("s3 anonymized data with published notice", ANON, Reason.OK_ANONYMIZED),
    no(
        "s3 anonymized data with a linkage key",
        ANON,
        Reason.REIDENTIFICATION_RISK,
        changes={"fields": ["age_band", "record_key"]},
    ),
    no(
        "s3 anonymized data, notice not published",
        ANON,
        Reason.ANONYMIZED_NOT_PUBLISHED,
        edit=agreement("DSA-4", publication_ref=None),
    ),
    no(
        "s3 anonymized-information basis for personal data",
        CHILD,
        Reason.BASIS_NOT_APPLICABLE,
        changes={"legal_basis": "APPI43-44", "consent_id": None},
    ),
    # S3/S6 special-care
    ok("s6 special-care data with explicit consent", HEALTH, Reason.OK_CONSENT),
    no(
        "s6 special-care data, consent not explicit (CR-3)",
        HEALTH,
        Reason.CONSENT_SPECIAL_CARE_NOT_EXPLICIT,
        changes={"consent_id": "CR-3", "subject": "S4"},
    ),
    no(
        "s3 special-care field in an opt-out request",
        SHOP,
        Reason.OPTOUT_SPECIAL_CARE_FORBIDDEN,
        changes={"fields": ["member_name", "allergy"]},
    ),
    # S4 applicability
    no(
        "s4 opt-out by a public body",
        HEALTH,
        Reason.BASIS_NOT_APPLICABLE,
        changes={"legal_basis": "APPI27-2", "fields": ["checkup_date"], "consent_id": None},
    ),
    no(
        "s4 Art. 27 exception for a public-body provider",
        CAMERA,
        Reason.BASIS_NOT_APPLICABLE,
        changes={"legal_basis": "APPI27-1-2"},
    ),
    no(
        "s4 Art. 69 basis for a business provider",
        SHOP,
        Reason.BASIS_NOT_APPLICABLE,
        changes={"legal_basis": "APPI69-1-LAW"},
    ),
    no(
        "s4 69(2)(iii) needs a public-body recipient",
        FIRE,
        Reason.RECIPIENT_NOT_ELIGIBLE,
        changes={"client": "JP/COM/BIZ-Y/crm", "agreement": None},
    ),
    no(
        "s4 27(1)(vii) needs an academic recipient",
        SHOP,
        Reason.RECIPIENT_NOT_ELIGIBLE,
        changes={"legal_basis": "APPI27-1-7"},
    ),
    no(
        "s4 27(1)(v) needs an academic provider",
        SHOP,
        Reason.BASIS_NOT_APPLICABLE,
        changes={"legal_basis": "APPI27-1-5"},
    ),
    # S4 exception profiles (Kakogawa pattern)
    ok("s4 police request with complete evidence", CAMERA, Reason.OK_EXCEPTION),
    no(
        "s4 police request without the inquiry document",
        CAMERA,
        Reason.EVIDENCE_REQUIRED,
        changes={"evidence": {"statute": "刑事訴訟法197条2項", "offence": "窃盗"}},
    ),
    no(
        "s4 police request with a document type not accepted",
        CAMERA,
        Reason.EVIDENCE_REQUIRED,
        changes={"evidence": {**CAMERA["evidence"], "doc_type": "電話"}},
    ),
    no("s4 no evidence at all", CAMERA, Reason.EVIDENCE_REQUIRED, changes={"evidence": None}),
    no(
        "s4 criminal-investigation reason from the fire department",
        CAMERA,
        Reason.RECIPIENT_NOT_ELIGIBLE,
        changes={"client": "JP/GOV/FIRE-A/dispatch"},
    ),
    ok(
        "s4 emergency reason from the fire department",
        CAMERA,
        Reason.OK_EXCEPTION,
        changes={
            "client": "JP/GOV/FIRE-A/dispatch",
            "legal_basis": "ORD-EMERGENCY",
            "purpose": "EMERGENCY-RESPONSE",
            "evidence": {"ref": "119-2026-0601-7"},
        },
        usage=NO_HISTORY,  # ORD-EMERGENCY rests on Art. 69(2)(iv): ad hoc, judged from history
    ),
    no(
        "s4 emergency reason from a business",
        CAMERA,
        Reason.RECIPIENT_NOT_ELIGIBLE,
        changes={
            "client": "JP/COM/BIZ-X/app",
            "legal_basis": "ORD-EMERGENCY",
            "evidence": {"ref": "x"},
        },
    ),
    no(
        "s4 footage older than the 14-day look-back",
        CAMERA,
        Reason.LOOKBACK_EXCEEDED,
        changes={"data_from": "2026-05-10T00:00:00+09:00"},
    ),
    no("s4 look-back not stated", CAMERA, Reason.MISSING_DATA_PERIOD, changes={"data_from": None}),
    no(
        "s4 exception used for a recurring flow",
        CAMERA,
        Reason.AD_HOC_ONLY,
        changes={"recurring": True},
    ),
    no(
        "s4 exception to a foreign country",
        CAMERA,
        Reason.CROSS_BORDER_NOT_PERMITTED,
        changes={"recipient_country": "US"},
    ),
    no(
        "s4 service without an exception profile for the reason",
        CHILD,
        Reason.NO_EXCEPTION_PROFILE,
        changes={"legal_basis": "ORD-EMERGENCY", "evidence": {"ref": "x"}},
    ),
    ok(
        "s4 business emergency exception with attestation",
        {
            "client": "JP/GOV/POLICE-HYOGO/investigation",
            "service": "JP/COM/BIZ-X/shop/members",
            "purpose": "EMERGENCY-RESPONSE",
            "legal_basis": "APPI27-1-2",
            "subject": "S22",
            "fields": ["member_name"],
            "issue": "E-1",
            "evidence": {"ref": "missing-person-77", "consent_difficulty": "unconscious"},
        },
        Reason.OK_EXCEPTION,
    ),
    no(
        "s4 27(1)(ii) without the consent-difficulty attestation",
        {
            "client": "JP/GOV/POLICE-HYOGO/investigation",
            "service": "JP/COM/BIZ-X/shop/members",
            "purpose": "EMERGENCY-RESPONSE",
            "legal_basis": "APPI27-1-2",
            "subject": "S22",
            "fields": ["member_name"],
            "issue": "E-1",
            "evidence": {"ref": "missing-person-77"},
        },
        Reason.EVIDENCE_REQUIRED,
    ),
    no(
        "s4 exception outside the profile's fields",
        {
            "client": "JP/GOV/POLICE-HYOGO/investigation",
            "service": "JP/COM/BIZ-X/shop/members",
            "purpose": "EMERGENCY-RESPONSE",
            "legal_basis": "APPI27-1-2",
            "subject": "S22",
            "fields": ["member_name", "purchase_history"],
            "issue": "E-1",
            "evidence": {"ref": "m-77", "consent_difficulty": "unconscious"},
        },
        Reason.FIELD_NOT_PERMITTED,
    ),
    ok(
        "s4 69(2)(iv) research provision",
        {
            "client": "JP/EDU/UNIV-K/lab",
            "service": "JP/GOV/CITY-A/resident/basic",
            "purpose": "RESEARCH",
            "legal_basis": "APPI69-2-4",
            "subject": "S500",
            "fields": ["birth_date"],
            "issue": "IRB-2026-3",
            "evidence": {"ref": "IRB-2026-3"},
        },
        Reason.OK_EXCEPTION,
        usage=NO_HISTORY,
    ),
    # S4/S5 agreement resolution
    no(
        "s5 pinned agreement unknown",
        WELFARE,
        Reason.NO_ACTIVE_AGREEMENT,
        changes={"agreement": "DSA-404"},
    ),
    no(
        "s5 no agreement covers the service",
        {
            "client": "JP/GOV/CITY-B/welfare",
            "service": "JP/GOV/CITY-A/legacy/resident-soap",
            "purpose": "RESIDENT-ADMIN",
            "legal_basis": "APPI69-1-PURPOSE",
            "subject": "S1",
            "issue": "I",
        },
        Reason.NO_ACTIVE_AGREEMENT,
    ),
    ok(
        "s5 unpinned: the node finds DSA-1", WELFARE, Reason.OK_STATUTE, changes={"agreement": None}
    ),
    no(
        "s5 unpinned: subsystem not in any agreement",
        WELFARE,
        Reason.SUBSYSTEM_NOT_IN_AGREEMENT,
        changes={"agreement": None, "client": "JP/GOV/CITY-B/tax"},
    ),
    no(
        "s5 client member not a party",
        WELFARE,
        Reason.CLIENT_NOT_IN_AGREEMENT,
        changes={"client": "JP/GOV/FIRE-A/dispatch"},
    ),
    no(
        "s5 pinned version outdated",
        WELFARE,
        Reason.AGREEMENT_VERSION_MISMATCH,
        changes={"agreement": "DSA-1;v=2"},
    ),
    no("s5 agreement suspended", FIRE, Reason.AGREEMENT_NOT_ACTIVE),
    no(
        "s5 agreement terminated",
        WELFARE,
        Reason.AGREEMENT_NOT_ACTIVE,
        edit=agreement("DSA-1", state=AgreementState.TERMINATED),
    ),
    no(
        "s5 agreement not yet valid",
        WELFARE,
        Reason.AGREEMENT_NOT_ACTIVE,
        at=datetime(2025, 3, 31, 23, 59, tzinfo=JST),
        changes={"agreement": "DSA-1"},
    ),
    ok(
        "s5 last second of validity (2027-03-31 JST)",
        WELFARE,
        Reason.OK_STATUTE,
        at=datetime(2027, 3, 31, 23, 59, 59, tzinfo=JST),
    ),
    no(
        "s5 first second after validity",
        WELFARE,
        Reason.AGREEMENT_NOT_ACTIVE,
        at=datetime(2027, 4, 1, 0, 0, tzinfo=JST),
    ),
    no(
        "s5 permission dateTime window ended",
        WELFARE,
        Reason.AGREEMENT_NOT_ACTIVE,
        edit=permission("DSA-1", not_after=datetime(2026, 5, 1, tzinfo=JST)),
    ),
    no(
        "s5 permission restricted to another recipient type",
        WELFARE,
        Reason.RECIPIENT_NOT_ELIGIBLE,
        edit=permission("DSA-1", recipient_types=(LegalType.BUSINESS,)),
    ),
    no(
        "s5 law basis without statute",
        WELFARE,
        Reason.STATUTE_REF_MISSING,
        edit=permission("DSA-1", statute_ref=None),
    ),
    ok(
        "s5 within the registered purpose (69(1))",
        WELFARE,
        Reason.OK_WITHIN_PURPOSE,
        changes={"legal_basis": "APPI69-1-PURPOSE"},
    ),
    no(
        "s5 69(1) purpose not registered for the service",
        WELFARE,
        Reason.PURPOSE_NOT_REGISTERED,
        changes={"legal_basis": "APPI69-1-PURPOSE", "purpose": "MOBILITY-PLANNING"},
        edit=permission("DSA-1", purposes=("WELFARE-ELIGIBILITY", "MOBILITY-PLANNING")),
    ),
    no(
        "s5 basis not listed in the agreement",
        WELFARE,
        Reason.BASIS_NOT_IN_AGREEMENT,
        changes={"legal_basis": "APPI69-2-3"},
    ),
    # ad hoc only
    ok(
        "s5 69(2)(iii) ad hoc to the fire department",
        FIRE,
        Reason.OK_PUBLIC_BODY,
        edit=agreement("DSA-12", state=AgreementState.ACTIVE),
        usage=NO_HISTORY,
    ),
    no(
        "s5 69(2)(iii) on a recurring agreement",
        FIRE,
        Reason.AD_HOC_ONLY,
        edit=agreement("DSA-12", state=AgreementState.ACTIVE, recurring=True),
    ),
    no(
        "s5 69(2)(iii) declared recurring by the client",
        FIRE,
        Reason.AD_HOC_ONLY,
        changes={"recurring": True},
        edit=agreement("DSA-12", state=AgreementState.ACTIVE),
    ),
    no(
        "s5 recurring consent flow of a city outside the registered purpose",
        CHILD,
        Reason.AD_HOC_ONLY,
        edit=both(
            agreement("DSA-2", recurring=True),
            service("JP/GOV/CITY-A/child/location", registered_purposes=()),
        ),
    ),
    ok(
        "s5 recurring consent flow within the registered purpose",
        CHILD,
        Reason.OK_CONSENT,
        edit=agreement("DSA-2", recurring=True),
    ),
    # agreement types
    ok(
        "s5 entrustment to a processor",
        SHOP,
        Reason.OK_ENTRUSTMENT,
        changes={"legal_basis": "APPI27-5-1", "agreement": "DSA-10"},
    ),
    ok(
        "s5 unpinned: entrustment found after opt-out agreement refuses",
        SHOP,
        Reason.OK_ENTRUSTMENT,
        changes={"legal_basis": "APPI27-5-1", "agreement": None},
    ),
    no(
        "s5 opt-out basis on an entrustment agreement",
        SHOP,
        Reason.BASIS_NOT_APPLICABLE,
        changes={"agreement": "DSA-10"},
        edit=permission("DSA-10", bases=("APPI27-5-1", "APPI27-2")),
    ),
    no(
        "s5 personally referable data linked by the recipient, opt-out",
        {
            "client": "JP/COM/BIZ-Y/ads",
            "service": "JP/COM/BIZ-X/ads/cookies",
            "purpose": "ADVERTISING",
            "legal_basis": "APPI27-2",
            "subject": "S30",
            "issue": "A-1",
        },
        Reason.PERSONALLY_REFERABLE_CONSENT_REQUIRED,
    ),
    # cross-border
    no(
        "s5 recipient country outside the agreement",
        CHILD,
        Reason.CROSS_BORDER_NOT_PERMITTED,
        changes={"recipient_country": "US"},
    ),
    no(
        "s6 US recipient, consent without foreign-transfer information (CR-4)",
        CHILD,
        Reason.CONSENT_FOREIGN_TRANSFER_MISSING,
        changes={"client": "JP/COM/BIZ-US/app", "subject": "S5", "consent_id": "CR-4"},
    ),
    ok(
        "s6 US recipient with informed foreign-transfer consent (CR-6)",
        CHILD,
        Reason.OK_CONSENT,
        changes={"client": "JP/COM/BIZ-US/app", "subject": "S7", "consent_id": "CR-6"},
    ),
    ok(
        "s6 designated country (EU) needs no foreign-transfer consent",
        CHILD,
        Reason.OK_CONSENT,
        changes={"recipient_country": "DE"},
        edit=agreement("DSA-2", allowed_countries=("JP", "DE")),
    ),
    no(
        "s6 non-designated country, consent silent",
        CHILD,
        Reason.CONSENT_FOREIGN_TRANSFER_MISSING,
        changes={"recipient_country": "SG"},
        edit=agreement("DSA-2", allowed_countries=("JP", "SG")),
    ),
    ok(
        "s6 non-designated country, recipient keeps a conforming system",
        CHILD,
        Reason.OK_CONSENT,
        changes={"recipient_country": "SG"},
        edit=agreement("DSA-2", allowed_countries=("JP", "SG"), recipient_conforming_system=True),
    ),
    no(
        "s6 opt-out to a foreign recipient",
        SHOP,
        Reason.CROSS_BORDER_NOT_PERMITTED,
        changes={"recipient_country": "SG"},
        edit=agreement("DSA-8", allowed_countries=("JP", "SG")),
    ),
    # S6 consent
    no(
        "s6 consent expired (CR-7)",
        CHILD,
        Reason.CONSENT_NOT_VALID,
        changes={"subject": "S8", "consent_id": "CR-7"},
    ),
    no(
        "s6 consent not yet given",
        CHILD,
        Reason.CONSENT_NOT_VALID,
        edit=consent("CR-1", given_at=datetime(2026, 7, 1, tzinfo=JST)),
    ),
    no(
        "s6 consent refused",
        CHILD,
        Reason.CONSENT_NOT_VALID,
        edit=consent("CR-1", status=ConsentStatus.ConsentRefused),
    ),
    no(
        "s6 consent withdrawn, status not yet updated",
        CHILD,
        Reason.CONSENT_NOT_VALID,
        edit=consent("CR-1", withdrawn_at=datetime(2026, 5, 1, tzinfo=JST)),
    ),
    ok(
        "s6 renewed consent is valid",
        CHILD,
        Reason.OK_CONSENT,
        edit=consent("CR-1", status=ConsentStatus.RenewedConsentGiven),
    ),
    no("s6 consent id unknown", CHILD, Reason.CONSENT_MISSING, changes={"consent_id": "CR-404"}),
    no(
        "s6 consent of another subject",
        CHILD,
        Reason.CONSENT_SCOPE_MISMATCH,
        changes={"subject": "S2"},
    ),
    no(
        "s6 consent for another recipient",
        CHILD,
        Reason.CONSENT_SCOPE_MISMATCH,
        changes={"client": "JP/COM/BIZ-US/app"},
        edit=agreement("DSA-5", allowed_countries=("JP", "US")),
    ),
    no(
        "s6 consent for other data items",
        CHILD,
        Reason.CONSENT_SCOPE_MISMATCH,
        edit=consent("CR-1", fields=("device_id",)),
    ),
    no(
        "s6 consent under an outdated notice",
        CHILD,
        Reason.CONSENT_NOTICE_OUTDATED,
        edit=agreement("DSA-2", min_notice_version=3),
    ),
    no(
        "s6 consent status not re-checked recently",
        CHILD,
        Reason.CONSENT_STATUS_STALE,
        edit=both(
            settings(consent_max_status_age_seconds=3600),
            consent("CR-1", status_checked_at=AT - timedelta(days=2)),
        ),
    ),
    # S6 opt-out
    ok("s6 opt-out by a business with PPC filing", SHOP, Reason.OK_OPT_OUT),
    no(
        "s6 opt-out without PPC filing",
        SHOP,
        Reason.OPTOUT_NOT_FILED,
        edit=member("JP/COM/BIZ-X", ppc_optout_filing_id=None),
    ),
    no(
        "s6 opt-out of data itself received by opt-out",
        SHOP,
        Reason.OPTOUT_SOURCE_OPTOUT,
        edit=service("JP/COM/BIZ-X/shop/members", acquired_via_opt_out=True),
    ),
    # S7 stop requests
    no(
        "s7 individual asked to stop all provision (consent)",
        CHILD,
        Reason.STOP_REQUESTED,
        changes={"subject": "S9", "consent_id": "CR-8"},
    ),
    ok(
        "s7 stop request lifted",
        CHILD,
        Reason.OK_CONSENT,
        changes={"subject": "S9", "consent_id": "CR-8"},
        edit=stop("S9", lifted_at=datetime(2026, 5, 1, tzinfo=JST)),
    ),
    ok(
        "s7 stop request effective only later",
        CHILD,
        Reason.OK_CONSENT,
        changes={"subject": "S9", "consent_id": "CR-8"},
        edit=stop("S9", since=datetime(2026, 7, 1, tzinfo=JST)),
    ),
    no(
        "s7 opt-out stop for this recipient",
        SHOP,
        Reason.STOP_REQUESTED,
        changes={"subject": "S20"},
    ),
    ok(
        "s7 stop requests do not bind law-based provision",
        WELFARE,
        Reason.OK_STATUTE,
        changes={"subject": "S9"},
    ),
    # S8 quotas
    no(
        "s8 daily quota used up",
        TAX,
        Reason.QUOTA_EXCEEDED,
        usage=UsageCounters(per_day={"DSA-6": 100}, total={"DSA-6": 500}),
    ),
    ok(
        "s8 last provision of the day",
        TAX,
        Reason.OK_STATUTE,
        usage=UsageCounters(per_day={"DSA-6": 99}, total={"DSA-6": 500}),
    ),
    no(
        "s8 total quota used up",
        TAX,
        Reason.QUOTA_EXCEEDED,
        usage=UsageCounters(per_day={}, total={"DSA-6": 10000}),
    ),
    no("s8 quota agreement without counters fails closed", TAX, Reason.USAGE_UNAVAILABLE),
]
