"""Policy entities (registry data) and the immutable snapshot the decision function reads.

Shapes follow policy-research §3.1: ODRL-shaped agreements, Kantara / ISO 27560
shaped consent records with DPV statuses, Kakogawa-style exception profiles. The
node stores these in its database and builds a :class:`PolicySnapshot` per
decision (or per policy change); files are only the import/export form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import TypeVar

from ..identifiers import ClientId, MemberId, ServiceId, SubsystemId
from .timeutil import IsoDuration
from .vocabulary import (
    ORDINANCE_CATEGORY,
    AgreementState,
    AgreementType,
    CollectionMethod,
    ConsentStatus,
    DataClass,
    LegalBasis,
    LegalType,
    OrdinanceKind,
    Regime,
    Route,
    Status,
    StopScope,
    builtin_basis,
)


@dataclass(frozen=True, slots=True)
class Member:
    """A member organisation; Art. 30 confirmation items (name, address, representative)."""

    id: MemberId
    legal_type: LegalType
    name: str
    country: str = "JP"
    """Where the member processes data; used as the recipient country by default."""
    status: Status = Status.ACTIVE
    address: str | None = None
    representative: str | None = None
    ppc_optout_filing_id: str | None = None
    """PPC filing for Art. 27(2) opt-out provision; without it opt-out is refused."""
    units: tuple[tuple[str, str], ...] = ()
    """Display names of the member's subsystems as the city publishes them, ``(code, name)``:
    e.g. a prefectural police member's stations (the transparency report's recipient units)."""


@dataclass(frozen=True, slots=True)
class ServiceField:
    """One data item of a service and its classification."""

    name: str
    data_class: DataClass
    linkage_key: bool = False
    """A key that could re-identify anonymized records (never released with them)."""


@dataclass(frozen=True, slots=True)
class Service:
    """A provider service with its field classification and registered purposes (Art. 17/61)."""

    id: ServiceId
    fields: tuple[ServiceField, ...] = ()
    """Declared fields; when empty the service is classified as a whole by ``data_classes``."""
    data_classes: frozenset[DataClass] = frozenset()
    """Whole-service classification, only for services that do not declare fields."""
    registered_purposes: tuple[str, ...] = ()
    status: Status = Status.ACTIVE
    subject_required: bool = True
    """Requests must name the data subject (per-person data; Art. 29 records, Art. 33(5))."""
    exception_profiles: tuple[str, ...] = ()
    acquisition_circumstances: str | None = None
    """取得の経緯, copied into the recipient's Art. 30 record."""
    acquired_via_opt_out: bool = False
    """Data itself received by opt-out cannot be provided by opt-out again (Art. 27(2))."""
    personal_info_file_ref: str | None = None
    """個人情報ファイル簿 entry (Art. 75) for public bodies."""
    title: str | None = None
    provider: MemberId = field(init=False, repr=False, compare=False)
    """The provider member (derived from ``id``; cached because every check needs it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider", self.id.member)

    @property
    def declares_fields(self) -> bool:
        return bool(self.fields)

    def field(self, name: str) -> ServiceField | None:
        for item in self.fields:
            if item.name == name:
                return item
        return None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def classes_of(self, names: Iterable[str] | None) -> frozenset[DataClass]:
        """Classes touched by a request for ``names`` (None: every field of the service)."""
        if not self.fields:
            return self.data_classes
        chosen = self.fields if names is None else [f for f in self.fields if f.name in set(names)]
        return frozenset(f.data_class for f in chosen)


@dataclass(frozen=True, slots=True)
class PurposeCode:
    """A purpose from the closed list (Art. 17 specification), mapped to DPV."""

    code: str
    label_ja: str
    label_en: str
    dpv_purpose: str | None = None
    default_retention: IsoDuration | None = None
    allowed_bases: tuple[str, ...] = ()
    """If non-empty, only these basis codes may be used with this purpose."""
    compatible_with: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OrdinanceBasis:
    """A basis declared by a municipal ordinance (e.g. Kakogawa camera ordinance reasons)."""

    code: str
    kind: OrdinanceKind
    ordinance: str
    article: str
    label_ja: str
    label_en: str
    appi_basis: str | None = None
    """The APPI Art. 69 basis the provision rests on; the ordinance adds conditions on top."""

    def as_basis(self) -> LegalBasis:
        """Ordinance reasons are exceptions: used only through an exception profile.

        The article names both layers (``APPI Art. 69(1) + <ordinance article>``); the
        APPI basis decides what the law itself imposes (Art. 69(2) is ad hoc only).
        """
        appi = builtin_basis(self.appi_basis) if self.appi_basis else None
        article = f"{appi.article_public} + {self.article}" if appi else self.article
        return LegalBasis(
            self.code,
            ORDINANCE_CATEGORY[self.kind],
            Route.EXCEPTION,
            frozenset(Regime),
            article,
            article,
            self.label_ja,
            self.label_en,
            "dpv:LegalObligation",
            ad_hoc_only=appi.ad_hoc_only if appi else False,
            art28_exempt=self.kind is OrdinanceKind.LAW or bool(appi and appi.art28_exempt),
            rests_on=appi.code if appi else None,
            condition=self.article,
        )


@dataclass(frozen=True, slots=True)
class Permission:
    """ODRL permission to ``use`` one service: purpose, basis, data items, extra constraints."""

    target: ServiceId
    purposes: tuple[str, ...]
    bases: tuple[str, ...]
    fields: tuple[str, ...] | None = None
    """Permitted data items (None: every field of the service)."""
    statute_ref: str | None = None
    """Statute a law-based provision relies on (e.g. 生活保護法29条)."""
    not_before: datetime | None = None
    not_after: datetime | None = None
    """Extra ``dateTime`` window of this permission, half-open like agreement validity."""
    recipient_countries: tuple[str, ...] | None = None
    recipient_types: tuple[LegalType, ...] | None = None


@dataclass(frozen=True, slots=True)
class Quotas:
    """Usage limits (ODRL ``count``, ReBIT ``Frequency``); None means unlimited."""

    max_per_day: int | None = None
    max_total: int | None = None

    @property
    def any(self) -> bool:
        return self.max_per_day is not None or self.max_total is not None


@dataclass(frozen=True, slots=True)
class Duties:
    """Obligations passed to the recipient with every response (Art. 70, ODRL duties)."""

    delete_after: IsoDuration | None = None
    no_onward_transfer: bool = False
    inform_provider: bool = False
    use_limitation: str | None = None


@dataclass(frozen=True, slots=True)
class Agreement:
    """A data-sharing agreement (ODRL Agreement): provider assigns, consumer subsystems use."""

    uid: str
    version: int
    provider: MemberId
    consumers: tuple[ClientId, ...]
    """Subsystems (or whole members) allowed to call; a member entry covers its subsystems."""
    permissions: tuple[Permission, ...]
    valid_from: datetime
    valid_to: datetime | None = None
    """Exclusive end; None means open-ended (discouraged)."""
    state: AgreementState = AgreementState.DRAFT
    type: AgreementType = AgreementType.PROVISION
    allowed_countries: tuple[str, ...] = ("JP",)
    recurring: bool = False
    quotas: Quotas = field(default_factory=Quotas)
    duties: Duties = field(default_factory=Duties)
    publication_ref: str | None = None
    """Published items/method notice for anonymized provision (Art. 43(3)/44)."""
    joint_use_notice_ref: str | None = None
    """Prior announcement of joint use (Art. 27(5)(iii))."""
    min_notice_version: int | None = None
    recipient_conforming_system: bool = False
    """Art. 28(1): the foreign recipient keeps a system conforming to APPI standards."""
    recipient_links_personal_data: bool = False
    """Art. 31: the recipient will link personally referable data to a person."""
    contract_substitutes_record: bool = False
    """The agreement substitutes the Art. 29 record: retention 1 year from last provision."""
    title: str | None = None

    def permissions_for(self, service: ServiceId) -> tuple[Permission, ...]:
        return tuple(p for p in self.permissions if service_matches(p.target, service))

    def covers_client(self, client: ClientId) -> bool:
        return any(client_matches(c, client) for c in self.consumers)


@dataclass(frozen=True, slots=True)
class ForeignTransfer:
    """Art. 28 consent to provision abroad, with the required information given."""

    countries: tuple[str, ...]
    info_provided: bool


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A consent record (Kantara CR 1.1 / ISO/IEC TS 27560) keyed by a pairwise subject ref."""

    consent_id: str
    subject_ref: str
    controller: MemberId
    recipients: tuple[ClientId, ...]
    purposes: tuple[str, ...]
    status: ConsentStatus
    services: tuple[ServiceId, ...] = ()
    """Services covered; empty means any service of the controller."""
    fields: tuple[str, ...] | None = None
    """Data items covered; None means all items of the covered services."""
    explicit_special_care: bool = False
    foreign_transfer: ForeignTransfer | None = None
    given_at: datetime | None = None
    expires_at: datetime | None = None
    withdrawn_at: datetime | None = None
    collection_method: CollectionMethod | None = None
    notice_version: int | None = None
    policy_url: str | None = None
    evidence_hash: str | None = None
    status_checked_at: datetime | None = None
    """When the status was last confirmed with an external consent service (None: local)."""
    jurisdiction: str = "JP"
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ExceptionReason:
    """One reason an exception profile accepts, with who may ask and what they must show."""

    basis: str
    eligible_recipient_types: tuple[LegalType, ...]
    required_evidence: tuple[str, ...] = ()
    accepted_doc_types: tuple[str, ...] = ()
    """If non-empty, ``evidence.doc_type`` must be one of these (e.g. 捜査関係事項照会書)."""


