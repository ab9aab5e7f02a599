"""The ordered checks of policy-research §3.3. Internal: use :mod:`.decision`.

Each check either returns (and is recorded as passed) or raises :class:`Deny`;
the first failure decides. Nothing here catches unexpected exceptions: the caller
turns them into a ``SYSTEM_ERROR`` denial, so a bug can only ever refuse.

Why one module of this size: the checks are read in order against policy-research
§3.3, top to bottom; spread over modules, the order (which decides) would be hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..identifiers import MemberId
from .model import (
    Agreement,
    ConsentRecord,
    ExceptionProfile,
    ExceptionReason,
    Member,
    Permission,
    PolicySnapshot,
    Service,
    client_matches,
    service_matches,
)
from .reasons import Reason, Step
from .request import PolicyRequest, UsageCounters
from .timeutil import jst_day, require_aware
from .vocabulary import (
    DESIGNATED_COUNTRIES,
    FORBIDDEN_BASES,
    PERSONAL_CLASSES,
    PSEUDONYMIZED_BASES,
    VALID_CONSENT_STATUSES,
    AgreementState,
    AgreementType,
    Category,
    DataClass,
    LegalBasis,
    Regime,
    Route,
    Status,
    StopScope,
    regime_of,
)

_LAW_BASES = frozenset({"APPI27-1-1", "APPI69-1-LAW"})


class Deny(Exception):
    """A failed check: the reason code and a one-line explanation."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Evaluation:
    """State of one evaluation: what has been resolved so far and which checks passed."""

    request: PolicyRequest
    policy: PolicySnapshot
    at: datetime
    usage: UsageCounters | None
    checks: list[str] = field(default_factory=list)
    service: Service | None = None
    provider: Member | None = None
    client: Member | None = None
    basis: LegalBasis | None = None
    classes: frozenset[DataClass] = frozenset()
    agreement: Agreement | None = None
    permission: Permission | None = None
    consent: ConsentRecord | None = None
    profile: ExceptionProfile | None = None
    alternatives: list[tuple[str, str]] = field(default_factory=list)
    stage: Step = Step.S0_INTEGRITY
    """The step being evaluated; a refusal reports the step it happened in."""

    # -- helpers ---------------------------------------------------------------------------

    def passed(self, name: str) -> None:
        self.checks.append(name)

    def fork(self) -> Evaluation:
        return Evaluation(
            self.request,
            self.policy,
            self.at,
            self.usage,
            list(self.checks),
            self.service,
            self.provider,
            self.client,
            self.basis,
            self.classes,
            stage=self.stage,
        )

    @property
    def regime(self) -> Regime | None:
        """The provider's regime; before it is resolved, the registry's entry of the service's
        member (so an early refusal cites the right chapter), else unknown."""
        provider = self.provider or self.policy.members.get(self.request.service.member)
        return regime_of(provider.legal_type) if provider else None

    @property
    def requested(self) -> tuple[str, ...] | None:
        """Requested field names; None when the service declares no fields."""
        svc = self.service
        if svc is None or not svc.declares_fields:
            return None
        return self.request.fields if self.request.fields is not None else svc.field_names

    def countries(self) -> tuple[str, ...]:
        """Where the data goes: the declared country and the member's registered one."""
        out = [self.client.country] if self.client else []
        if self.request.recipient_country and self.request.recipient_country not in out:
            out.append(self.request.recipient_country)
        return tuple(out)

    def need_basis(self) -> LegalBasis:
        if self.basis is None:
            raise AssertionError("basis not resolved")
        return self.basis

    def need_service(self) -> Service:
        if self.service is None:
            raise AssertionError("service not resolved")
        return self.service

    def need_client(self) -> Member:
        if self.client is None:
            raise AssertionError("client not resolved")
        return self.client

    # -- S0 / S1 ---------------------------------------------------------------------------

    def integrity(self) -> None:
        require_aware(self.at, "decision time")
        t = self.request.time
        if t is not None:
            skew = abs((require_aware(t, "request time") - self.at).total_seconds())
            limit = self.policy.settings.max_clock_skew_seconds
            if skew > limit:
                raise Deny(
                    Reason.CLOCK_SKEW,
                    f"request time is {skew:.0f} s from the node's clock (limit {limit} s)",
                )
        self.passed("policy loaded, clock within skew")

    def resolve_service(self) -> Service:
        self.stage = Step.S1_PARTIES
        svc = self.policy.service(self.request.service)
        if svc is None:
            raise Deny(
                Reason.SERVICE_UNKNOWN,
                f"service {self.request.service} is not classified "
                "in the policy registry (secnode service classify)",
            )
        if svc.status is not Status.ACTIVE:
            raise Deny(Reason.SERVICE_INACTIVE, f"service {svc.id} is {svc.status.value}")
        self.service = svc
        self.passed("service classified and active")
        return svc

    def fields_known(self) -> None:
        self.stage = Step.S2_ENVELOPE
        svc = self.need_service()
        wanted = self.request.fields
        if wanted is not None and not svc.declares_fields and wanted:
            raise Deny(
                Reason.FIELD_UNKNOWN,
                f"service {svc.id} declares no fields, so no data items can be requested",
            )
        unknown = [n for n in wanted or () if svc.field(n) is None] if svc.declares_fields else []
        if unknown:
            raise Deny(
                Reason.FIELD_UNKNOWN, f"service {svc.id} has no field(s) {', '.join(unknown)}"
            )
        self.classes = svc.classes_of(self.requested)
        self.passed("requested fields declared")

    def personal(self) -> bool:
        return bool(self.classes & PERSONAL_CLASSES)

    def parties(self) -> None:
        self.stage = Step.S1_PARTIES
        svc = self.need_service()
        self.provider = self._member(svc.provider, "provider")
        self.client = self._member(self.request.client.member, "client")
        claimed = self.request.client_legal_type
        if claimed is not None and claimed is not self.client.legal_type:
            raise Deny(
                Reason.PARTY_LEGAL_TYPE_MISMATCH,
                f"client declared {claimed.value} but "
                f"the registry says {self.client.legal_type.value}",
            )
        self.passed("client and provider members registered and active")

    def _member(self, member_id: MemberId, role: str) -> Member:
        member = self.policy.members.get(member_id)
        if member is None:
            raise Deny(
                Reason.PARTY_UNKNOWN_MEMBER,
                f"{role} member {member_id} is not in the policy registry",
            )
        if member.status is not Status.ACTIVE:
            raise Deny(Reason.PARTY_INACTIVE, f"{role} member {member_id} is {member.status.value}")
        return member

    # -- S2 envelope -----------------------------------------------------------------------

    def envelope(self, *, know_purposes: bool = True) -> None:
        self.stage = Step.S2_ENVELOPE
        r, svc = self.request, self.need_service()
        if r.purpose is None:
            raise Deny(
                Reason.MISSING_PURPOSE,
                f"service {svc.id} carries personal data: X-Road-Purpose is required",
            )
        purpose = self.policy.purposes.get(r.purpose)
        if purpose is None and know_purposes:
            raise Deny(
                Reason.UNKNOWN_PURPOSE, f"purpose code {r.purpose!r} is not in the closed list"
            )
        if r.basis is None:
            raise Deny(
                Reason.MISSING_LEGAL_BASIS,
                f"service {svc.id} carries personal data: X-Road-Legal-Basis is required",
            )
        if r.basis in FORBIDDEN_BASES:
            raise Deny(
                Reason.UNKNOWN_LEGAL_BASIS,
                f"{r.basis!r} is not a basis under APPI (there is no legitimate-interest basis)",
            )
        basis = self.policy.basis(r.basis)
        if basis is None:
            raise Deny(
                Reason.UNKNOWN_LEGAL_BASIS,
                f"legal basis code {r.basis!r} is not in the closed list",
            )
        self.basis = basis
        allowed = purpose.allowed_bases if purpose is not None else ()
        if purpose is not None and allowed and basis.code not in allowed:
            raise Deny(
                Reason.BASIS_NOT_ALLOWED_FOR_PURPOSE,
                f"purpose {purpose.code} admits only {', '.join(purpose.allowed_bases)}",
            )
        if self.policy.settings.require_issue and r.issue is None:
            raise Deny(
                Reason.MISSING_ISSUE, "personal data requires a case reference (X-Road-Issue)"
            )
        needs_subject = (
            svc.subject_required
            or basis.route is Route.CONSENT
            or basis.category is Category.OPT_OUT
        )
        if needs_subject and r.subject_ref is None:
            raise Deny(
                Reason.MISSING_SUBJECT,
                "X-Road-Data-Subject is required for this "
                f"{'basis' if not svc.subject_required else 'service'}",
            )
        self.passed("purpose, basis, issue and subject declared from the closed lists")

    # -- S3 data class ---------------------------------------------------------------------

    def data_class(self) -> None:
        self.stage = Step.S3_DATA_CLASS
        basis, classes = self.need_basis(), self.classes
        if DataClass.MYNUMBER in classes and basis.category is not Category.MY_NUMBER_ACT:
            raise Deny(
                Reason.MYNUMBER_BASIS,
                "My Number data may be provided only in the cases "
                "of My Number Act Art. 19 (basis MYNUMBER19-<item>); consent does not "
                "suffice",
            )
        if DataClass.PSEUDONYMIZED in classes and basis.code not in PSEUDONYMIZED_BASES:
            allowed = ", ".join(sorted(PSEUDONYMIZED_BASES))
            raise Deny(
                Reason.PSEUDONYMIZED_PROVISION,
                "pseudonymized data may leave only based "
                f"on laws, by entrustment or joint use ({allowed})",
            )
        if DataClass.SPECIAL_CARE in classes and basis.category is Category.OPT_OUT:
            why = (
                "public bodies have no opt-out route, APPI Art. 69"
                if self.regime is Regime.PUBLIC
                else "APPI Art. 27(2) proviso"
            )
            raise Deny(
                Reason.OPTOUT_SPECIAL_CARE_FORBIDDEN,
                f"special-care data cannot be provided by opt-out ({why})",
            )
        if DataClass.ANONYMIZED in classes:
            svc = self.need_service()
            keys = [n for n in self.requested or () if (f := svc.field(n)) and f.linkage_key]
            if keys:
                raise Deny(
                    Reason.REIDENTIFICATION_RISK,
                    f"linkage key(s) {', '.join(keys)} requested together with anonymized data",
                )
        if basis.category is Category.ANONYMIZED_PROVISION:
            other = classes - {DataClass.ANONYMIZED, DataClass.NON_PERSONAL}
            if other:
                raise Deny(
                    Reason.BASIS_NOT_APPLICABLE,
                    f"{basis.code} covers only anonymized "
                    f"data; request includes {', '.join(sorted(c.value for c in other))}",
                )
        self.passed("data classes compatible with the basis")

    # -- S4 route --------------------------------------------------------------------------

    def applicability(self) -> None:
        self.stage = Step.S4_ROUTE
        basis, provider, client = self.need_basis(), self.provider, self.need_client()
        if provider is None:
            raise AssertionError("provider not resolved")
        regime = regime_of(provider.legal_type)
        if regime not in basis.regimes:
            chapter = (
                "public bodies (APPI Ch. 5)"
                if regime is Regime.PRIVATE
                else "businesses (APPI Ch. 4)"
            )
            raise Deny(
                Reason.BASIS_NOT_APPLICABLE,
                f"{basis.code} exists only for {chapter}; "
                f"provider {provider.id} is {provider.legal_type.value}",
            )
        if basis.provider_types and provider.legal_type not in basis.provider_types:
            raise Deny(
                Reason.BASIS_NOT_APPLICABLE,
                f"{basis.code} needs a provider of type "
                f"{'/'.join(sorted(t.value for t in basis.provider_types))}",
            )
        if basis.recipient_types and client.legal_type not in basis.recipient_types:
            raise Deny(
                Reason.RECIPIENT_NOT_ELIGIBLE,
                f"{basis.code} needs a recipient of type "
                f"{'/'.join(sorted(t.value for t in basis.recipient_types))}; "
                f"{client.id} is {client.legal_type.value}",
            )
        if basis.code == "APPI69-2-2" and client.id != provider.id:
            raise Deny(
                Reason.RECIPIENT_NOT_ELIGIBLE,
                "internal use (Art. 69(2)(ii)) is only within the provider's own organisation",
            )
        self.passed(f"basis {basis.code} applies to a {regime.value.lower()} provider")

    def exception_route(self) -> ExceptionReason:
        r, svc = self.request, self.need_service()
        basis, client = self.need_basis(), self.need_client()
        found: tuple[ExceptionProfile, ExceptionReason] | None = None
        for pid in svc.exception_profiles:
            profile = self.policy.exception_profiles.get(pid)
            reason = profile.reason(basis.code) if profile else None
            if profile is not None and reason is not None:
                found = (profile, reason)
                break
        if found is None:
            raise Deny(
                Reason.NO_EXCEPTION_PROFILE,
                f"service {svc.id} has no exception profile accepting {basis.code}",
            )
        profile, reason = found
        self.profile = profile
        self.passed(f"exception profile {profile.id} accepts {basis.code}")
        if r.recurring:
            raise Deny(
                Reason.AD_HOC_ONLY,
                f"{basis.code} is an exception for ad hoc requests; "
                "recurring provision needs an agreement",
            )

        if client.legal_type not in reason.eligible_recipient_types:
            raise Deny(
                Reason.RECIPIENT_NOT_ELIGIBLE,
                f"profile {profile.id} gives {basis.code} "
                f"data only to {'/'.join(t.value for t in reason.eligible_recipient_types)}"
                f"; {client.id} is {client.legal_type.value}",
            )
        required = list(reason.required_evidence)
        if basis.attestation and "consent_difficulty" not in required:
            required.append("consent_difficulty")
        missing = [k for k in required if not str(r.evidence.get(k, "")).strip()]
        if missing:
            raise Deny(Reason.EVIDENCE_REQUIRED, f"evidence missing: {', '.join(missing)}")
        doc = r.evidence.get("doc_type")
        if reason.accepted_doc_types and doc not in reason.accepted_doc_types:
            raise Deny(
                Reason.EVIDENCE_REQUIRED,
                f"evidence doc_type {doc!r} not accepted "
                f"(accepted: {', '.join(reason.accepted_doc_types)})",
            )
        self.passed("recipient eligible and evidence complete")
        if profile.fields is not None:
            self._fields_within(profile.fields, f"exception profile {profile.id}")
        if profile.max_lookback is not None:
            if r.data_from is None:
                raise Deny(
                    Reason.MISSING_DATA_PERIOD,
                    f"profile {profile.id} limits look-back "
                    f"to {profile.max_lookback}: X-Road-Data-From is required",
                )
            age = self.at - require_aware(r.data_from, "data_from")
            if age > profile.max_lookback.to_timedelta():
                raise Deny(
                    Reason.LOOKBACK_EXCEEDED,
                    f"data from {r.data_from.isoformat()} is "
                    f"older than the {profile.max_lookback} look-back",
                )
        self._countries_within(profile.allowed_countries, f"exception profile {profile.id}")
        self.passed("fields, look-back and country within the profile")
        if basis.ad_hoc_only:
            self._ad_hoc_by_history("recurring provision needs an agreement")
        return reason

    def _ad_hoc_by_history(self, remedy: str) -> None:
        """Art. 69(2) is ad hoc only: judged from the node's own provisions, not the header.

        The same client subsystem, service and purpose on more than ``recurrence_max_days``
        separate JST days within ``recurrence_window`` (today included) is recurring.
        """
        r, basis = self.request, self.need_basis()
        settings = self.policy.settings
        days = self.usage.provision_days if self.usage is not None else None
        if days is None:
            raise Deny(
                Reason.USAGE_UNAVAILABLE,
                f"{basis.code} is ad hoc only and the node's provision history "
                "was not supplied (fail closed)",
            )
        today = jst_day(self.at)
        first = today - timedelta(days=settings.recurrence_window.days - 1)
        seen = {d for d in days if first <= d <= today} | {today}
        if len(seen) > settings.recurrence_max_days:
            raise Deny(
                Reason.AD_HOC_ONLY,
                f"{r.client} has received {r.service} data for {r.purpose} on {len(seen)} "
                f"separate days within {settings.recurrence_window} (ad hoc: at most "
                f"{settings.recurrence_max_days}); {basis.code} is ad hoc only, {remedy}",
            )
        self.passed(f"ad hoc: {len(seen)} day(s) within {settings.recurrence_window}")

    def _fields_within(self, allowed: tuple[str, ...], what: str) -> None:
        extra = [n for n in self.requested or () if n not in allowed]
        if extra:
            raise Deny(
                Reason.FIELD_NOT_PERMITTED, f"field(s) {', '.join(extra)} not permitted by {what}"
            )

    def _countries_within(self, allowed: tuple[str, ...], what: str) -> None:
        bad = [c for c in self.countries() if c not in allowed]
        if bad:
            raise Deny(
                Reason.CROSS_BORDER_NOT_PERMITTED,
                f"recipient country {', '.join(bad)} not permitted by {what}",
            )

    def candidates(self) -> list[Agreement]:
        self.stage = Step.S4_ROUTE
        r, svc = self.request, self.need_service()
        if r.agreement is None and self.policy.settings.require_agreement_pin:
            raise Deny(
                Reason.AGREEMENT_PIN_REQUIRED,
                f"this node requires every {self.need_basis().code} request to name "
                "the agreement it relies on (X-Road-Agreement: UID;v=N)",
            )
        if r.agreement is not None:
            pinned = self.policy.agreements.get(r.agreement.uid)
            if pinned is None:
                raise Deny(Reason.NO_ACTIVE_AGREEMENT, f"agreement {r.agreement.uid} is unknown")
            return [pinned]
        found = sorted(
            (
                a
                for a in self.policy.agreements.values()
                if a.provider == svc.provider and a.permissions_for(r.service)
            ),
            key=lambda a: a.uid,
        )
        if not found:
            raise Deny(Reason.NO_ACTIVE_AGREEMENT, f"no data-sharing agreement covers {svc.id}")
        return found

    # -- S5 agreement ----------------------------------------------------------------------

    def agreement_checks(self, a: Agreement) -> None:
        self.stage = Step.S5_AGREEMENT
        r, svc = self.request, self.need_service()
        self.agreement = a
        name = f"agreement {a.uid} v{a.version}"
        if a.provider != svc.provider or not a.permissions_for(r.service):
            raise Deny(Reason.SERVICE_NOT_IN_AGREEMENT, f"{name} does not cover {svc.id}")
        if not a.covers_client(r.client):
            same = any(c.member == r.client.member for c in a.consumers)
            raise Deny(
                Reason.SUBSYSTEM_NOT_IN_AGREEMENT if same else Reason.CLIENT_NOT_IN_AGREEMENT,
                f"{r.client} is not a party to {name}",
            )
        self.passed(f"{name} binds {svc.provider} and {r.client}")
        if a.state is not AgreementState.ACTIVE:
            raise Deny(Reason.AGREEMENT_NOT_ACTIVE, f"{name} is {a.state.value}")
        if self.at < a.valid_from:
            raise Deny(
                Reason.AGREEMENT_NOT_ACTIVE, f"{name} is valid only from {a.valid_from.isoformat()}"
            )
        if a.valid_to is not None and self.at >= a.valid_to:
            raise Deny(Reason.AGREEMENT_NOT_ACTIVE, f"{name} expired at {a.valid_to.isoformat()}")
        if (
            r.agreement is not None
            and r.agreement.version is not None
            and r.agreement.version != a.version
        ):
            raise Deny(
                Reason.AGREEMENT_VERSION_MISMATCH,
                f"request pins v{r.agreement.version} but {a.uid} is at v{a.version}",
            )
        self.passed(f"{name} active at {self.at.isoformat()}")
        self.permission = self._permission(a)
        self._countries_within(a.allowed_countries, name)
        self.passed("recipient country allowed")
        self._agreement_basis_rules(a)

    def _permission(self, a: Agreement) -> Permission:
        r, basis = self.request, self.need_basis()
        perms = a.permissions_for(r.service)
        by_purpose = [p for p in perms if r.purpose in p.purposes]
        if not by_purpose:
            raise Deny(
                Reason.PURPOSE_NOT_IN_AGREEMENT,
                f"purpose {r.purpose} is not permitted by agreement {a.uid} for {r.service}",
            )
        by_basis = [p for p in by_purpose if basis.code in p.bases]
        if not by_basis:
            raise Deny(
                Reason.BASIS_NOT_IN_AGREEMENT,
                f"agreement {a.uid} does not allow basis {basis.code} for purpose {r.purpose}",
            )
        requested = self.requested or ()
        by_fields = [p for p in by_basis if p.fields is None or set(requested) <= set(p.fields)]
        if not by_fields:
            allowed = by_basis[0].fields or ()
            extra = [n for n in requested if n not in allowed]
            raise Deny(
                Reason.FIELD_NOT_PERMITTED,
                f"field(s) {', '.join(extra)} are outside the data items of agreement {a.uid}",
            )
        self.passed("purpose, basis and fields within a permission")
        first: Deny | None = None
        for p in by_fields:
            try:
                self._permission_constraints(a, p)
            except Deny as deny:
                first = first or deny
                continue
            return p
        assert first is not None
        raise first

    def _permission_constraints(self, a: Agreement, p: Permission) -> None:
        """Everything that depends on the chosen permission, so choosing is monotone."""
        client, basis = self.need_client(), self.need_basis()
        if basis.code in _LAW_BASES and not p.statute_ref:
            raise Deny(
                Reason.STATUTE_REF_MISSING,
                f"{basis.code} needs the statute in the permission of {a.uid} (statute_ref)",
            )
        if p.not_before is not None and self.at < p.not_before:
            raise Deny(
                Reason.AGREEMENT_NOT_ACTIVE,
                f"permission of {a.uid} starts {p.not_before.isoformat()}",
            )
        if p.not_after is not None and self.at >= p.not_after:
            raise Deny(
                Reason.AGREEMENT_NOT_ACTIVE,
                f"permission of {a.uid} ended {p.not_after.isoformat()}",
            )
        if p.recipient_types is not None and client.legal_type not in p.recipient_types:
            raise Deny(
                Reason.RECIPIENT_NOT_ELIGIBLE,
                f"permission of {a.uid} is only for {'/'.join(t.value for t in p.recipient_types)}",
            )
        if p.recipient_countries is not None:
            self._countries_within(p.recipient_countries, f"a permission of {a.uid}")

    def _agreement_basis_rules(self, a: Agreement) -> None:
        r, svc, basis = self.request, self.need_service(), self.need_basis()
        if (a.type is AgreementType.ENTRUSTMENT) != (basis.code == "APPI27-5-1") or (
            a.type is AgreementType.JOINT_USE
        ) != (basis.code == "APPI27-5-3"):
            raise Deny(
                Reason.BASIS_NOT_APPLICABLE,
                f"basis {basis.code} does not fit a {a.type.value} agreement ({a.uid})",
            )
        if a.type is AgreementType.JOINT_USE and not a.joint_use_notice_ref:
            raise Deny(
                Reason.JOINT_USE_NOT_ANNOUNCED,
                f"joint-use agreement {a.uid} has no announced notice (joint_use_notice_ref)",
            )
        within = r.purpose in svc.registered_purposes
        if basis.code == "APPI69-1-PURPOSE" and not within:
            raise Deny(
                Reason.PURPOSE_NOT_REGISTERED,
                f"purpose {r.purpose} is not registered for {svc.id} (Art. 61)",
            )
        recurring = a.recurring or r.recurring
        if recurring and basis.ad_hoc_only:
            raise Deny(
                Reason.AD_HOC_ONLY,
                f"{basis.code} allows only ad hoc provision; recurring "
                "flows must be within the specified purpose (PPC)",
            )
        public_consent = (
            basis.route is Route.CONSENT and self.regime is Regime.PUBLIC and not within
        )
        if recurring and public_consent:
            raise Deny(
                Reason.AD_HOC_ONLY,
                "recurring consent-based provision by a public body "
                f"needs purpose {r.purpose} registered for {svc.id} (Arts. 61, 69(2))",
            )
        if basis.ad_hoc_only or public_consent:
            self._ad_hoc_by_history("recurring flows must be within the specified purpose")
        if DataClass.ANONYMIZED in self.classes and not a.publication_ref:
            raise Deny(
                Reason.ANONYMIZED_NOT_PUBLISHED,
                f"agreement {a.uid} has no published items/method notice (publication_ref)",
            )
        if (
            DataClass.PERSONALLY_REFERABLE in self.classes
            and a.recipient_links_personal_data
            and not (basis.route is Route.CONSENT or basis.art28_exempt)
        ):
            raise Deny(
                Reason.PERSONALLY_REFERABLE_CONSENT_REQUIRED,
                "the recipient links personally referable data to individuals: consent is required",
            )
        self.passed(f"agreement rules for {basis.code} satisfied")

    # -- S6 basis --------------------------------------------------------------------------

    def basis_checks(self, a: Agreement) -> None:
        self.stage = Step.S6_BASIS
        basis = self.need_basis()
        if basis.route is Route.CONSENT:
            self._consent(a)
        if basis.category is Category.OPT_OUT:
            self._opt_out()
        self._foreign_transfer(a)
        self.passed(f"legal basis {basis.code} holds")

    def _consent(self, a: Agreement) -> None:
        r, svc = self.request, self.need_service()
        if r.consent_id is None:
            raise Deny(Reason.CONSENT_MISSING, "basis CONSENT needs X-Road-Consent-Id")
        c = self.policy.consents.get(r.consent_id)
        if c is None:
            raise Deny(Reason.CONSENT_MISSING, f"no consent record {r.consent_id}")
        self.consent = c
        if c.status not in VALID_CONSENT_STATUSES:
            raise Deny(
                Reason.CONSENT_NOT_VALID, f"consent {c.consent_id} status is {c.status.value}"
            )
        if c.withdrawn_at is not None and c.withdrawn_at <= self.at:
            raise Deny(
                Reason.CONSENT_NOT_VALID,
                f"consent {c.consent_id} was withdrawn at "
                f"{c.withdrawn_at.isoformat()} (ConsentWithdrawn)",
            )
        if c.given_at is not None and self.at < c.given_at:
            raise Deny(
                Reason.CONSENT_NOT_VALID,
                f"consent {c.consent_id} is given only from {c.given_at.isoformat()}",
            )
        if c.expires_at is not None and self.at >= c.expires_at:
            raise Deny(
                Reason.CONSENT_NOT_VALID,
                f"consent {c.consent_id} expired at {c.expires_at.isoformat()} (ConsentExpired)",
            )
        max_age = self.policy.settings.consent_max_status_age_seconds
        if (
            max_age is not None
            and c.status_checked_at is not None
            and self.at - c.status_checked_at > timedelta(seconds=max_age)
        ):
            raise Deny(
                Reason.CONSENT_STATUS_STALE,
                f"consent {c.consent_id} status last checked "
                f"{c.status_checked_at.isoformat()}; re-check it",
            )
        self.passed(f"consent {c.consent_id} valid at {self.at.isoformat()}")
        scope: list[str] = []
        if c.subject_ref != r.subject_ref:
            scope.append("subject")
        if c.controller != svc.provider:
            scope.append("controller")
        if not any(client_matches(x, r.client) for x in c.recipients):
            scope.append("recipient")
        if c.services and not any(service_matches(s, r.service) for s in c.services):
            scope.append("service")
        if r.purpose not in c.purposes:
            scope.append("purpose")
        if c.fields is not None and not set(self.requested or ()) <= set(c.fields):
            scope.append("data items")
        if scope:
            raise Deny(
                Reason.CONSENT_SCOPE_MISMATCH,
                f"consent {c.consent_id} does not cover this {', '.join(scope)}",
            )
        if DataClass.SPECIAL_CARE in self.classes and not c.explicit_special_care:
            raise Deny(
                Reason.CONSENT_SPECIAL_CARE_NOT_EXPLICIT,
                f"consent {c.consent_id} is not an explicit consent for special-care data",
            )
        if a.min_notice_version is not None and (c.notice_version or 0) < a.min_notice_version:
            raise Deny(
                Reason.CONSENT_NOTICE_OUTDATED,
                f"consent {c.consent_id} was given under "
                f"notice v{c.notice_version or 0}; agreement {a.uid} requires "
                f"v{a.min_notice_version}",
            )
        self.passed("consent covers subject, recipient, purpose and data")

    def _opt_out(self) -> None:
        provider, svc = self.provider, self.need_service()
        if provider is None or not provider.ppc_optout_filing_id:
            raise Deny(
                Reason.OPTOUT_NOT_FILED,
                "opt-out provision needs the provider's PPC filing (ppc_optout_filing_id)",
            )
        if svc.acquired_via_opt_out:
            raise Deny(
                Reason.OPTOUT_SOURCE_OPTOUT,
                f"{svc.id} holds data received by opt-out; it cannot be passed on by opt-out",
            )
        self.passed("opt-out filed with the PPC")

    def _foreign_transfer(self, a: Agreement) -> None:
        basis = self.need_basis()
        art = "Art. 71" if self.regime is Regime.PUBLIC else "Art. 28"
        for country in self.countries():
            if country == "JP" or country in DESIGNATED_COUNTRIES or a.recipient_conforming_system:
                continue
            if basis.art28_exempt:
                continue
            if basis.route is not Route.CONSENT:
                raise Deny(
                    Reason.CROSS_BORDER_NOT_PERMITTED,
                    f"provision to {country} under "
                    f"{basis.code} needs the individual's consent to foreign transfer "
                    f"or a conforming recipient system ({art})",
                )
            ft = self.consent.foreign_transfer if self.consent else None
            if ft is None or not ft.info_provided or country not in ft.countries:
                raise Deny(
                    Reason.CONSENT_FOREIGN_TRANSFER_MISSING,
                    "consent does not include an "
                    f"informed consent to transfer to {country} ({art})",
                )

    # -- S7 / S8 ---------------------------------------------------------------------------

    def stop_requests(self) -> None:
        self.stage = Step.S7_SUBJECT
        r, basis, svc = self.request, self.need_basis(), self.need_service()
        if not (basis.route is Route.CONSENT or basis.category is Category.OPT_OUT):
            return
        for stop in self.policy.stop_requests.get(r.subject_ref or "", ()):
            if stop.provider != svc.provider or self.at < stop.since:
                continue
            if stop.lifted_at is not None and self.at >= stop.lifted_at:
                continue
            hit = (
                stop.scope is StopScope.ALL
                or (
                    stop.scope is StopScope.RECIPIENT
                    and stop.recipient is not None
                    and client_matches(stop.recipient, r.client)
                )
                or (stop.scope is StopScope.PURPOSE and stop.purpose == r.purpose)
            )
            if hit:
                raise Deny(
                    Reason.STOP_REQUESTED,
                    f"the individual asked to stop this provision "
                    f"(stop request {stop.id}, {stop.scope.value})",
                )
        self.passed("no stop request applies")

    def quotas(self, a: Agreement) -> None:
        self.stage = Step.S8_QUOTA
        if not a.quotas.any:
            return
        if self.usage is None:
            raise Deny(
                Reason.USAGE_UNAVAILABLE,
                f"agreement {a.uid} has quotas but no usage counters were supplied",
            )
        day = self.usage.per_day.get(a.uid, 0)
        total = self.usage.total.get(a.uid, 0)
        if a.quotas.max_per_day is not None and day + 1 > a.quotas.max_per_day:
            raise Deny(
                Reason.QUOTA_EXCEEDED,
                f"agreement {a.uid}: {day} of {a.quotas.max_per_day} provisions today already used",
            )
        if a.quotas.max_total is not None and total + 1 > a.quotas.max_total:
            raise Deny(
                Reason.QUOTA_EXCEEDED,
                f"agreement {a.uid}: {total} of "
                f"{a.quotas.max_total} provisions in total already used",
            )
        self.passed("within quotas")

    def rank(self) -> int:
        """How far an agreement candidate got (checks passed): the most relevant refusal."""
        return len(self.checks)
