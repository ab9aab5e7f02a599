"""What a request declares to the policy engine, and how it is read from headers or JSON.

The request's policy context travels inside the signed X-Road message (research
§3.2), so the message log covers it. Header names are constants here so the
proxy and the client-side check read the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from certs.errors import SecnodeError

from ..identifiers import ClientId, IdentifierError, ServiceId, parse_client
from .strict_json import PolicyFormatError, Value, parse_json
from .timeutil import format_instant, parse_instant
from .vocabulary import COUNTRY_CODE, EVIDENCE_KEYS, FIELD_NAME, LegalType

H_CLIENT = "X-Road-Client"
H_SERVICE = "X-Road-Service"
H_ID = "X-Road-Id"
H_USER = "X-Road-UserId"
H_ISSUE = "X-Road-Issue"
H_PURPOSE = "X-Road-Purpose"
H_BASIS = "X-Road-Legal-Basis"
H_AGREEMENT = "X-Road-Agreement"
H_CONSENT = "X-Road-Consent-Id"
H_SUBJECT = "X-Road-Data-Subject"
H_ITEMS = "X-Road-Data-Items"
H_EVIDENCE = "X-Road-Evidence"
H_COUNTRY = "X-Road-Recipient-Country"
H_RECURRING = "X-Road-Recurring"
H_DATA_FROM = "X-Road-Data-From"
POLICY_HEADERS = (
    H_ISSUE,
    H_PURPOSE,
    H_BASIS,
    H_AGREEMENT,
    H_CONSENT,
    H_SUBJECT,
    H_ITEMS,
    H_EVIDENCE,
    H_COUNTRY,
    H_RECURRING,
    H_DATA_FROM,
)
MAX_HEADER_VALUE = 4096
"""Longer policy header values are refused: they are codes and references, not payload."""


@dataclass(frozen=True, slots=True)
class AgreementRef:
    """``X-Road-Agreement: DSA-0007;v=3``; the version pins what the client agreed to."""

    uid: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> AgreementRef:
        uid, _, rest = text.strip().partition(";")
        if not uid.strip():
            raise ValueError(f"agreement reference {text!r} has no id")
        if not rest:
            return cls(uid.strip())
        key, _, value = rest.strip().partition("=")
        if key.strip() != "v" or not value.strip().isdigit():
            raise ValueError(f"agreement reference {text!r}: expected 'ID;v=N'")
        return cls(uid.strip(), int(value))

    def __str__(self) -> str:
        return self.uid if self.version is None else f"{self.uid};v={self.version}"


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """A request as the policy engine sees it. None means the header was absent."""

    client: ClientId
    """Client subsystem (or member), authenticated by the node, not declared by the client."""
    service: ServiceId
    purpose: str | None = None
    basis: str | None = None
    """Legal-basis code from the closed list (``X-Road-Legal-Basis``)."""
    subject_ref: str | None = None
    """Pairwise pseudonymous subject reference (``X-Road-Data-Subject``)."""
    fields: tuple[str, ...] | None = None
    """Requested data items; None requests every field of the service (the widest)."""
    agreement: AgreementRef | None = None
    consent_id: str | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)
    """Evidence for exception bases (document type, number, statute, ...)."""
    recipient_country: str | None = None
    """Where the data will be processed; the member's registered country also counts."""
    recurring: bool = False
    """The client declares this flow as recurring (Art. 69(2) bases are ad hoc only)."""
    data_from: datetime | None = None
    """Start of the requested data period, checked against an exception's look-back."""
    issue: str | None = None
    user_id: str | None = None
    message_id: str | None = None
    client_legal_type: LegalType | None = None
    """Optional claim; if given it must match the registry (the registry decides)."""
    time: datetime | None = None
    """The client's request time, checked against the node's clock for skew."""

    def without(self, *names: str) -> PolicyRequest:
        """Copy with some headers removed (used by tests and by ``policy explain``)."""
        empty: dict[str, Any] = {n: ({} if n == "evidence" else None) for n in names}
        if "recurring" in empty:
            empty["recurring"] = False
        return replace(self, **empty)


@dataclass(frozen=True, slots=True)
class UsageCounters:
    """Allowed provisions so far, per agreement uid, counted from the decision log.

    ``per_day`` counts the JST day containing the decision time; ``total`` counts all.
    """

    per_day: Mapping[str, int] = field(default_factory=dict)
    total: Mapping[str, int] = field(default_factory=dict)
    provision_days: frozenset[date] | None = None
    """JST days on which this node provided to the same client subsystem, from the same
    service, for the same purpose (its decision log); None when not known. The recurrence
    rule (``settings.recurrence``) judges "ad hoc" from these, not from the client's word."""


class PolicyRequestError(SecnodeError, ValueError):
    """A request whose policy context cannot be read; the node refuses it (MALFORMED_REQUEST)."""

    reason = "MALFORMED_REQUEST"


def _clean(value: str | None, name: str, lines: bool = False) -> str | None:
    """``lines``: tabs and line breaks are text (a SOAP ``issue`` may span lines)."""
    if value is None:
        return None
    text = value.strip()
    if len(text) > MAX_HEADER_VALUE:
        raise PolicyRequestError(f"{name} is longer than {MAX_HEADER_VALUE} characters")
    if any(ord(c) < 0x20 and not (lines and c in "\t\r\n") for c in text):
        raise PolicyRequestError(f"{name} contains control characters")
    return text or None


