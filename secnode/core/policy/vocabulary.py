"""The closed vocabulary of the policy engine: types, classes, states and legal-basis codes.

Everything a policy file or a request may name is listed here (or, for ordinance
bases, declared in the policy document). Anything else is refused: an engine
that silently ignores an unknown term fails open.

Why one module of this size: the vocabulary is closed on purpose, and a closed
list is only checkable when it is in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class LegalType(StrEnum):
    """Legal type of a member; decides which APPI chapter governs it (research §3.1)."""

    PUBLIC_BODY = "PUBLIC_BODY"
    """行政機関等: local governments and state bodies (APPI Ch. 5, Art. 61 ff.)."""
    BUSINESS = "BUSINESS"
    """個人情報取扱事業者 (APPI Ch. 4, Arts. 17–46)."""
    ACADEMIC = "ACADEMIC"
    """Academic research institution (APPI Art. 16(8); Art. 27(1)(v)–(vii))."""
    INVESTIGATIVE_AGENCY = "INVESTIGATIVE_AGENCY"
    """Police and prosecutors; public bodies for the Art. 69 rules."""


PUBLIC_TYPES = frozenset({LegalType.PUBLIC_BODY, LegalType.INVESTIGATIVE_AGENCY})


class Regime(StrEnum):
    """Which APPI chapter a provider falls under."""

    PRIVATE = "PRIVATE"
    PUBLIC = "PUBLIC"


def regime_of(legal_type: LegalType) -> Regime:
    """Chapter 5 for public bodies (incl. police), Chapter 4 for everyone else."""
    return Regime.PUBLIC if legal_type in PUBLIC_TYPES else Regime.PRIVATE


class DataClass(StrEnum):
    """Classification of a service field (research §3.1 ``Service.fields``)."""

    NON_PERSONAL = "NON_PERSONAL"
    PERSONAL = "PERSONAL"
    SPECIAL_CARE = "SPECIAL_CARE"
    """要配慮個人情報 (Art. 2(3)): never by opt-out; consent must be explicit."""
    MYNUMBER = "MYNUMBER"
    """特定個人情報: only in the cases of My Number Act Art. 19; consent is not enough."""
    PSEUDONYMIZED = "PSEUDONYMIZED"
    """仮名加工情報 (Arts. 41–42): leaves only by law, entrustment or joint use."""
    ANONYMIZED = "ANONYMIZED"
    """匿名加工情報 (Arts. 43–46): provision needs published items and method."""
    PERSONALLY_REFERABLE = "PERSONALLY_REFERABLE"
    """個人関連情報 (Art. 31): consent needed if the recipient links it to a person."""


PERSONAL_CLASSES = frozenset(DataClass) - {DataClass.NON_PERSONAL}


class Status(StrEnum):
    """Registry status of a member or service."""

    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    REMOVED = "REMOVED"


class AgreementState(StrEnum):
    """Lifecycle of a data-sharing agreement; only ACTIVE agreements authorise anything."""

    DRAFT = "DRAFT"
    AGREED = "AGREED"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    TERMINATED = "TERMINATED"


class AgreementType(StrEnum):
    """Provision to a third party, or one of the Art. 27(5) "not a third party" forms."""

    PROVISION = "PROVISION"
    JOINT_USE = "JOINT_USE"
    ENTRUSTMENT = "ENTRUSTMENT"


class ConsentStatus(StrEnum):
    """DPV 2.1 consent status values, verbatim (research §2)."""

    ConsentRequested = "ConsentRequested"
    ConsentGiven = "ConsentGiven"
    RenewedConsentGiven = "RenewedConsentGiven"
    ConsentRefused = "ConsentRefused"
    ConsentWithdrawn = "ConsentWithdrawn"
    ConsentRevoked = "ConsentRevoked"
    ConsentExpired = "ConsentExpired"
    ConsentInvalidated = "ConsentInvalidated"


VALID_CONSENT_STATUSES = frozenset({ConsentStatus.ConsentGiven, ConsentStatus.RenewedConsentGiven})
"""DPV's "valid for processing" group; every other status denies."""


class CollectionMethod(StrEnum):
    """How a consent was collected (Kantara ``collectionMethod``)."""

    WRITTEN = "WRITTEN"
    ELECTRONIC = "ELECTRONIC"
    ORAL_RECORDED = "ORAL_RECORDED"
    IN_PERSON = "IN_PERSON"


