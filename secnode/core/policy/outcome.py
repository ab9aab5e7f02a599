"""Building decisions from a finished evaluation: reason, article, obligations.

Kept apart from the checks so the rules (:mod:`.evaluate`) read without the
record-keeping detail of Arts. 29/30 and the duties passed to recipients.
"""

from __future__ import annotations

from typing import Any

from .evaluate import Deny, Evaluation
from .model import ExceptionReason
from .reasons import REASONS, Reason, Step
from .result import Decision, Obligation, ObligationKind
from .timeutil import fiscal_year_of
from .vocabulary import Category, DataClass, LegalBasis, Regime, Route

_OK_BY_CATEGORY = {
    Category.CONSENT: Reason.OK_CONSENT,
    Category.LAW: Reason.OK_STATUTE,
    Category.MY_NUMBER_ACT: Reason.OK_STATUTE,
    Category.WITHIN_PURPOSE: Reason.OK_WITHIN_PURPOSE,
    Category.PUBLIC_BODY_LEGAL_AFFAIRS: Reason.OK_PUBLIC_BODY,
    Category.INTERNAL_USE: Reason.OK_PUBLIC_BODY,
    Category.ACADEMIC_RESEARCH: Reason.OK_RESEARCH,
    Category.OPT_OUT: Reason.OK_OPT_OUT,
    Category.ENTRUSTMENT: Reason.OK_ENTRUSTMENT,
    Category.JOINT_USE: Reason.OK_JOINT_USE,
    Category.ANONYMIZED_PROVISION: Reason.OK_ANONYMIZED,
}


def appi_basis_of(basis: LegalBasis | None, regime: Regime | None) -> str | None:
    """The APPI basis a provision rests on: an ordinance's declared Art. 69 basis; consent by a
    public body is Art. 69(2)(i); every other built-in code is its own APPI basis."""
    if basis is None:
        return None
    if basis.condition is not None:
        return basis.rests_on
    if basis.route is Route.CONSENT and regime is Regime.PUBLIC:
        return "APPI69-2-1"
    return basis.code


def article_for(ev: Evaluation, reason: Reason) -> str | None:
    info = REASONS[reason]
    if info.basis_article and ev.basis is not None:
        regime = ev.regime or Regime.PRIVATE
        if regime not in ev.basis.regimes:  # a Ch. 4 code for a city: cite the city's rule
            return "APPI Art. 69" if regime is Regime.PUBLIC else "APPI Art. 27(1)"
        return ev.basis.article(regime)
    return info.article(ev.regime)


def deny(ev: Evaluation, refusal: Deny) -> Decision:
    return Decision(
        allow=False,
        reason=refusal.reason,
        article=article_for(ev, refusal.reason),
        message=refusal.message,
        step=ev.stage,
        permitted_fields=(),
        agreement_id=ev.agreement.uid if ev.agreement else None,
        agreement_version=ev.agreement.version if ev.agreement else None,
        basis=ev.request.basis,
        basis_category=ev.basis.category if ev.basis else None,
        appi_basis=appi_basis_of(ev.basis, ev.regime),
        condition=ev.basis.condition if ev.basis else None,
        consent_id=ev.request.consent_id,
        exception_profile_id=ev.profile.id if ev.profile else None,
        checks=tuple(ev.checks),
        alternatives=tuple(ev.alternatives),
        evaluated_at=ev.at,
        policy_digest=ev.policy.digest,
        request=ev.request,
    )


def allow_non_personal(ev: Evaluation) -> Decision:
    svc = ev.need_service()
    fields = ev.requested
    obligations = [Obligation(ObligationKind.LOG_DECISION)]
    if fields is not None:
        obligations.append(Obligation(ObligationKind.FILTER_FIELDS, {"fields": list(fields)}))
    return Decision(
        allow=True,
        reason=Reason.NOT_PERSONAL_DATA,
        article=None,
        message=f"no personal data requested from {svc.id}; access rights decide",
        step=Step.S3_DATA_CLASS,
        obligations=tuple(obligations),
        permitted_fields=fields,
        checks=tuple(ev.checks),
        evaluated_at=ev.at,
        policy_digest=ev.policy.digest,
        request=ev.request,
    )