def _fields(text: str | None, name: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if not FIELD_NAME.match(n):
            raise PolicyRequestError(f"{name}: invalid field name {n!r}")
    return names or None


def _evidence(raw: object, name: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise PolicyRequestError(f"{name} must be a JSON object")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key not in EVIDENCE_KEYS:
            allowed = ", ".join(sorted(EVIDENCE_KEYS))
            raise PolicyRequestError(f"{name}: unknown evidence key {key!r} (allowed: {allowed})")
        if not isinstance(value, str):
            raise PolicyRequestError(f"{name}.{key} must be a string")
        out[key] = value
    return out


def request_from_headers(
    client: ClientId,
    service: ServiceId,
    headers: Mapping[str, str],
    *,
    time: datetime | None = None,
    message_id: str | None = None,
) -> PolicyRequest:
    """Read the policy headers of an X-Road REST request (names case-insensitive).

    ``client`` and ``service`` come from the authenticated message, not from here.
    Raises :class:`PolicyRequestError` on malformed values (the node refuses those).
    """
    lower = {k.lower(): v for k, v in headers.items()}

    def get(name: str) -> str | None:
        return _clean(lower.get(name.lower()), name)

    try:
        agreement = get(H_AGREEMENT)
        evidence = get(H_EVIDENCE)
        country = get(H_COUNTRY)
        if country is not None and not COUNTRY_CODE.match(country):
            raise PolicyRequestError(f"{H_COUNTRY}: expected an ISO 3166 alpha-2 code")
        recurring = get(H_RECURRING)
        if recurring is not None and recurring.lower() not in ("true", "false"):
            raise PolicyRequestError(f"{H_RECURRING}: expected true or false")
        data_from = get(H_DATA_FROM)
        return PolicyRequest(
            client=client,
            service=service,
            purpose=get(H_PURPOSE),
            basis=get(H_BASIS),
            subject_ref=get(H_SUBJECT),
            fields=_fields(get(H_ITEMS), H_ITEMS),
            agreement=AgreementRef.parse(agreement) if agreement else None,
            consent_id=get(H_CONSENT),
            evidence=_evidence(parse_json(evidence), H_EVIDENCE) if evidence else {},
            recipient_country=country,
            recurring=recurring is not None and recurring.lower() == "true",
            data_from=parse_instant(data_from) if data_from else None,
            issue=_clean(lower.get(H_ISSUE.lower()), H_ISSUE, lines=True),
            user_id=get(H_USER),
            message_id=message_id or get(H_ID),
            time=time,
        )
    except PolicyRequestError:
        raise
    except (ValueError, PolicyFormatError) as exc:
        raise PolicyRequestError(str(exc)) from None


_REQUEST_KEYS = (
    "purpose",
    "legal_basis",
    "subject",
    "fields",
    "agreement",
    "consent_id",
    "evidence",
    "recipient_country",
    "recurring",
    "data_from",
    "issue",
    "user_id",
    "message_id",
    "client_legal_type",
    "time",
)


def parse_request(data: object) -> PolicyRequest:
    """Read a request from its JSON form (``secnode policy explain REQUEST.json``), strictly."""
    f = Value(data).obj(("client", "service"), _REQUEST_KEYS)

    def text(key: str) -> str | None:
        v = f.opt(key)
        return v.text() if v is not None else None

    client_v = f.req("client")
    try:
        client = parse_client(client_v.text())
    except IdentifierError as exc:
        client_v.fail(str(exc))
    fields_v = f.opt("fields")
    evidence_v = f.opt("evidence")
    agreement_v = f.opt("agreement")
    country_v = f.opt("recipient_country")
    recurring_v = f.opt("recurring")
    data_from_v, time_v = f.opt("data_from"), f.opt("time")
    legal_v = f.opt("client_legal_type")
    try:
        evidence = _evidence(evidence_v.raw, "evidence") if evidence_v else {}
        agreement = AgreementRef.parse(agreement_v.text()) if agreement_v else None
    except ValueError as exc:
        raise PolicyFormatError("evidence" if evidence_v else "agreement", str(exc)) from None
    return PolicyRequest(
        client=client,
        service=f.req("service").service_id(),
        purpose=text("purpose"),
        basis=text("legal_basis"),
        subject_ref=text("subject"),
        fields=tuple(v.text(pattern=FIELD_NAME, what="field name") for v in fields_v.items())
        if fields_v
        else None,
        agreement=agreement,
        consent_id=text("consent_id"),
        evidence=evidence,
        recipient_country=country_v.text(pattern=COUNTRY_CODE, what="country code")
        if country_v
        else None,
        recurring=recurring_v.flag() if recurring_v else False,
        data_from=data_from_v.instant() if data_from_v else None,
        issue=text("issue"),
        user_id=text("user_id"),
        message_id=text("message_id"),
        client_legal_type=legal_v.enum(LegalType, "legal type") if legal_v else None,
        time=time_v.instant() if time_v else None,
    )


def request_to_json(r: PolicyRequest) -> dict[str, Any]:
    """JSON form of a request, readable by :func:`parse_request`."""
    d: dict[str, Any] = {"client": str(r.client), "service": str(r.service)}
    pairs: list[tuple[str, object]] = [
        ("purpose", r.purpose),
        ("legal_basis", r.basis),
        ("subject", r.subject_ref),
        ("fields", list(r.fields) if r.fields is not None else None),
        ("agreement", str(r.agreement) if r.agreement else None),
        ("consent_id", r.consent_id),
        ("evidence", dict(r.evidence) or None),
        ("recipient_country", r.recipient_country),
        ("recurring", r.recurring or None),
        ("data_from", format_instant(r.data_from) if r.data_from else None),
        ("issue", r.issue),
        ("user_id", r.user_id),
        ("message_id", r.message_id),
        ("client_legal_type", r.client_legal_type.value if r.client_legal_type else None),
        ("time", format_instant(r.time) if r.time else None),
    ]
    d.update({k: v for k, v in pairs if v is not None})
    return d