class StopScope(StrEnum):
    """What a stop (opt-out) request covers (Art. 27(2), Art. 35)."""

    ALL = "ALL"
    RECIPIENT = "RECIPIENT"
    PURPOSE = "PURPOSE"


class Route(StrEnum):
    """How a basis is established: per-subject consent, an agreement, or an exception profile."""

    CONSENT = "CONSENT"
    AGREEMENT = "AGREEMENT"
    EXCEPTION = "EXCEPTION"


class Category(StrEnum):
    """Reason families used in reports (Kakogawa: provision counts by reason)."""

    CONSENT = "CONSENT"
    LAW = "LAW"
    WITHIN_PURPOSE = "WITHIN_PURPOSE"
    LIFE_BODY_PROPERTY = "LIFE_BODY_PROPERTY"
    PUBLIC_HEALTH_CHILDREN = "PUBLIC_HEALTH_CHILDREN"
    STATE_COOPERATION = "STATE_COOPERATION"
    PUBLIC_BODY_LEGAL_AFFAIRS = "PUBLIC_BODY_LEGAL_AFFAIRS"
    INTERNAL_USE = "INTERNAL_USE"
    ACADEMIC_RESEARCH = "ACADEMIC_RESEARCH"
    OPT_OUT = "OPT_OUT"
    ENTRUSTMENT = "ENTRUSTMENT"
    JOINT_USE = "JOINT_USE"
    ANONYMIZED_PROVISION = "ANONYMIZED_PROVISION"
    MY_NUMBER_ACT = "MY_NUMBER_ACT"
    CRIMINAL_INVESTIGATION = "CRIMINAL_INVESTIGATION"
    MISSING_PERSON = "MISSING_PERSON"
    DISASTER = "DISASTER"
    OTHER_ORDINANCE = "OTHER_ORDINANCE"


class OrdinanceKind(StrEnum):
    """Kinds of reason an ordinance exception may name (Kakogawa / Takarazuka patterns)."""

    LAW = "LAW"
    EMERGENCY = "EMERGENCY"
    CRIMINAL_INVESTIGATION = "CRIMINAL_INVESTIGATION"
    MISSING_PERSON = "MISSING_PERSON"
    DISASTER = "DISASTER"
    PUBLIC_HEALTH_CHILDREN = "PUBLIC_HEALTH_CHILDREN"
    OTHER = "OTHER"


ORDINANCE_CATEGORY = {
    OrdinanceKind.LAW: Category.LAW,
    OrdinanceKind.EMERGENCY: Category.LIFE_BODY_PROPERTY,
    OrdinanceKind.CRIMINAL_INVESTIGATION: Category.CRIMINAL_INVESTIGATION,
    OrdinanceKind.MISSING_PERSON: Category.MISSING_PERSON,
    OrdinanceKind.DISASTER: Category.DISASTER,
    OrdinanceKind.PUBLIC_HEALTH_CHILDREN: Category.PUBLIC_HEALTH_CHILDREN,
    OrdinanceKind.OTHER: Category.OTHER_ORDINANCE,
}

CATEGORY_LABELS: dict[Category, tuple[str, str]] = {
    Category.CONSENT: ("本人同意", "Consent of the individual"),
    Category.LAW: ("法令に基づく", "Based on laws and regulations"),
    Category.WITHIN_PURPOSE: ("利用目的の範囲内", "Within the specified purpose"),
    Category.LIFE_BODY_PROPERTY: (
        "生命・身体・財産の保護、緊急",
        "Life, body or property; emergency",
    ),
    Category.PUBLIC_HEALTH_CHILDREN: ("公衆衛生・児童の健全育成", "Public health / children"),
    Category.STATE_COOPERATION: ("国の機関等への協力", "Cooperation with public bodies"),
    Category.PUBLIC_BODY_LEGAL_AFFAIRS: (
        "他の行政機関等の法令事務",
        "Another public body's legally prescribed affairs",
    ),
    Category.INTERNAL_USE: ("内部利用", "Internal use"),
    Category.ACADEMIC_RESEARCH: ("学術研究・統計", "Academic research / statistics"),
    Category.OPT_OUT: ("オプトアウト", "Opt-out"),
    Category.ENTRUSTMENT: ("委託", "Entrustment"),
    Category.JOINT_USE: ("共同利用", "Joint use"),
    Category.ANONYMIZED_PROVISION: ("匿名加工情報の提供", "Anonymized information"),
    Category.MY_NUMBER_ACT: ("番号法に基づく", "My Number Act"),
    Category.CRIMINAL_INVESTIGATION: (
        "捜査機関からの犯罪捜査のための要請",
        "Criminal investigation on request",
    ),
    Category.MISSING_PERSON: ("行方不明者の捜索", "Missing-person search"),
    Category.DISASTER: ("災害対応", "Disaster response"),
    Category.OTHER_ORDINANCE: ("条例に定める理由", "Reason set by ordinance"),
}


