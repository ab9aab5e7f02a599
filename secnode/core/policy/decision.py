"""The policy decision point: ``decide`` (provider node) and ``precheck`` (client node).

Deny by default, first failing check decides, any error denies (fail closed).
Pure: no clock reads, no I/O; the caller passes the time and the usage counters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import outcome
from .evaluate import Deny, Evaluation
from .model import PolicySnapshot
from .reasons import REASONS, Reason
from .request import PolicyRequest, UsageCounters
from .result import EVALUATOR_VERSION, Decision, Obligation, ObligationKind
from .timeutil import format_instant
from .vocabulary import Route

__all__ = [
    "EVALUATOR_VERSION",
    "Decision",
    "Obligation",
    "ObligationKind",
    "decide",
    "decision_log_entry",
    "precheck",
]


def decide(
    request: PolicyRequest,
    policy: PolicySnapshot | None,
    at: datetime,
    usage: UsageCounters | None = None,
) -> Decision:
    """Decide whether the provider node may forward ``request`` at time ``at``.

    ``policy`` is None when no verified policy is available (signature or hash check
    failed at the edge): the answer is then DENY ``SYSTEM_ERROR``. ``usage`` holds the
    agreement counters; None with a quota-bearing agreement denies (fail closed).
    Never raises.
    """
    if policy is None:
        return _system_error(request, None, at, "no verified policy is loaded")
    try:
        return _decide(Evaluation(request, policy, at, usage))
    except Exception as exc:
        return _system_error(request, policy, at, f"evaluation failed: {type(exc).__name__}")


def _decide(ev: Evaluation) -> Decision:
    try:
        ev.integrity()
        ev.resolve_service()
        ev.fields_known()
        if not ev.personal():
            return outcome.allow_non_personal(ev)
        ev.parties()
        ev.envelope()
        ev.data_class()
        ev.applicability()
        basis = ev.basis
        if basis is not None and basis.route is Route.EXCEPTION:
            reason = ev.exception_route()
            return outcome.allow(ev, exception=reason)
        candidates = ev.candidates()
    except Deny as deny:
        return outcome.deny(ev, deny)
    return _agreement_route(ev, candidates)


def _agreement_route(ev: Evaluation, candidates: list[Any]) -> Decision:
    """Try each candidate agreement in id order; the first that passes decides.

    If all fail, report the refusal of the candidate that got furthest, and list
    the others so ``policy explain`` can show why each was not enough.
    """
    refused: list[tuple[Evaluation, Deny]] = []
    for agreement in candidates:
        sub = ev.fork()
        try:
            sub.agreement_checks(agreement)
            sub.basis_checks(agreement)
            sub.stop_requests()
            sub.quotas(agreement)
        except Deny as refusal:
            refused.append((sub, refusal))
            continue
        sub.alternatives = [(e.agreement.uid, d.reason.value) for e, d in refused if e.agreement]
        return outcome.allow(sub)
    best, worst_case = max(refused, key=lambda pair: pair[0].rank())
    best.alternatives = [
        (e.agreement.uid, d.reason.value) for e, d in refused if e is not best and e.agreement
    ]
    return outcome.deny(best, worst_case)


def precheck(
    request: PolicyRequest, policy: PolicySnapshot | None, at: datetime
) -> Decision | None:
    """Client-node early refusal: what can be known missing before sending.

    Uses the client node's copy of the provider's service classification. Returns a
    DENY decision (same reason codes as :func:`decide`) or None to forward the
    request; unknown services are forwarded (the provider decides).
    """
    if policy is None:
        return None
    ev = Evaluation(request, policy, at, None)
    try:
        ev.integrity()
        if policy.service(request.service) is None:
            return None
        ev.resolve_service()
        ev.fields_known()
        if not ev.personal():
            return None
        ev.envelope(know_purposes=bool(policy.purposes))
        ev.data_class()
        basis = ev.basis
        if basis is not None and basis.route is Route.CONSENT and request.consent_id is None:
            raise Deny(Reason.CONSENT_MISSING, "basis CONSENT needs X-Road-Consent-Id")
    except Deny as deny:
        return outcome.deny(ev, deny)
    except Exception as exc:
        return _system_error(request, policy, at, f"early check failed: {type(exc).__name__}")
    return None


def _system_error(
    request: PolicyRequest, policy: PolicySnapshot | None, at: datetime, message: str
) -> Decision:
    return Decision(
        allow=False,
        reason=Reason.SYSTEM_ERROR,
        article=None,
        message=message,
        step=REASONS[Reason.SYSTEM_ERROR].step,
        permitted_fields=(),
        basis=request.basis if isinstance(request, PolicyRequest) else None,
        evaluated_at=at if isinstance(at, datetime) else None,
        policy_digest=policy.digest if policy is not None else None,
        request=request if isinstance(request, PolicyRequest) else None,
    )


def decision_log_entry(decision: Decision) -> dict[str, Any]:
    """The decision-log entry of research §3.4 (the fields the core knows).

    The node adds ``xroad_id``/``request_hash`` links to the message log. This is
    also the input shape :mod:`.report` aggregates.
    """
    r = decision.request
    released = decision.permitted_fields if decision.allow else ()
    return {
        "ts": format_instant(decision.evaluated_at) if decision.evaluated_at else None,
        "message_id": r.message_id if r else None,
        "client": str(r.client) if r else None,
        "recipient": str(r.client.member) if r else None,
        "service": str(r.service) if r else None,
        "user_id": r.user_id if r else None,
        "issue": r.issue if r else None,
        "purpose": r.purpose if r else None,
        "basis": decision.basis,
        "basis_category": decision.basis_category.value if decision.basis_category else None,
        "appi_basis": decision.appi_basis,
        "condition": decision.condition,
        "agreement": f"{decision.agreement_id}@{decision.agreement_version}"
        if decision.agreement_id
        else None,
        "consent_id": decision.consent_id,
        "subject_ref": r.subject_ref if r else None,
        "fields_requested": list(r.fields) if r and r.fields is not None else None,
        "fields_released": list(released) if released is not None else None,
        "allow": decision.allow,
        "decision": decision.decision,
        "reason": decision.reason.value,
        "article": decision.article,
        "step": decision.step.value,
        "record_type": decision.record_type,
        "policy_digest": decision.policy_digest,
        "evaluator_version": EVALUATOR_VERSION,
        "obligations": [o.kind.value for o in decision.obligations],
    }
