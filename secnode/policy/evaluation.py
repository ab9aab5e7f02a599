"""One evaluation as the node makes it: signed headers, stored policy, the core's ``decide``.

Shared by the decision point (on its writer thread) and ``secnode policy explain``,
so an explanation is the node's decision and not a re-implementation of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, select

from secnode.core.identifiers import ClientId, ServiceId
from secnode.core.message import MessageHeaders
from secnode.core.policy import (
    Decision,
    PolicyRequest,
    PolicySnapshot,
    UsageCounters,
    decide,
    request_from_headers,
)
from secnode.core.policy.request import (
    H_AGREEMENT,
    H_BASIS,
    H_CONSENT,
    H_COUNTRY,
    H_DATA_FROM,
    H_EVIDENCE,
    H_ISSUE,
    H_ITEMS,
    H_PURPOSE,
    H_RECURRING,
    H_SUBJECT,
    H_USER,
)
from secnode.core.policy.timeutil import format_instant, jst_day
from secnode.core.policy.vocabulary import Regime, Route, regime_of
from secnode.policy import records, store
from secnode.policy import tables as t

_HEADER_OF = (
    ("user_id", H_USER),
    ("issue", H_ISSUE),
    ("purpose", H_PURPOSE),
    ("legal_basis", H_BASIS),
    ("data_subject", H_SUBJECT),
    ("agreement", H_AGREEMENT),
    ("consent_id", H_CONSENT),
    ("data_items", H_ITEMS),
    ("evidence", H_EVIDENCE),
    ("recipient_country", H_COUNTRY),
    ("recurring", H_RECURRING),
    ("data_from", H_DATA_FROM),
)


def request_of(headers: MessageHeaders) -> PolicyRequest:
    """The policy request a signed message makes. Raises ``PolicyRequestError`` if malformed.

    Client and service come from the verified message, never from a header the
    client could set separately.
    """
    values = {
        name: value for attr, name in _HEADER_OF if (value := getattr(headers, attr)) is not None
    }
    return request_from_headers(
        headers.client, headers.service, values, message_id=headers.message_id
    )


def quota_agreements(registry: PolicySnapshot, request: PolicyRequest) -> list[str]:
    """Agreements with quotas that could decide this request (their counters are needed)."""
    return [
        a.uid
        for a in registry.agreements.values()
        if a.quotas.any and a.permissions_for(request.service)
    ]


def needs_history(registry: PolicySnapshot, request: PolicyRequest) -> bool:
    """Whether the recurrence rule may apply: an ad-hoc-only basis, or consent (a public
    body's consent-based provision is ad hoc unless within the registered purpose)."""
    basis = registry.basis(request.basis) if request.basis else None
    if basis is None:
        return False
    if basis.ad_hoc_only:
        return True
    if basis.route is not Route.CONSENT:
        return False
    service = registry.service(request.service)
    provider = registry.members.get(request.service.member)
    return (
        service is not None
        and provider is not None
        and regime_of(provider.legal_type) is Regime.PUBLIC
        and request.purpose not in service.registered_purposes
    )


def evaluate(
    conn: Connection,
    registry: PolicySnapshot | None,
    request: PolicyRequest,
    at: dt.datetime,
    *,
    lock: bool,
) -> Decision:
    """Decide ``request`` at ``at`` against the registry plus this subject's stored state.

    Only the consent the request names and the subject's stop requests are read (the
    tables may be large); quota counters are read for quota-bearing agreements, and
    locked until commit when ``lock`` (the node; ``policy explain`` only reads).
    A store that cannot be read gives the core ``None``: DENY ``SYSTEM_ERROR``.
    """
    if registry is None:
        return decide(request, None, at)
    try:
        consents = {}
        if request.consent_id is not None:
            record = store.consent_for(conn, request.consent_id, registry)
            if record is not None:
                consents[record.consent_id] = record
        stops = {}
        if request.subject_ref is not None:
            found = store.stops_for(conn, request.subject_ref, registry)
            if found:
                stops[request.subject_ref] = found
        quota = quota_agreements(registry, request)
        usage = UsageCounters()
        if quota:
            usage = records.lock_usage(conn, quota, at) if lock else _read_usage(conn, quota, at)
        if needs_history(registry, request):
            window = registry.settings.recurrence_window.days
            days = records.provision_days(conn, request, at, window)
            usage = dataclasses.replace(usage, provision_days=days)
        policy = dataclasses.replace(registry, consents=consents, stop_requests=stops)
    except Exception:
        return decide(request, None, at)
    return decide(request, policy, at, usage)


def _read_usage(conn: Connection, uids: list[str], at: dt.datetime) -> UsageCounters:
    """Counters as ``policy explain`` sees them: read, not locked (it decides nothing)."""
    day = jst_day(at).isoformat()
    per_day: dict[str, int] = {}
    total: dict[str, int] = {}
    for uid in uids:
        per_day[uid] = int(
            conn.execute(
                select(func.coalesce(func.sum(t.usage.c.count), 0)).where(
                    t.usage.c.agreement_uid == uid, t.usage.c.day == day
                )
            ).scalar_one()
        )
        total[uid] = int(
            conn.execute(
                select(func.coalesce(func.sum(t.usage.c.count), 0)).where(
                    t.usage.c.agreement_uid == uid
                )
            ).scalar_one()
        )
    return UsageCounters(per_day=per_day, total=total)


def malformed_entry(
    client: ClientId, service: ServiceId, message_id: str | None, message: str, at: dt.datetime
) -> dict[str, Any]:
    """Decision-log entry for a request whose policy headers cannot be read (never evaluated).

    Same keys as the core's ``decision_log_entry``; the reason is ``MALFORMED_REQUEST``.
    """
    return {
        "ts": format_instant(at),
        "message_id": message_id,
        "client": str(client),
        "recipient": str(client.member),
        "service": str(service),
        "user_id": None,
        "issue": None,
        "purpose": None,
        "basis": None,
        "basis_category": None,
        "appi_basis": None,
        "condition": None,
        "agreement": None,
        "consent_id": None,
        "subject_ref": None,
        "fields_requested": None,
        "fields_released": None,
        "allow": False,
        "decision": "DENY",
        "reason": "MALFORMED_REQUEST",
        "article": None,
        "step": "S2",
        "record_type": None,
        "policy_digest": None,
        "evaluator_version": None,
        "obligations": [],
        "message": message,
    }