@dataclass(frozen=True, slots=True)
class LegalBasis:
    """One entry of the closed legal-basis list, with what the engine must check for it."""

    code: str
    category: Category
    route: Route
    regimes: frozenset[Regime]
    """Provider regimes the basis exists in (Art. 27 codes: Ch. 4 only; Art. 69: Ch. 5 only)."""
    article_private: str
    article_public: str
    label_ja: str
    label_en: str
    dpv: str
    ad_hoc_only: bool = False
    """PPC: Art. 69(2) is for ad hoc provision; recurring flows must be within the purpose."""
    attestation: bool = False
    """27(1)(ii)–(iv): the requester must attest that consent is difficult or would impede."""
    recipient_types: frozenset[LegalType] = frozenset()
    """Eligible recipient legal types; empty means any."""
    provider_types: frozenset[LegalType] = frozenset()
    """Eligible provider legal types; empty means any (within ``regimes``)."""
    art29_record: bool = False
    """Art. 29 applies (a provision record is legally required, not only kept for audit)."""
    art28_exempt: bool = False
    """Art. 28(1) does not require foreign-transfer consent in Art. 27(1) cases."""
    rests_on: str | None = None
    """For an ordinance basis: the APPI basis code the provision rests on (Art. 69)."""
    condition: str | None = None
    """For an ordinance basis: the ordinance condition added on top (ordinance and article)."""

    def article(self, regime: Regime) -> str:
        return self.article_public if regime is Regime.PUBLIC else self.article_private


_PRIV = frozenset({Regime.PRIVATE})
_PUB = frozenset({Regime.PUBLIC})
_ANY = frozenset(Regime)
_PUBLIC_RECIPIENTS = frozenset(PUBLIC_TYPES)


def _b(
    code: str,
    category: Category,
    route: Route,
    regimes: frozenset[Regime],
    article: str | tuple[str, str],
    ja: str,
    en: str,
    dpv: str,
    *,
    ad_hoc_only: bool = False,
    attestation: bool = False,
    recipient_types: frozenset[LegalType] = frozenset(),
    provider_types: frozenset[LegalType] = frozenset(),
    art29_record: bool = False,
    art28_exempt: bool = False,
) -> LegalBasis:
    private, public = (article, article) if isinstance(article, str) else article
    return LegalBasis(
        code,
        category,
        route,
        regimes,
        private,
        public,
        ja,
        en,
        dpv,
        ad_hoc_only=ad_hoc_only,
        attestation=attestation,
        recipient_types=recipient_types,
        provider_types=provider_types,
        art29_record=art29_record,
        art28_exempt=art28_exempt,
    )


