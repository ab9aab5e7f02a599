"""The result of a policy evaluation: the decision, its reason and what the node must do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .reasons import Reason, Step
from .request import PolicyRequest
from .vocabulary import Category

EVALUATOR_VERSION = "secnode-policy/1"
"""Logged with every decision so an auditor knows which rules produced it."""


class ObligationKind(StrEnum):
    """What the node (or the recipient) must do when a request is allowed."""

    LOG_DECISION = "LOG_DECISION"
    """Write the decision log entry, linked to the message-log record (research §3.4)."""
    FILTER_FIELDS = "FILTER_FIELDS"
    """Release only ``fields`` of the provider's response (data minimisation)."""
    PROVISION_RECORD = "PROVISION_RECORD"
    """Provider-side record of the provision (APPI Art. 29 items)."""
    RECEIPT_RECORD = "RECEIPT_RECORD"
    """Recipient-side confirmation record (APPI Art. 30 items), sent with the response."""
    TRANSPARENCY_COUNT = "TRANSPARENCY_COUNT"
    """Count the provision for the yearly report (fiscal year, basis, recipient)."""
    DELETE_AFTER = "DELETE_AFTER"
    NO_ONWARD_TRANSFER = "NO_ONWARD_TRANSFER"
    INFORM_PROVIDER = "INFORM_PROVIDER"
    USE_LIMITATION = "USE_LIMITATION"
    """Conditions imposed on the recipient (APPI Art. 70)."""
    MARK_ANONYMIZED = "MARK_ANONYMIZED"
    """State explicitly that the data is anonymized information (APPI Art. 44)."""
    NO_REIDENTIFICATION = "NO_REIDENTIFICATION"
    NOTIFY_PRIVACY_OFFICER = "NOTIFY_PRIVACY_OFFICER"
    POST_REVIEW = "POST_REVIEW"
    """Queue the provision for after-the-fact review (exception profiles)."""


@dataclass(frozen=True, slots=True)
class Obligation:
    """One obligation with JSON-friendly parameters."""

    kind: ObligationKind
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, **dict(self.params)}


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy decision. ``allow`` is False unless every check of §3.3 passed."""

    allow: bool
    reason: Reason
    article: str | None
    """Legal anchor for the outcome, e.g. ``APPI Art. 69(2)(iii)`` (orientation only)."""
    message: str
    """One line for logs and error responses; names the rule, never payload data."""
    step: Step
    obligations: tuple[Obligation, ...] = ()
    permitted_fields: tuple[str, ...] | None = ()
    """Fields the response may carry; ``()`` on DENY; None if the service declares none."""
    agreement_id: str | None = None
    agreement_version: int | None = None
    basis: str | None = None
    basis_category: Category | None = None
    appi_basis: str | None = None
    """The APPI basis the provision rests on (an ordinance basis names its Art. 69 basis)."""
    condition: str | None = None
    """The ordinance condition on top of the APPI basis (ordinance bases only)."""
    consent_id: str | None = None
    exception_profile_id: str | None = None
    record_type: str | None = None
    checks: tuple[str, ...] = ()
    """Checks passed before the outcome, in order (for ``policy explain``)."""
    alternatives: tuple[tuple[str, str], ...] = ()
    """Other candidate agreements and why each was refused: ``(uid, reason)``."""
    evaluated_at: datetime | None = None
    policy_digest: str | None = None
    request: PolicyRequest | None = None

    @property
    def decision(self) -> str:
        return "ALLOW" if self.allow else "DENY"

    def obligation(self, kind: ObligationKind) -> Obligation | None:
        for item in self.obligations:
            if item.kind is kind:
                return item
        return None
