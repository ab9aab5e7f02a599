"""Explaining a decision to people: a JSON-friendly dict and a text rendering.

``secnode policy explain REQUEST.json`` prints :func:`render_explanation` (or the
dict with ``--json``). The text names the rule and the article, never payload.
"""

from __future__ import annotations

from typing import Any

from .model import PolicySnapshot
from .reasons import REASONS
from .request import request_to_json
from .result import EVALUATOR_VERSION, Decision
from .timeutil import format_instant
from .vocabulary import CATEGORY_LABELS, builtin_basis


def _basis_info(decision: Decision, policy: PolicySnapshot | None) -> dict[str, Any] | None:
    code = decision.basis
    if code is None:
        return None
    basis = policy.basis(code) if policy is not None else builtin_basis(code)
    if basis is None:
        return {"code": code, "known": False}
    ja, en = CATEGORY_LABELS[basis.category]
    return {
        "code": code,
        "known": True,
        "category": basis.category.value,
        "label_ja": basis.label_ja,
        "label_en": basis.label_en,
        "category_ja": ja,
        "category_en": en,
        "route": basis.route.value,
        "dpv": basis.dpv,
    }


def explain(decision: Decision, policy: PolicySnapshot | None = None) -> dict[str, Any]:
    """Everything about a decision as plain JSON types (stable keys, for ``--json``)."""
    info = REASONS[decision.reason]
    return {
        "decision": decision.decision,
        "allow": decision.allow,
        "reason": decision.reason.value,
        "reason_summary": info.summary,
        "article": decision.article,
        "message": decision.message,
        "step": decision.step.value,
        "request": request_to_json(decision.request) if decision.request else None,
        "basis": _basis_info(decision, policy),
        "agreement": {"id": decision.agreement_id, "version": decision.agreement_version}
        if decision.agreement_id
        else None,
        "consent_id": decision.consent_id,
        "exception_profile_id": decision.exception_profile_id,
        "record_type": decision.record_type,
        "permitted_fields": list(decision.permitted_fields)
        if decision.permitted_fields is not None
        else None,
        "obligations": [o.to_json() for o in decision.obligations],
        "checks_passed": list(decision.checks),
        "other_agreements": [
            {"agreement": uid, "reason": reason} for uid, reason in decision.alternatives
        ],
        "evaluated_at": format_instant(decision.evaluated_at) if decision.evaluated_at else None,
        "policy_digest": decision.policy_digest,
        "evaluator_version": EVALUATOR_VERSION,
    }


def render_explanation(decision: Decision, policy: PolicySnapshot | None = None) -> str:
    """Plain text for a terminal: outcome first, then why, then what the node must do."""
    data = explain(decision, policy)
    lines = [
        f"{data['decision']}  {data['reason']}"
        + (f"  ({data['article']})" if data["article"] else "")
    ]
    lines.append(f"  {data['message']}")
    req = data["request"] or {}
    if req:
        lines.append(f"  request:     {req.get('client')} -> {req.get('service')}")
        lines.append(f"  purpose:     {req.get('purpose', '(none)')}")
    basis = data["basis"]
    if basis:
        label = (
            f" - {basis['label_en']} / {basis['label_ja']}"
            if basis.get("known")
            else " (not in the closed list)"
        )
        lines.append(f"  basis:       {basis['code']}{label}")
    if data["agreement"]:
        lines.append(f"  agreement:   {data['agreement']['id']} v{data['agreement']['version']}")
    if data["consent_id"]:
        lines.append(f"  consent:     {data['consent_id']}")
    if data["exception_profile_id"]:
        lines.append(f"  exception:   {data['exception_profile_id']}")
    if data["allow"]:
        fields = data["permitted_fields"]
        lines.append(
            "  release:     "
            + (
                ", ".join(fields)
                if fields is not None
                else "(service declares no fields; no filtering)"
            )
        )
    lines.append(f"  step:        {data['step']} - {data['reason_summary']}")
    if data["checks_passed"]:
        lines.append("  checks passed:")
        lines += [f"    - {c}" for c in data["checks_passed"]]
    if data["other_agreements"]:
        lines.append("  other agreements considered:")
        lines += [f"    - {a['agreement']}: {a['reason']}" for a in data["other_agreements"]]
    if data["obligations"]:
        lines.append("  obligations:")
        for ob in data["obligations"]:
            params = ", ".join(f"{k}={v}" for k, v in ob.items() if k != "kind" and v is not None)
            lines.append(f"    - {ob['kind']}" + (f" ({params})" if params else ""))
    lines.append(
        f"  evaluated at {data['evaluated_at']}; policy {data['policy_digest']}; "
        f"{data['evaluator_version']}"
    )
    return "\n".join(lines) + "\n"