_BASES: tuple[LegalBasis, ...] = (
    _b(
        "CONSENT",
        Category.CONSENT,
        Route.CONSENT,
        _ANY,
        ("APPI Art. 27(1)", "APPI Art. 69(2)(i)"),
        "本人同意",
        "Consent of the individual",
        "dpv:Consent",
        art29_record=True,
    ),
    _b(
        "APPI27-1-1",
        Category.LAW,
        Route.AGREEMENT,
        _PRIV,
        "APPI Art. 27(1)(i)",
        "法令に基づく場合",
        "Based on laws and regulations",
        "dpv:LegalObligation",
        art28_exempt=True,
    ),
    _b(
        "APPI27-1-2",
        Category.LIFE_BODY_PROPERTY,
        Route.EXCEPTION,
        _PRIV,
        "APPI Art. 27(1)(ii)",
        "人の生命・身体・財産の保護に必要で本人同意が困難",
        "Protection of life, body or property",
        "dpv:VitalInterest",
        attestation=True,
        art28_exempt=True,
    ),
    _b(
        "APPI27-1-3",
        Category.PUBLIC_HEALTH_CHILDREN,
        Route.EXCEPTION,
        _PRIV,
        "APPI Art. 27(1)(iii)",
        "公衆衛生・児童の健全育成に特に必要で本人同意が困難",
        "Public health or children's sound development",
        "dpv:PublicInterest",
        attestation=True,
        art28_exempt=True,
    ),
    _b(
        "APPI27-1-4",
        Category.STATE_COOPERATION,
        Route.EXCEPTION,
        _PRIV,
        "APPI Art. 27(1)(iv)",
        "国の機関等の法令事務への協力",
        "Cooperation with a public body's legal affairs",
        "dpv:PublicInterest",
        attestation=True,
        recipient_types=_PUBLIC_RECIPIENTS,
        art28_exempt=True,
    ),
    _b(
        "APPI27-1-5",
        Category.ACADEMIC_RESEARCH,
        Route.AGREEMENT,
        _PRIV,
        "APPI Art. 27(1)(v)",
        "学術研究機関等による学術研究成果の公表・教授",
        "Academic publication or teaching",
        "dpv:ResearchAndDevelopment",
        provider_types=frozenset({LegalType.ACADEMIC}),
        art28_exempt=True,
    ),
    _b(
        "APPI27-1-6",
        Category.ACADEMIC_RESEARCH,
        Route.AGREEMENT,
        _PRIV,
        "APPI Art. 27(1)(vi)",
        "学術研究機関等による共同研究",
        "Joint academic research",
        "dpv:ResearchAndDevelopment",
        provider_types=frozenset({LegalType.ACADEMIC}),
        art28_exempt=True,
    ),
    _b(
        "APPI27-1-7",
        Category.ACADEMIC_RESEARCH,
        Route.AGREEMENT,
        _PRIV,
        "APPI Art. 27(1)(vii)",
        "学術研究機関等への提供",
        "Provision to an academic research institution",
        "dpv:ResearchAndDevelopment",
        recipient_types=frozenset({LegalType.ACADEMIC}),
        art28_exempt=True,
    ),
    _b(
        "APPI27-2",
        Category.OPT_OUT,
        Route.AGREEMENT,
        _PRIV,
        "APPI Art. 27(2)",
        "オプトアウトによる提供",
        "Opt-out provision",
        "dpv:LegalBasis",
        art29_record=True,
    ),  # DPV has no opt-out basis; LegitimateInterest is deliberately not used
    _b(
        "APPI27-5-1",
        Category.ENTRUSTMENT,
        Route.AGREEMENT,
        _PRIV,
        "APPI Art. 27(5)(i)",
        "委託",
        "Entrustment",
        "dpv:Contract",
    ),
    _b(
        "APPI27-5-3",
        Category.JOINT_USE,
        Route.AGREEMENT,
        _PRIV,
        "APPI Art. 27(5)(iii)",
        "共同利用",
        "Joint use",
        "dpv:Contract",
    ),
    _b(
        "APPI43-44",
        Category.ANONYMIZED_PROVISION,
        Route.AGREEMENT,
        _ANY,
        ("APPI Arts. 43–44", "APPI Arts. 109 ff. (行政機関等匿名加工情報; verify)"),
        "匿名加工情報の提供",
        "Provision of anonymized information",
        "dpv:PublicInterest",
    ),
    _b(
        "APPI69-1-PURPOSE",
        Category.WITHIN_PURPOSE,
        Route.AGREEMENT,
        _PUB,
        "APPI Art. 69(1); Art. 61",
        "利用目的の範囲内の提供",
        "Within the specified purpose",
        "dpv:OfficialAuthorityOfController",
    ),
    _b(
        "APPI69-1-LAW",
        Category.LAW,
        Route.AGREEMENT,
        _PUB,
        "APPI Art. 69(1)",
        "法令に基づく場合",
        "Based on laws and regulations",
        "dpv:LegalObligation",
        art28_exempt=True,
    ),
    _b(
        "APPI69-2-1",
        Category.CONSENT,
        Route.CONSENT,
        _PUB,
        "APPI Art. 69(2)(i)",
        "本人同意・本人への提供",
        "Consent (ad hoc)",
        "dpv:Consent",
        ad_hoc_only=True,
    ),
    _b(
        "APPI69-2-2",
        Category.INTERNAL_USE,
        Route.AGREEMENT,
        _PUB,
        "APPI Art. 69(2)(ii)",
        "内部利用 (相当な理由)",
        "Internal use with reasonable grounds",
        "dpv:OfficialAuthorityOfController",
        ad_hoc_only=True,
    ),
    _b(
        "APPI69-2-3",
        Category.PUBLIC_BODY_LEGAL_AFFAIRS,
        Route.AGREEMENT,
        _PUB,
        "APPI Art. 69(2)(iii)",
        "他の行政機関等の法令事務 (相当な理由)",
        "Another public body's legally prescribed affairs",
        "dpv:OfficialAuthorityOfController",
        ad_hoc_only=True,
        recipient_types=_PUBLIC_RECIPIENTS,
    ),
    _b(
        "APPI69-2-4",
        Category.ACADEMIC_RESEARCH,
        Route.EXCEPTION,
        _PUB,
        "APPI Art. 69(2)(iv)",
        "統計・学術研究・本人の利益・特別の理由",
        "Statistics, research or special reasons",
        "dpv:PublicInterest",
        ad_hoc_only=True,
    ),
)
BASES: dict[str, LegalBasis] = {b.code: b for b in _BASES}

