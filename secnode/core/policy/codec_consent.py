"""JSON form of consent records (Kantara / ISO/IEC TS 27560 shaped) and stop requests."""

from __future__ import annotations

from ..identifiers import ServiceId
from . import readers as rd
from .model import ConsentRecord, ForeignTransfer, PolicySnapshot, StopRequest
from .readers import JsonObj
from .strict_json import Value
from .timeutil import format_instant
from .vocabulary import FIELD_NAME, PURPOSE_CODE, CollectionMethod, ConsentStatus, StopScope


def parse_consent(v: Value, ctx: PolicySnapshot) -> ConsentRecord:
    """Parse a consent record; recipients, purposes and services must be declared."""
    f = v.obj(
        ("consent_id", "subject_ref", "controller", "recipients", "purposes", "status"),
        (
            "services",
            "fields",
            "explicit_special_care",
            "foreign_transfer",
            "given_at",
            "expires_at",
            "withdrawn_at",
            "collection_method",
            "notice_version",
            "policy_url",
            "evidence_hash",
            "status_checked_at",
            "jurisdiction",
            "language",
        ),
    )
    controller_v = f.req("controller")
    controller = controller_v.member_id()
    if controller not in ctx.members:
        controller_v.fail(f"unknown member {str(controller)!r}")
    services_v = f.opt("services")
    services: tuple[ServiceId, ...] = ()
    if services_v is not None:
        services = tuple(rd.known_service(s, ctx, controller) for s in services_v.items())
    fields_v = f.opt("fields")
    fields = fields_v.strs(pattern=FIELD_NAME, what="field name") if fields_v else None
    foreign = f.opt("foreign_transfer")
    notice = f.opt("notice_version")
    return ConsentRecord(
        consent_id=f.req("consent_id").text(),
        subject_ref=f.req("subject_ref").text(),
        controller=controller,
        recipients=tuple(rd.known_client(c, ctx) for c in f.req("recipients").items(nonempty=True)),
        purposes=rd.purposes(f.req("purposes"), ctx, nonempty=True),
        status=f.req("status").enum(ConsentStatus, "consent status (DPV)"),
        services=services,
        fields=fields,
        explicit_special_care=rd.flag(f, "explicit_special_care"),
        foreign_transfer=_foreign(foreign) if foreign else None,
        given_at=rd.instant_opt(f.opt("given_at")),
        expires_at=rd.instant_opt(f.opt("expires_at")),
        withdrawn_at=rd.instant_opt(f.opt("withdrawn_at")),
        collection_method=rd.enum_opt(
            f.opt("collection_method"), CollectionMethod, "collection method"
        ),
        notice_version=notice.integer(minimum=1) if notice else None,
        policy_url=rd.text_opt(f.opt("policy_url")),
        evidence_hash=rd.text_opt(f.opt("evidence_hash")),
        status_checked_at=rd.instant_opt(f.opt("status_checked_at")),
        jurisdiction=rd.text_opt(f.opt("jurisdiction")) or "JP",
        language=rd.text_opt(f.opt("language")),
    )


def _foreign(v: Value) -> ForeignTransfer:
    f = v.obj(("countries", "info_provided"))
    return ForeignTransfer(rd.countries(f.req("countries")), f.req("info_provided").flag())


def consent_to_json(c: ConsentRecord) -> JsonObj:
    d: JsonObj = {
        "consent_id": c.consent_id,
        "subject_ref": c.subject_ref,
        "controller": str(c.controller),
        "recipients": [str(r) for r in c.recipients],
        "purposes": list(c.purposes),
        "status": c.status.value,
    }
    rd.put_opt(d, "services", [str(s) for s in c.services] or None)
    rd.put_opt(d, "fields", list(c.fields) if c.fields is not None else None)
    rd.put_opt(d, "explicit_special_care", c.explicit_special_care)
    if c.foreign_transfer is not None:
        d["foreign_transfer"] = {
            "countries": list(c.foreign_transfer.countries),
            "info_provided": c.foreign_transfer.info_provided,
        }
    for key in ("given_at", "expires_at", "withdrawn_at", "status_checked_at"):
        value = getattr(c, key)
        rd.put_opt(d, key, format_instant(value) if value is not None else None)
    rd.put_opt(d, "collection_method", c.collection_method.value if c.collection_method else None)
    rd.put_opt(d, "notice_version", c.notice_version)
    rd.put_opt(d, "policy_url", c.policy_url)
    rd.put_opt(d, "evidence_hash", c.evidence_hash)
    d["jurisdiction"] = c.jurisdiction
    rd.put_opt(d, "language", c.language)
    return d


def parse_stop_request(v: Value, ctx: PolicySnapshot) -> StopRequest:
    f = v.obj(
        ("id", "subject_ref", "provider", "scope", "since"), ("recipient", "purpose", "lifted_at")
    )
    provider_v = f.req("provider")
    provider = provider_v.member_id()
    if provider not in ctx.members:
        provider_v.fail(f"unknown member {str(provider)!r}")
    scope = f.req("scope").enum(StopScope, "stop scope")
    recipient_v, purpose_v = f.opt("recipient"), f.opt("purpose")
    if scope is StopScope.RECIPIENT and recipient_v is None:
        v.fail("scope RECIPIENT needs 'recipient'")
    if scope is StopScope.PURPOSE and purpose_v is None:
        v.fail("scope PURPOSE needs 'purpose'")
    purpose = None
    if purpose_v is not None:
        purpose = purpose_v.text(pattern=PURPOSE_CODE, what="purpose code")
        if purpose not in ctx.purposes:
            purpose_v.fail(f"unknown purpose code {purpose!r}")
    return StopRequest(
        id=f.req("id").text(),
        subject_ref=f.req("subject_ref").text(),
        provider=provider,
        scope=scope,
        since=f.req("since").instant(),
        recipient=recipient_v.client_id() if recipient_v else None,
        purpose=purpose,
        lifted_at=rd.instant_opt(f.opt("lifted_at")),
    )


def stop_request_to_json(s: StopRequest) -> JsonObj:
    d: JsonObj = {
        "id": s.id,
        "subject_ref": s.subject_ref,
        "provider": str(s.provider),
        "scope": s.scope.value,
        "since": format_instant(s.since),
    }
    rd.put_opt(d, "recipient", str(s.recipient) if s.recipient else None)
    rd.put_opt(d, "purpose", s.purpose)
    rd.put_opt(d, "lifted_at", format_instant(s.lifted_at) if s.lifted_at else None)
    return d