@dataclass(frozen=True, slots=True)
class ExceptionProfile:
    """Kakogawa pattern: outside provision only for listed reasons, with evidence and review."""

    id: str
    reasons: tuple[ExceptionReason, ...]
    fields: tuple[str, ...] | None = None
    max_lookback: IsoDuration | None = None
    allowed_countries: tuple[str, ...] = ("JP",)
    post_review: bool = True
    notify: tuple[str, ...] = ()
    title: str | None = None

    def reason(self, basis: str) -> ExceptionReason | None:
        for item in self.reasons:
            if item.basis == basis:
                return item
        return None


@dataclass(frozen=True, slots=True)
class StopRequest:
    """An individual's request to stop provision (Art. 27(2) opt-out stop, Art. 35)."""

    id: str
    subject_ref: str
    provider: MemberId
    scope: StopScope
    since: datetime
    recipient: ClientId | None = None
    purpose: str | None = None
    lifted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Node-wide policy settings that are part of the signed policy, not the node config."""

    require_issue: bool = True
    """Personal-data requests must carry ``X-Road-Issue`` (research §3.2)."""
    max_clock_skew_seconds: int = 300
    consent_max_status_age_seconds: int | None = None
    record_retention: IsoDuration = field(default_factory=lambda: IsoDuration(years=3))
    """Retention of provision records; at least three years (Rules on Art. 29/30)."""
    recurrence_max_days: int = 3
    """Provision to one client subsystem from one service for one purpose on more than this
    many separate JST days within ``recurrence_window`` is recurring (the node's own count)."""
    recurrence_window: IsoDuration = field(default_factory=lambda: IsoDuration(days=30))
    require_agreement_pin: bool = False
    """Requests on non-exception bases must name their agreement (``X-Road-Agreement``)."""


K = TypeVar("K")
V = TypeVar("V")


def _index(items: Iterable[V], key: Callable[[V], K]) -> Mapping[K, V]:
    out: dict[K, V] = {}
    for item in items:
        k = key(item)
        if k in out:
            raise ValueError(f"duplicate {type(item).__name__} {k!s}")
        out[k] = item
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """Everything a decision needs, immutable. Build with :meth:`build`.

    Mappings may be replaced by lazy, DB-backed mappings for large tables (consents,
    stop requests), e.g. ``dataclasses.replace(snap, consents=only_this_subject)``.
    """

    members: Mapping[MemberId, Member] = field(default_factory=dict)
    services: Mapping[ServiceId, Service] = field(default_factory=dict)
    purposes: Mapping[str, PurposeCode] = field(default_factory=dict)
    ordinance_bases: Mapping[str, OrdinanceBasis] = field(default_factory=dict)
    exception_profiles: Mapping[str, ExceptionProfile] = field(default_factory=dict)
    agreements: Mapping[str, Agreement] = field(default_factory=dict)
    consents: Mapping[str, ConsentRecord] = field(default_factory=dict)
    stop_requests: Mapping[str, tuple[StopRequest, ...]] = field(default_factory=dict)
    """Stop requests grouped by subject ref."""
    settings: PolicySettings = field(default_factory=PolicySettings)
    policy_version: str | None = None
    digest: str | None = None
    """SHA-256 of the canonical export; logged with every decision."""

    @classmethod
    def build(
        cls,
        *,
        members: Iterable[Member] = (),
        services: Iterable[Service] = (),
        purposes: Iterable[PurposeCode] = (),
        ordinance_bases: Iterable[OrdinanceBasis] = (),
        exception_profiles: Iterable[ExceptionProfile] = (),
        agreements: Iterable[Agreement] = (),
        consents: Iterable[ConsentRecord] = (),
        stop_requests: Iterable[StopRequest] = (),
        settings: PolicySettings | None = None,
        policy_version: str | None = None,
    ) -> PolicySnapshot:
        """Index entities by id; duplicate ids raise ``ValueError`` (never last-one-wins)."""
        stops: dict[str, list[StopRequest]] = {}
        seen: set[str] = set()
        for stop in stop_requests:
            if stop.id in seen:
                raise ValueError(f"duplicate StopRequest {stop.id}")
            seen.add(stop.id)
            stops.setdefault(stop.subject_ref, []).append(stop)
        return cls(
            members=_index(members, lambda m: m.id),
            services=_index(services, lambda s: s.id),
            purposes=_index(purposes, lambda p: p.code),
            ordinance_bases=_index(ordinance_bases, lambda o: o.code),
            exception_profiles=_index(exception_profiles, lambda e: e.id),
            agreements=_index(agreements, lambda a: a.uid),
            consents=_index(consents, lambda c: c.consent_id),
            stop_requests=MappingProxyType({k: tuple(v) for k, v in stops.items()}),
            settings=settings or PolicySettings(),
            policy_version=policy_version,
        )

    def service(self, service_id: ServiceId) -> Service | None:
        """The classification of a service; a versionless entry covers every version."""
        found = self.services.get(service_id)
        if found is None and service_id.version is not None:
            found = self.services.get(replace(service_id, version=None))
        return found

    def basis(self, code: str) -> LegalBasis | None:
        """Resolve a basis code against the closed list plus declared ordinance bases."""
        builtin = builtin_basis(code)
        if builtin is not None:
            return builtin
        declared = self.ordinance_bases.get(code)
        return declared.as_basis() if declared is not None else None

    def all_stop_requests(self) -> tuple[StopRequest, ...]:
        return tuple(s for group in self.stop_requests.values() for s in group)

    def with_changes(self, **changes: object) -> PolicySnapshot:
        """Copy with some mappings replaced (e.g. a consent withdrawn); digest is cleared."""
        return replace(self, digest=None, **changes)  # type: ignore[arg-type]


def service_matches(granted: ServiceId, requested: ServiceId) -> bool:
    """A versionless grant covers every version; a versioned grant only that version."""
    if granted.version is None:
        return granted.parts() == requested.parts()[:5]
    return granted == requested


def client_matches(granted: ClientId, client: ClientId) -> bool:
    """A member entry covers the member and all its subsystems; a subsystem only itself."""
    if isinstance(granted, SubsystemId):
        return granted == client
    return client.member == granted