MYNUMBER_ITEMS = range(1, 18)
"""番号法 Art. 19 items 1–17 (item count as of the 2023 amendment: verify before relying)."""
_MYNUMBER = re.compile(r"^MYNUMBER19-(\d{1,2})$")
ORDINANCE_CODE = re.compile(r"^ORD-[A-Z0-9]+(?:-[A-Z0-9]+)*$")
PURPOSE_CODE = re.compile(
    r"^[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*(?::[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*)?$"
)
"""Purpose codes (``JP-CITY:WELFARE-ELIGIBILITY``, ``child-allowance``); case matters."""
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")

FORBIDDEN_BASES = frozenset({"LEGITIMATE_INTEREST", "LEGITIMATE_INTERESTS"})
"""GDPR terms with no APPI counterpart; named so the error says why, not just "unknown"."""


def mynumber_basis(code: str) -> LegalBasis | None:
    """The ``MYNUMBER19-<item>`` family: provision of 特定個人情報 under My Number Act Art. 19."""
    match = _MYNUMBER.match(code)
    if match is None or int(match.group(1)) not in MYNUMBER_ITEMS:
        return None
    item = int(match.group(1))
    return LegalBasis(
        code,
        Category.MY_NUMBER_ACT,
        Route.AGREEMENT,
        _ANY,
        f"My Number Act Art. 19({item})",
        f"My Number Act Art. 19({item})",
        f"番号法19条{item}号",
        f"My Number Act Art. 19 item {item}",
        "dpv:LegalObligation",
        art28_exempt=True,
    )


def builtin_basis(code: str) -> LegalBasis | None:
    """Look up a built-in basis code (ordinance codes are declared per policy document)."""
    return BASES.get(code) or mynumber_basis(code)


PSEUDONYMIZED_BASES = frozenset({"APPI27-1-1", "APPI69-1-LAW", "APPI27-5-1", "APPI27-5-3"})
"""Arts. 41(6)/42 (public bodies: Art. 73, verify): pseudonymized data leaves only by law,
entrustment or joint use."""

ORDINANCE_APPI_BASES = frozenset(
    {"APPI69-1-LAW", "APPI69-1-PURPOSE", "APPI69-2-2", "APPI69-2-3", "APPI69-2-4"}
)
"""APPI bases an ordinance reason may rest on (since 2023 a city provides under Art. 69; the
ordinance only adds conditions). Consent (69(2)(i)) is not one: an exception needs no consent."""

DESIGNATED_COUNTRIES = frozenset(
    {
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
        "GB",
    }
)
"""Countries designated under Art. 28(1) (EU/EEA and the UK): no foreign-transfer consent."""

EVIDENCE_KEYS = frozenset(
    {
        "doc_type",
        "doc_no",
        "statute",
        "officer",
        "issued_at",
        "offence",
        "warrant_no",
        "consent_difficulty",
        "ref",
    }
)
"""Keys an exception profile may require in the request's evidence (Takarazuka pattern)."""

DPV_PURPOSES = frozenset(
    {
        "dpv:ServiceProvision",
        "dpv:LegalCompliance",
        "dpv:EnforceSecurity",
        "dpv:ResearchAndDevelopment",
        "dpv:PublicBenefit",
        "dpv:Marketing",
        "dpv:Advertising",
        "dpv:VitalInterest",
        "dpv:CommunicationManagement",
        "dpv:FraudPreventionAndDetection",
        "dpv:IdentityVerification",
        "dpv:PersonalisedBenefits",
        "dpv:CustomerManagement",
        "dpv:HumanResourceManagement",
        "dpv:OrganisationGovernance",
        "dpv:RecordManagement",
        "dpv:Personalisation",
        "dpv:SafetyAndSecurity",
    }
)
"""DPV 2.1 purposes a local purpose code may map to (a subset; extend deliberately)."""