def allow(ev: Evaluation, *, exception: ExceptionReason | None = None) -> Decision:
    basis, svc = ev.need_basis(), ev.need_service()
    regime = ev.regime or Regime.PRIVATE
    reason = Reason.OK_EXCEPTION if exception else _OK_BY_CATEGORY[basis.category]
    fields = ev.requested
    a = ev.agreement
    record_type = _record_type(ev, exception is not None)
    obligations = [Obligation(ObligationKind.LOG_DECISION)]
    if fields is not None:
        obligations.append(Obligation(ObligationKind.FILTER_FIELDS, {"fields": list(fields)}))
    obligations += _record_obligations(ev, record_type, basis, regime)
    obligations.append(
        Obligation(
            ObligationKind.TRANSPARENCY_COUNT,
            {
                "fiscal_year": fiscal_year_of(ev.at),
                "basis": basis.code,
                "category": basis.category.value,
                "recipient": str(ev.request.client.member),
            },
        )
    )
    obligations += _duties(ev)
    if exception is not None and ev.profile is not None:
        obligations.append(
            Obligation(ObligationKind.NOTIFY_PRIVACY_OFFICER, {"notify": list(ev.profile.notify)})
        )
        if ev.profile.post_review:
            obligations.append(Obligation(ObligationKind.POST_REVIEW, {"profile": ev.profile.id}))
    parts = [f"{basis.code} ({basis.label_en})"]
    if basis.condition is not None:
        parts.append(f"resting on {basis.rests_on or 'no declared APPI basis'}")
    if a is not None:
        parts.append(f"agreement {a.uid} v{a.version}")
    if ev.consent is not None:
        parts.append(f"consent {ev.consent.consent_id}")
    if ev.profile is not None:
        parts.append(f"exception profile {ev.profile.id}")
    return Decision(
        allow=True,
        reason=reason,
        article=basis.article(regime),
        message=f"{ev.request.client} may receive data from {svc.id}: " + ", ".join(parts),
        step=Step.S9_PERMIT,
        obligations=tuple(obligations),
        permitted_fields=fields,
        agreement_id=a.uid if a else None,
        agreement_version=a.version if a else None,
        basis=basis.code,
        basis_category=basis.category,
        appi_basis=appi_basis_of(basis, regime),
        condition=basis.condition,
        consent_id=ev.consent.consent_id if ev.consent else None,
        exception_profile_id=ev.profile.id if ev.profile else None,
        record_type=record_type,
        checks=tuple(ev.checks),
        alternatives=tuple(ev.alternatives),
        evaluated_at=ev.at,
        policy_digest=ev.policy.digest,
        request=ev.request,
    )


def _record_type(ev: Evaluation, exception: bool) -> str:
    basis = ev.need_basis()
    if basis.route is Route.CONSENT:
        return "CONSENT"
    if basis.category is Category.OPT_OUT:
        return "OPTOUT"
    if exception:
        return "EXCEPTION"
    if basis.category in (Category.ENTRUSTMENT, Category.JOINT_USE):
        return "NOT_THIRD_PARTY"
    if basis.category is Category.ANONYMIZED_PROVISION:
        return "ANONYMIZED"
    if ev.regime is Regime.PUBLIC:
        return "PUBLIC_BODY"
    return "EXCEPTION"


def _record_obligations(
    ev: Evaluation, record_type: str, basis: LegalBasis, regime: Regime
) -> list[Obligation]:
    r, svc, a = ev.request, ev.need_service(), ev.agreement
    required = basis.art29_record and regime is Regime.PRIVATE
    retention = ev.policy.settings.record_retention
    if required and a is not None and a.contract_substitutes_record:
        retention_text = "P1Y"
    else:
        retention_text = str(retention)
    provider = ev.provider
    provision: dict[str, Any] = {
        "record_type": record_type,
        "legally_required": required,
        "article": "APPI Art. 29"
        if required
        else (
            "kept for audit (public body: Art. 29 does not apply)"
            if regime is Regime.PUBLIC
            else "kept for audit (Art. 29 not required)"
        ),
        "retention": retention_text,
        "retention_from": "last provision",
        "recipient": str(r.client),
        "subject_ref": r.subject_ref,
        "data_items": list(ev.requested) if ev.requested is not None else None,
        "basis": basis.code,
        "appi_basis": appi_basis_of(basis, regime),
        "condition": basis.condition,
        "basis_article": basis.article(regime),
        "consent_id": ev.consent.consent_id if ev.consent else None,
        "agreement": f"{a.uid}@{a.version}" if a else None,
        "evidence": dict(r.evidence) or None,
        "issue": r.issue,
    }
    receipt: dict[str, Any] = {
        "article": "APPI Art. 30",
        "provider": str(svc.provider),
        "provider_name": provider.name if provider else None,
        "provider_address": provider.address if provider else None,
        "provider_representative": provider.representative if provider else None,
        "acquisition_circumstances": svc.acquisition_circumstances,
        "consent_fact": ev.consent is not None,
        "optout_filing_id": provider.ppc_optout_filing_id
        if provider and basis.category is Category.OPT_OUT
        else None,
    }
    return [
        Obligation(ObligationKind.PROVISION_RECORD, provision),
        Obligation(ObligationKind.RECEIPT_RECORD, receipt),
    ]


def _duties(ev: Evaluation) -> list[Obligation]:
    out: list[Obligation] = []
    a = ev.agreement
    purpose = ev.policy.purposes.get(ev.request.purpose or "")
    delete = (
        a.duties.delete_after
        if a and a.duties.delete_after
        else (purpose.default_retention if purpose else None)
    )
    if delete is not None:
        out.append(Obligation(ObligationKind.DELETE_AFTER, {"duration": str(delete)}))
    if a is not None:
        if a.duties.no_onward_transfer:
            out.append(Obligation(ObligationKind.NO_ONWARD_TRANSFER))
        if a.duties.inform_provider:
            out.append(Obligation(ObligationKind.INFORM_PROVIDER))
        if a.duties.use_limitation:
            out.append(Obligation(ObligationKind.USE_LIMITATION, {"text": a.duties.use_limitation}))
    if DataClass.ANONYMIZED in ev.classes:
        out.append(
            Obligation(
                ObligationKind.MARK_ANONYMIZED,
                {"publication_ref": a.publication_ref if a else None},
            )
        )
    if ev.classes & {DataClass.ANONYMIZED, DataClass.PSEUDONYMIZED}:
        out.append(Obligation(ObligationKind.NO_REIDENTIFICATION))
    return out
