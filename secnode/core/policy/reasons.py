"""Reason codes of policy decisions: stable strings, the step that emits them, an article.

The codes are part of the public contract (logs, X-Road error details, reports);
never rename one. Articles are orientation for privacy officers, not legal advice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .vocabulary import Regime


class Step(StrEnum):
    """Steps of the ordered algorithm (policy-research §3.3)."""

    S0_INTEGRITY = "S0"
    S1_PARTIES = "S1"
    S2_ENVELOPE = "S2"
    S3_DATA_CLASS = "S3"
    S4_ROUTE = "S4"
    S5_AGREEMENT = "S5"
    S6_BASIS = "S6"
    S7_SUBJECT = "S7"
    S8_QUOTA = "S8"
    S9_PERMIT = "S9"


class Reason(StrEnum):
    """Every outcome the engine can produce; ``OK_*`` and ``NOT_PERSONAL_DATA`` allow."""

    # allow
    NOT_PERSONAL_DATA = "NOT_PERSONAL_DATA"
    OK_CONSENT = "OK_CONSENT"
    OK_STATUTE = "OK_STATUTE"
    OK_WITHIN_PURPOSE = "OK_WITHIN_PURPOSE"
    OK_PUBLIC_BODY = "OK_PUBLIC_BODY"
    OK_EXCEPTION = "OK_EXCEPTION"
    OK_RESEARCH = "OK_RESEARCH"
    OK_OPT_OUT = "OK_OPT_OUT"
    OK_ENTRUSTMENT = "OK_ENTRUSTMENT"
    OK_JOINT_USE = "OK_JOINT_USE"
    OK_ANONYMIZED = "OK_ANONYMIZED"
    # S0
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CLOCK_SKEW = "CLOCK_SKEW"
    # S1
    SERVICE_UNKNOWN = "SERVICE_UNKNOWN"
    SERVICE_INACTIVE = "SERVICE_INACTIVE"
    PARTY_UNKNOWN_MEMBER = "PARTY_UNKNOWN_MEMBER"
    PARTY_INACTIVE = "PARTY_INACTIVE"
    PARTY_LEGAL_TYPE_MISMATCH = "PARTY_LEGAL_TYPE_MISMATCH"
    # S2
    FIELD_UNKNOWN = "FIELD_UNKNOWN"
    MISSING_PURPOSE = "MISSING_PURPOSE"
    UNKNOWN_PURPOSE = "UNKNOWN_PURPOSE"
    MISSING_LEGAL_BASIS = "MISSING_LEGAL_BASIS"
    UNKNOWN_LEGAL_BASIS = "UNKNOWN_LEGAL_BASIS"
    BASIS_NOT_ALLOWED_FOR_PURPOSE = "BASIS_NOT_ALLOWED_FOR_PURPOSE"
    MISSING_ISSUE = "MISSING_ISSUE"
    MISSING_SUBJECT = "MISSING_SUBJECT"
    # S3
    MYNUMBER_BASIS = "MYNUMBER_BASIS"
    PSEUDONYMIZED_PROVISION = "PSEUDONYMIZED_PROVISION"
    OPTOUT_SPECIAL_CARE_FORBIDDEN = "OPTOUT_SPECIAL_CARE_FORBIDDEN"
    REIDENTIFICATION_RISK = "REIDENTIFICATION_RISK"
    BASIS_NOT_APPLICABLE = "BASIS_NOT_APPLICABLE"
    # S4
    RECIPIENT_NOT_ELIGIBLE = "RECIPIENT_NOT_ELIGIBLE"
    NO_EXCEPTION_PROFILE = "NO_EXCEPTION_PROFILE"
    EVIDENCE_REQUIRED = "EVIDENCE_REQUIRED"
    MISSING_DATA_PERIOD = "MISSING_DATA_PERIOD"
    LOOKBACK_EXCEEDED = "LOOKBACK_EXCEEDED"
    AD_HOC_ONLY = "AD_HOC_ONLY"
    CROSS_BORDER_NOT_PERMITTED = "CROSS_BORDER_NOT_PERMITTED"
    NO_ACTIVE_AGREEMENT = "NO_ACTIVE_AGREEMENT"
    AGREEMENT_PIN_REQUIRED = "AGREEMENT_PIN_REQUIRED"
    # S5
    CLIENT_NOT_IN_AGREEMENT = "CLIENT_NOT_IN_AGREEMENT"
    SUBSYSTEM_NOT_IN_AGREEMENT = "SUBSYSTEM_NOT_IN_AGREEMENT"
    SERVICE_NOT_IN_AGREEMENT = "SERVICE_NOT_IN_AGREEMENT"
    AGREEMENT_NOT_ACTIVE = "AGREEMENT_NOT_ACTIVE"
    AGREEMENT_VERSION_MISMATCH = "AGREEMENT_VERSION_MISMATCH"
    PURPOSE_NOT_IN_AGREEMENT = "PURPOSE_NOT_IN_AGREEMENT"
    BASIS_NOT_IN_AGREEMENT = "BASIS_NOT_IN_AGREEMENT"
    FIELD_NOT_PERMITTED = "FIELD_NOT_PERMITTED"
    PURPOSE_NOT_REGISTERED = "PURPOSE_NOT_REGISTERED"
    ANONYMIZED_NOT_PUBLISHED = "ANONYMIZED_NOT_PUBLISHED"
    JOINT_USE_NOT_ANNOUNCED = "JOINT_USE_NOT_ANNOUNCED"
    STATUTE_REF_MISSING = "STATUTE_REF_MISSING"
    PERSONALLY_REFERABLE_CONSENT_REQUIRED = "PERSONALLY_REFERABLE_CONSENT_REQUIRED"
    # S6
    CONSENT_MISSING = "CONSENT_MISSING"
    CONSENT_NOT_VALID = "CONSENT_NOT_VALID"
    CONSENT_SCOPE_MISMATCH = "CONSENT_SCOPE_MISMATCH"
    CONSENT_SPECIAL_CARE_NOT_EXPLICIT = "CONSENT_SPECIAL_CARE_NOT_EXPLICIT"
    CONSENT_FOREIGN_TRANSFER_MISSING = "CONSENT_FOREIGN_TRANSFER_MISSING"
    CONSENT_NOTICE_OUTDATED = "CONSENT_NOTICE_OUTDATED"
    CONSENT_STATUS_STALE = "CONSENT_STATUS_STALE"
    OPTOUT_NOT_FILED = "OPTOUT_NOT_FILED"
    OPTOUT_SOURCE_OPTOUT = "OPTOUT_SOURCE_OPTOUT"
    # S7
    STOP_REQUESTED = "STOP_REQUESTED"
    # S8
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    USAGE_UNAVAILABLE = "USAGE_UNAVAILABLE"

    @property
    def allows(self) -> bool:
        return self is Reason.NOT_PERSONAL_DATA or self.value.startswith("OK_")


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    """Documentation of a reason code: the step that usually emits it and its legal anchor."""

    step: Step
    """Typical step; a decision reports the step the refusal actually happened in."""
    summary: str
    article_private: str | None = None
    article_public: str | None = None
    basis_article: bool = False
    """True if the basis in use gives the article (e.g. EVIDENCE_REQUIRED for 27(1)(ii))."""

    def article(self, regime: Regime | None) -> str | None:
        if regime is Regime.PUBLIC and self.article_public is not None:
            return self.article_public
        return self.article_private


def _i(
    step: Step,
    summary: str,
    private: str | None = None,
    public: str | None = None,
    *,
    basis: bool = False,
) -> ReasonInfo:
    return ReasonInfo(step, summary, private, public if public is not None else private, basis)


S = Step
_DSA = ("APPI Art. 27(1)", "APPI Arts. 69–70")
_NO_OPT_OUT = "APPI Art. 69 (no opt-out route for public bodies)"
_PUBLIC_ANON = "APPI Arts. 109 ff. (行政機関等匿名加工情報; verify)"
# Public-body articles of Ch. 5 (Arts. 61-73, 76, 98, 109 ff.) are from recall of the
# post-2021 numbering: docs/policy.md lists them for counsel to confirm.
REASONS: dict[Reason, ReasonInfo] = {
    Reason.NOT_PERSONAL_DATA: _i(
        S.S3_DATA_CLASS, "no personal data requested; access rights decide"
    ),
    Reason.OK_CONSENT: _i(S.S9_PERMIT, "allowed on the individual's consent", basis=True),
    Reason.OK_STATUTE: _i(S.S9_PERMIT, "allowed as provision based on laws", basis=True),
    Reason.OK_WITHIN_PURPOSE: _i(S.S9_PERMIT, "allowed within the specified purpose", basis=True),
    Reason.OK_PUBLIC_BODY: _i(S.S9_PERMIT, "allowed between public bodies", basis=True),
    Reason.OK_EXCEPTION: _i(S.S9_PERMIT, "allowed under an exception profile", basis=True),
    Reason.OK_RESEARCH: _i(S.S9_PERMIT, "allowed for academic research", basis=True),
    Reason.OK_OPT_OUT: _i(S.S9_PERMIT, "allowed by opt-out provision", basis=True),
    Reason.OK_ENTRUSTMENT: _i(S.S9_PERMIT, "allowed to an entrusted processor", basis=True),
    Reason.OK_JOINT_USE: _i(S.S9_PERMIT, "allowed as announced joint use", basis=True),
    Reason.OK_ANONYMIZED: _i(S.S9_PERMIT, "allowed: published anonymized information", basis=True),
    Reason.SYSTEM_ERROR: _i(
        S.S0_INTEGRITY, "policy unavailable or evaluation failed (fail closed)"
    ),
    Reason.CLOCK_SKEW: _i(S.S0_INTEGRITY, "request time too far from the node's clock"),
    Reason.SERVICE_UNKNOWN: _i(
        S.S1_PARTIES,
        "service not classified in the policy registry",
        "APPI Art. 17(1)",
        "APPI Arts. 61, 75",
    ),
    Reason.SERVICE_INACTIVE: _i(S.S1_PARTIES, "service is not active"),
    Reason.PARTY_UNKNOWN_MEMBER: _i(
        S.S1_PARTIES, "member not in the policy registry", "APPI Art. 30(1)", "APPI Arts. 69, 70"
    ),
    Reason.PARTY_INACTIVE: _i(S.S1_PARTIES, "member is not active"),
    Reason.PARTY_LEGAL_TYPE_MISMATCH: _i(
        S.S1_PARTIES, "declared legal type differs from the registry"
    ),
    Reason.FIELD_UNKNOWN: _i(S.S2_ENVELOPE, "requested field not declared by the service"),
    Reason.MISSING_PURPOSE: _i(
        S.S2_ENVELOPE,
        "personal data requested without a purpose code",
        "APPI Arts. 17(1), 18(1)",
        "APPI Arts. 61(1), 69(1)",
    ),
    Reason.UNKNOWN_PURPOSE: _i(
        S.S2_ENVELOPE,
        "purpose code not in the closed list",
        "APPI Arts. 17(1), 18(1)",
        "APPI Arts. 61(1), 69(1)",
    ),
    Reason.MISSING_LEGAL_BASIS: _i(
        S.S2_ENVELOPE,
        "personal data requested without a basis code",
        "APPI Art. 27(1)",
        "APPI Art. 69",
    ),
    Reason.UNKNOWN_LEGAL_BASIS: _i(
        S.S2_ENVELOPE, "basis code not in the closed APPI list", "APPI Art. 27(1)", "APPI Art. 69"
    ),
    Reason.BASIS_NOT_ALLOWED_FOR_PURPOSE: _i(
        S.S2_ENVELOPE, "the purpose code does not admit this basis", "APPI Art. 18", "APPI Art. 69"
    ),
    Reason.MISSING_ISSUE: _i(
        S.S2_ENVELOPE,
        "personal data requested without a case reference (X-Road-Issue)",
        "APPI Art. 29(1)",
        "APPI Art. 69(2)",
    ),
    Reason.MISSING_SUBJECT: _i(
        S.S2_ENVELOPE,
        "no data-subject reference for a per-person service",
        "APPI Arts. 29(1), 33(5)",
        "APPI Arts. 69, 76",
    ),
    Reason.MYNUMBER_BASIS: _i(
        S.S3_DATA_CLASS,
        "My Number data needs a My Number Act Art. 19 basis; consent does not suffice",
        "My Number Act Art. 19",
    ),
    Reason.PSEUDONYMIZED_PROVISION: _i(
        S.S3_DATA_CLASS,
        "pseudonymized data may leave only by law, entrustment or joint use",
        "APPI Arts. 41(6), 42",
        "APPI Art. 73",
    ),
    Reason.OPTOUT_SPECIAL_CARE_FORBIDDEN: _i(
        S.S3_DATA_CLASS,
        "special-care data cannot be provided by opt-out",
        "APPI Art. 27(2) proviso",
        _NO_OPT_OUT,
    ),
    Reason.REIDENTIFICATION_RISK: _i(
        S.S3_DATA_CLASS,
        "linkage keys requested with anonymized data",
        "APPI Arts. 43(1), 45",
        _PUBLIC_ANON,
    ),
    Reason.BASIS_NOT_APPLICABLE: _i(
        S.S3_DATA_CLASS, "the basis does not exist for this provider or data", basis=True
    ),
    Reason.RECIPIENT_NOT_ELIGIBLE: _i(
        S.S4_ROUTE, "the recipient's legal type is not eligible for this basis", basis=True
    ),
    Reason.NO_EXCEPTION_PROFILE: _i(
        S.S4_ROUTE, "the service has no exception profile for this reason", basis=True
    ),
    Reason.EVIDENCE_REQUIRED: _i(S.S4_ROUTE, "required evidence missing or incomplete", basis=True),
    Reason.MISSING_DATA_PERIOD: _i(
        S.S4_ROUTE,
        "the exception profile limits look-back; the "
        "request must state the start of the data period",
        basis=True,
    ),
    Reason.LOOKBACK_EXCEEDED: _i(S.S4_ROUTE, "data older than the profile's look-back", basis=True),
    Reason.AD_HOC_ONLY: _i(
        S.S4_ROUTE,
        "basis allowed only for ad hoc provision; recurring flows "
        "must be within the specified purpose",
        "APPI Art. 69(2)",
        "APPI Arts. 61, 69(2) (PPC: ad hoc only)",
    ),
    Reason.CROSS_BORDER_NOT_PERMITTED: _i(
        S.S5_AGREEMENT, "recipient country not permitted", "APPI Art. 28", "APPI Art. 71"
    ),
    Reason.NO_ACTIVE_AGREEMENT: _i(
        S.S4_ROUTE, "no data-sharing agreement covers this service", *_DSA
    ),
    Reason.AGREEMENT_PIN_REQUIRED: _i(
        S.S4_ROUTE, "the node requires the request to name its agreement (settings)", *_DSA
    ),
    Reason.CLIENT_NOT_IN_AGREEMENT: _i(S.S5_AGREEMENT, "client member not a party", *_DSA),
    Reason.SUBSYSTEM_NOT_IN_AGREEMENT: _i(S.S5_AGREEMENT, "client subsystem not a party", *_DSA),
    Reason.SERVICE_NOT_IN_AGREEMENT: _i(
        S.S5_AGREEMENT, "agreement does not cover the service", *_DSA
    ),
    Reason.AGREEMENT_NOT_ACTIVE: _i(
        S.S5_AGREEMENT, "agreement not active or outside its validity", *_DSA
    ),
    Reason.AGREEMENT_VERSION_MISMATCH: _i(
        S.S5_AGREEMENT, "pinned agreement version is not the current one", *_DSA
    ),
    Reason.PURPOSE_NOT_IN_AGREEMENT: _i(
        S.S5_AGREEMENT,
        "purpose not permitted by the agreement",
        "APPI Art. 18(1)",
        "APPI Art. 69(1)",
    ),
    Reason.BASIS_NOT_IN_AGREEMENT: _i(
        S.S5_AGREEMENT, "basis not allowed by the agreement", basis=True
    ),
    Reason.FIELD_NOT_PERMITTED: _i(
        S.S5_AGREEMENT,
        "field outside the permitted data items",
        "APPI Art. 27(1) (agreed items)",
        "APPI Arts. 61(2), 69",
    ),
    Reason.PURPOSE_NOT_REGISTERED: _i(
        S.S5_AGREEMENT,
        "purpose not registered for the service",
        "APPI Art. 17",
        "APPI Arts. 61, 69(1)",
    ),
    Reason.ANONYMIZED_NOT_PUBLISHED: _i(
        S.S5_AGREEMENT,
        "anonymized provision needs a published items/method notice",
        "APPI Art. 44",
        _PUBLIC_ANON,
    ),
    Reason.JOINT_USE_NOT_ANNOUNCED: _i(
        S.S5_AGREEMENT,
        "joint use needs an announced notice",
        "APPI Art. 27(5)(iii)",
        "APPI Art. 69 (no joint-use route for public bodies)",
    ),
    Reason.STATUTE_REF_MISSING: _i(
        S.S5_AGREEMENT, "law-based provision must cite the statute", basis=True
    ),
    Reason.PERSONALLY_REFERABLE_CONSENT_REQUIRED: _i(
        S.S5_AGREEMENT,
        "recipient links personally referable data to a person: consent needed",
        "APPI Art. 31(1)",
        "APPI Art. 72",
    ),
    Reason.CONSENT_MISSING: _i(S.S6_BASIS, "no consent record referenced or found", basis=True),
    Reason.CONSENT_NOT_VALID: _i(S.S6_BASIS, "consent withdrawn, expired or not given", basis=True),
    Reason.CONSENT_SCOPE_MISMATCH: _i(
        S.S6_BASIS, "consent does not cover this subject, recipient, purpose or data", basis=True
    ),
    Reason.CONSENT_SPECIAL_CARE_NOT_EXPLICIT: _i(
        S.S6_BASIS,
        "special-care data needs explicit consent",
        "APPI Arts. 20(2), 27(1)",
        "APPI Art. 69(2)(i)",
    ),
    Reason.CONSENT_FOREIGN_TRANSFER_MISSING: _i(
        S.S6_BASIS,
        "foreign recipient: consent lacks informed foreign-transfer consent",
        "APPI Art. 28(1)–(2)",
        "APPI Art. 71",
    ),
    Reason.CONSENT_NOTICE_OUTDATED: _i(
        S.S6_BASIS,
        "consent given under an older notice than the agreement requires",
        "APPI Art. 21; ISO/IEC 29184 §5.5",
        "APPI Art. 62; ISO/IEC 29184 §5.5",
    ),
    Reason.CONSENT_STATUS_STALE: _i(
        S.S6_BASIS, "consent status not re-checked recently enough", basis=True
    ),
    Reason.OPTOUT_NOT_FILED: _i(
        S.S6_BASIS, "provider has no PPC opt-out filing", "APPI Art. 27(2)", _NO_OPT_OUT
    ),
    Reason.OPTOUT_SOURCE_OPTOUT: _i(
        S.S6_BASIS,
        "data received by opt-out cannot be passed on by opt-out",
        "APPI Art. 27(2) proviso",
        _NO_OPT_OUT,
    ),
    Reason.STOP_REQUESTED: _i(
        S.S7_SUBJECT,
        "the individual asked to stop this provision",
        "APPI Arts. 27(2), 35",
        "APPI Art. 98",
    ),
    Reason.QUOTA_EXCEEDED: _i(S.S8_QUOTA, "agreement quota exhausted"),
    Reason.USAGE_UNAVAILABLE: _i(
        S.S8_QUOTA,
        "agreement quotas or the recurrence rule need usage counters or provision history "
        "that were not supplied (fail closed)",
    ),
}
