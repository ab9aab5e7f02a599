"""JSON form of each policy entity: strict parsing against the closed vocabulary, and export.

Each ``parse_*`` takes the JSON value, a path for error messages and the snapshot
holding what may be referenced (members, services, purposes, bases, profiles), so a
reference to anything undeclared is refused with the exact path. Each ``*_to_json``
is its inverse; ``parse_x(x_to_json(e)) == e``.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from ..identifiers import ClientId, ServiceId
from .model import (
    Agreement,
    ConsentRecord,
    Duties,
    ExceptionProfile,
    ExceptionReason,
    ForeignTransfer,
    Member,
    OrdinanceBasis,
    Permission,
    PolicySettings,
    PolicySnapshot,
    PurposeCode,
    Quotas,
    Service,
    ServiceField,
    StopRequest,
)
from .schema import Fields, PolicyFormatError, Value
from .timeutil import format_instant
from .vocabulary import (
    COUNTRY_CODE,
    DPV_PURPOSES,
    EVIDENCE_KEYS,
    FIELD_NAME,
    FORBIDDEN_BASES,
    ORDINANCE_CODE,
    PURPOSE_CODE,
    AgreementState,
    AgreementType,
    CollectionMethod,
    ConsentStatus,
    DataClass,
    LegalType,
    OrdinanceKind,
    Route,
    Status,
    StopScope,
)

JsonObj = dict[str, Any]
E = TypeVar("E", bound=Enum)

# ODRL profile: the only leftOperands and operators a permission may use. Anything
# else is refused at load, so no constraint is ever silently skipped at evaluation.
CONSTRAINT_PROFILE: dict[str, frozenset[str]] = {
    "purpose": frozenset({"isAnyOf"}),
    "legalBasis": frozenset({"isAnyOf"}),
    "dataItem": frozenset({"isPartOf"}),
    "dateTime": frozenset({"gteq", "lt"}),
    "recipientCountry": frozenset({"isAnyOf"}),
    "recipientType": frozenset({"isAnyOf"}),
}


def _opt(d: JsonObj, key: str, value: object) -> None:
    """Export optional values only when set, so exported files stay short and diffable."""
    if value is not None and value != () and value is not False:
        d[key] = value


# -- settings, members, purposes, ordinance bases -------------------------------------------

def parse_settings(v: Value) -> PolicySettings:
    f = v.obj(optional=("require_issue", "max_clock_skew_seconds",
                        "consent_max_status_age_seconds", "record_retention"))
    default = PolicySettings()
    retention = default.record_retention
    if (r := f.opt("record_retention")) is not None:
        retention = r.duration()
        if retention.approx_years() < 3:
            r.fail(f"record retention {retention} is below the 3 years APPI requires")
    skew = f.opt("max_clock_skew_seconds")
    age = f.opt("consent_max_status_age_seconds")
    issue = f.opt("require_issue")
    return PolicySettings(
        require_issue=issue.flag() if issue else default.require_issue,
        max_clock_skew_seconds=skew.integer(minimum=0) if skew else default.max_clock_skew_seconds,
        consent_max_status_age_seconds=age.integer(minimum=0) if age else None,
        record_retention=retention,
    )


def settings_to_json(s: PolicySettings) -> JsonObj:
    d: JsonObj = {
        "require_issue": s.require_issue,
        "max_clock_skew_seconds": s.max_clock_skew_seconds,
        "record_retention": str(s.record_retention),
    }
    if s.consent_max_status_age_seconds is not None:
        d["consent_max_status_age_seconds"] = s.consent_max_status_age_seconds
    return d


def parse_member(v: Value) -> Member:
    f = v.obj(("id", "legal_type", "name"),
              ("country", "status", "address", "representative", "ppc_optout_filing_id"))
    return Member(
        id=f.req("id").member_id(),
        legal_type=f.req("legal_type").enum(LegalType, "legal type"),
        name=f.req("name").text(),
        country=_country(f.opt("country")) or "JP",
        status=_enum(f.opt("status"), Status, "status") or Status.ACTIVE,
        address=_text(f.opt("address")),
        representative=_text(f.opt("representative")),
        ppc_optout_filing_id=_text(f.opt("ppc_optout_filing_id")),
    )


def member_to_json(m: Member) -> JsonObj:
    d: JsonObj = {"id": str(m.id), "legal_type": m.legal_type.value, "name": m.name,
                  "country": m.country, "status": m.status.value}
    _opt(d, "address", m.address)
    _opt(d, "representative", m.representative)
    _opt(d, "ppc_optout_filing_id", m.ppc_optout_filing_id)
    return d


def parse_ordinance_basis(v: Value) -> OrdinanceBasis:
    f = v.obj(("code", "kind", "ordinance", "article", "label_ja", "label_en"))
    return OrdinanceBasis(
        code=f.req("code").text(pattern=ORDINANCE_CODE, what="ordinance basis code (ORD-...)"),
        kind=f.req("kind").enum(OrdinanceKind, "ordinance reason kind"),
        ordinance=f.req("ordinance").text(),
        article=f.req("article").text(),
        label_ja=f.req("label_ja").text(),
        label_en=f.req("label_en").text(),
    )


def ordinance_basis_to_json(o: OrdinanceBasis) -> JsonObj:
    return {"code": o.code, "kind": o.kind.value, "ordinance": o.ordinance,
            "article": o.article, "label_ja": o.label_ja, "label_en": o.label_en}


def parse_purpose(v: Value, ctx: PolicySnapshot) -> PurposeCode:
    f = v.obj(("code", "label_ja", "label_en"),
              ("dpv_purpose", "default_retention", "allowed_bases", "compatible_with"))
    dpv = f.opt("dpv_purpose")
    if dpv is not None and dpv.text() not in DPV_PURPOSES:
        dpv.fail(f"unknown DPV purpose {dpv.raw!r} (allowed: {', '.join(sorted(DPV_PURPOSES))})")
    bases = f.opt("allowed_bases")
    compatible = f.opt("compatible_with")
    retention = f.opt("default_retention")
    return PurposeCode(
        code=f.req("code").text(pattern=PURPOSE_CODE, what="purpose code"),
        label_ja=f.req("label_ja").text(),
        label_en=f.req("label_en").text(),
        dpv_purpose=dpv.text() if dpv else None,
        default_retention=retention.duration() if retention else None,
        allowed_bases=_bases(bases, ctx, any_route=True) if bases else (),
        compatible_with=compatible.strs(pattern=PURPOSE_CODE, what="purpose code")
        if compatible else (),
    )


def purpose_to_json(p: PurposeCode) -> JsonObj:
    d: JsonObj = {"code": p.code, "label_ja": p.label_ja, "label_en": p.label_en}
    _opt(d, "dpv_purpose", p.dpv_purpose)
    _opt(d, "default_retention", str(p.default_retention) if p.default_retention else None)
    _opt(d, "allowed_bases", list(p.allowed_bases) or None)
    _opt(d, "compatible_with", list(p.compatible_with) or None)
    return d


# -- services and exception profiles --------------------------------------------------------

def parse_exception_profile(v: Value, ctx: PolicySnapshot) -> ExceptionProfile:
    f = v.obj(("id", "reasons"), ("title", "fields", "max_lookback", "allowed_countries",
                                  "post_review", "notify"))
    reasons = tuple(_exception_reason(r, ctx) for r in f.req("reasons").items(nonempty=True))
    codes = [r.basis for r in reasons]
    if len(set(codes)) != len(codes):
        f.req("reasons").fail("a basis is listed twice")
    lookback = f.opt("max_lookback")
    duration = lookback.duration() if lookback else None
    if lookback is not None and duration is not None and not duration.exact:
        lookback.fail("look-back must be in days/hours (e.g. P14D), not years or months")
    fields = f.opt("fields")
    countries = f.opt("allowed_countries")
    post = f.opt("post_review")
    notify = f.opt("notify")
    return ExceptionProfile(
        id=f.req("id").text(),
        reasons=reasons,
        fields=fields.strs(pattern=FIELD_NAME, what="field name", nonempty=True)
        if fields else None,
        max_lookback=duration,
        allowed_countries=_countries(countries) if countries else ("JP",),
        post_review=post.flag() if post else True,
        notify=notify.strs() if notify else (),
        title=_text(f.opt("title")),
    )


def _exception_reason(v: Value, ctx: PolicySnapshot) -> ExceptionReason:
    f = v.obj(("basis", "eligible_recipient_types"), ("required_evidence", "accepted_doc_types"))
    basis_v = f.req("basis")
    code = _basis(basis_v, ctx, any_route=True)
    basis = ctx.basis(code)
    if basis is None or basis.route is not Route.EXCEPTION:
        basis_v.fail(f"basis {code!r} is not an exception basis; exception profiles take "
                     "APPI27-1-2/3/4, APPI69-2-4 or declared ORD-* codes")
    evidence = f.opt("required_evidence")
    keys = evidence.strs(what="evidence key") if evidence else ()
    for i, key in enumerate(keys):
        if key not in EVIDENCE_KEYS:
            raise PolicyFormatError(
                f"{evidence.path}[{i}]" if evidence else "",
                f"unknown evidence key {key!r} (allowed: {', '.join(sorted(EVIDENCE_KEYS))})",
            )
    docs = f.opt("accepted_doc_types")
    types = f.req("eligible_recipient_types")
    return ExceptionReason(
        basis=code,
        eligible_recipient_types=tuple(
            t.enum(LegalType, "legal type") for t in types.items(nonempty=True)
        ),
        required_evidence=keys,
        accepted_doc_types=docs.strs() if docs else (),
    )


def exception_profile_to_json(p: ExceptionProfile) -> JsonObj:
    d: JsonObj = {"id": p.id}
    _opt(d, "title", p.title)
    reasons = []
    for r in p.reasons:
        item: JsonObj = {"basis": r.basis,
                         "eligible_recipient_types": [t.value for t in r.eligible_recipient_types]}
        _opt(item, "required_evidence", list(r.required_evidence) or None)
        _opt(item, "accepted_doc_types", list(r.accepted_doc_types) or None)
        reasons.append(item)
    d["reasons"] = reasons
    _opt(d, "fields", list(p.fields) if p.fields is not None else None)
    _opt(d, "max_lookback", str(p.max_lookback) if p.max_lookback else None)
    d["allowed_countries"] = list(p.allowed_countries)
    d["post_review"] = p.post_review
    _opt(d, "notify", list(p.notify) or None)
    return d


def parse_service(v: Value, ctx: PolicySnapshot) -> Service:
    f = v.obj(("id",), ("title", "status", "fields", "data_classes", "registered_purposes",
                        "subject_required", "exception_profiles", "acquisition_circumstances",
                        "acquired_via_opt_out", "personal_info_file_ref"))
    fields_v = f.opt("fields")
    classes_v = f.opt("data_classes")
    if (fields_v is None) == (classes_v is None):
        v.fail("a service declares either 'fields' (preferred) or 'data_classes', not both "
               "and not neither")
    fields: tuple[ServiceField, ...] = ()
    classes: frozenset[DataClass] = frozenset()
    if fields_v is not None:
        fields = tuple(_service_field(item) for item in fields_v.items(nonempty=True))
        names = [x.name for x in fields]
        if len(set(names)) != len(names):
            fields_v.fail("a field name is declared twice")
    elif classes_v is not None:
        classes = frozenset(c.enum(DataClass, "data class") for c in classes_v.items(nonempty=True))
    purposes_v = f.opt("registered_purposes")
    profiles_v = f.opt("exception_profiles")
    profiles = profiles_v.strs(what="exception profile id") if profiles_v else ()
    for i, pid in enumerate(profiles):
        profile = ctx.exception_profiles.get(pid)
        path = f"{profiles_v.path}[{i}]" if profiles_v else ""
        if profile is None:
            raise PolicyFormatError(path, f"unknown exception profile {pid!r}")
        if profile.fields is not None and fields:
            extra = sorted(set(profile.fields) - {x.name for x in fields})
            if extra:
                raise PolicyFormatError(path, f"profile {pid!r} names fields the service does "
                                        f"not declare: {', '.join(extra)}")
    subject = f.opt("subject_required")
    via_optout = f.opt("acquired_via_opt_out")
    return Service(
        id=f.req("id").service_id(),
        fields=fields,
        data_classes=classes,
        registered_purposes=_purposes(purposes_v, ctx) if purposes_v else (),
        status=_enum(f.opt("status"), Status, "status") or Status.ACTIVE,
        subject_required=subject.flag() if subject else True,
        exception_profiles=profiles,
        acquisition_circumstances=_text(f.opt("acquisition_circumstances")),
        acquired_via_opt_out=via_optout.flag() if via_optout else False,
        personal_info_file_ref=_text(f.opt("personal_info_file_ref")),
        title=_text(f.opt("title")),
    )


def _service_field(v: Value) -> ServiceField:
    f = v.obj(("name", "class"), ("linkage_key",))
    key = f.opt("linkage_key")
    return ServiceField(
        name=f.req("name").text(pattern=FIELD_NAME, what="field name"),
        data_class=f.req("class").enum(DataClass, "data class"),
        linkage_key=key.flag() if key else False,
    )


def service_to_json(s: Service) -> JsonObj:
    d: JsonObj = {"id": str(s.id)}
    _opt(d, "title", s.title)
    d["status"] = s.status.value
    if s.fields:
        fields = []
        for item in s.fields:
            fd: JsonObj = {"name": item.name, "class": item.data_class.value}
            _opt(fd, "linkage_key", item.linkage_key)
            fields.append(fd)
        d["fields"] = fields
    else:
        d["data_classes"] = sorted(c.value for c in s.data_classes)
    _opt(d, "registered_purposes", list(s.registered_purposes) or None)
    d["subject_required"] = s.subject_required
    _opt(d, "exception_profiles", list(s.exception_profiles) or None)
    _opt(d, "acquisition_circumstances", s.acquisition_circumstances)
    _opt(d, "acquired_via_opt_out", s.acquired_via_opt_out)
    _opt(d, "personal_info_file_ref", s.personal_info_file_ref)
    return d


# -- agreements ------------------------------------------------------------------------------

_AGREEMENT_KEYS = ("title", "type", "state", "valid_to", "allowed_countries", "recurring",
                   "quotas", "duties", "publication_ref", "joint_use_notice_ref",
                   "min_notice_version", "recipient_conforming_system",
                   "recipient_links_personal_data", "contract_substitutes_record")


def parse_agreement(v: Value, ctx: PolicySnapshot) -> Agreement:
    """Parse an ODRL-shaped agreement; every reference must exist in ``ctx``."""
    f = v.obj(("uid", "version", "assigner", "assignee", "valid_from", "permission"),
              _AGREEMENT_KEYS)
    provider_v = f.req("assigner")
    provider = provider_v.member_id()
    if provider not in ctx.members:
        provider_v.fail(f"unknown member {str(provider)!r} (declare it under 'members')")
    consumers = tuple(_known_client(c, ctx) for c in f.req("assignee").items(nonempty=True))
    if len(set(consumers)) != len(consumers):
        f.req("assignee").fail("a consumer is listed twice")
    permissions = tuple(
        _permission(p, ctx, provider) for p in f.req("permission").items(nonempty=True)
    )
    valid_from = f.req("valid_from").bound(end=False)
    valid_to_v = f.opt("valid_to")
    valid_to = valid_to_v.bound(end=True) if valid_to_v else None
    if valid_to_v is not None and valid_to is not None and valid_to <= valid_from:
        valid_to_v.fail("validity ends before it starts")
    countries = f.opt("allowed_countries")
    recurring = f.opt("recurring")
    notice = f.opt("min_notice_version")
    return Agreement(
        uid=f.req("uid").text(),
        version=f.req("version").integer(minimum=1),
        provider=provider,
        consumers=consumers,
        permissions=permissions,
        valid_from=valid_from,
        valid_to=valid_to,
        state=_enum(f.opt("state"), AgreementState, "agreement state") or AgreementState.DRAFT,
        type=_enum(f.opt("type"), AgreementType, "agreement type") or AgreementType.PROVISION,
        allowed_countries=_countries(countries) if countries else ("JP",),
        recurring=recurring.flag() if recurring else False,
        quotas=_quotas(f.opt("quotas")),
        duties=_duties(f.opt("duties")),
        publication_ref=_text(f.opt("publication_ref")),
        joint_use_notice_ref=_text(f.opt("joint_use_notice_ref")),
        min_notice_version=notice.integer(minimum=1) if notice else None,
        recipient_conforming_system=_flag(f, "recipient_conforming_system"),
        recipient_links_personal_data=_flag(f, "recipient_links_personal_data"),
        contract_substitutes_record=_flag(f, "contract_substitutes_record"),
        title=_text(f.opt("title")),
    )


def _permission(v: Value, ctx: PolicySnapshot, provider: object) -> Permission:
    f = v.obj(("target", "constraint"), ("action", "statute_ref"))
    if (action := f.opt("action")) is not None and action.text() != "use":
        action.fail(f"unknown action {action.raw!r} (allowed: use)")
    target_v = f.req("target")
    target = target_v.service_id()
    service = ctx.service(target)
    if service is None:
        target_v.fail(f"unknown service {str(target)!r} (declare it under 'services')")
    if target.member != provider:
        target_v.fail(f"service {str(target)!r} does not belong to the assigner {provider!s}")
    seen: dict[tuple[str, str], Value] = {}
    for c in f.req("constraint").items(nonempty=True):
        cf = c.obj(("leftOperand", "operator", "rightOperand"))
        left_v, op_v = cf.req("leftOperand"), cf.req("operator")
        left, op = left_v.text(), op_v.text()
        if left not in CONSTRAINT_PROFILE:
            left_v.fail(f"unknown constraint {left!r} (allowed: "
                        f"{', '.join(sorted(CONSTRAINT_PROFILE))})")
        if op not in CONSTRAINT_PROFILE[left]:
            op_v.fail(f"operator {op!r} is not allowed for {left!r} (allowed: "
                      f"{', '.join(sorted(CONSTRAINT_PROFILE[left]))})")
        if (left, op) in seen:
            c.fail(f"constraint {left} {op} given twice")
        seen[(left, op)] = cf.req("rightOperand")
    for needed in ("purpose", "legalBasis"):
        if (needed, "isAnyOf") not in seen:
            f.req("constraint").fail(f"a permission needs a {needed!r} constraint")
    fields: tuple[str, ...] | None = None
    if (item_v := seen.get(("dataItem", "isPartOf"))) is not None:
        if not service.declares_fields:
            item_v.fail("the service declares no fields, so no dataItem constraint can apply")
        fields = item_v.strs(pattern=FIELD_NAME, what="field name", nonempty=True)
        for i, name in enumerate(fields):
            if service.field(name) is None:
                raise PolicyFormatError(f"{item_v.path}[{i}]",
                                        f"service {str(target)!r} has no field {name!r}")
    bases = _bases(seen[("legalBasis", "isAnyOf")], ctx, any_route=False)
    statute = _text(f.opt("statute_ref"))
    nb, na = seen.get(("dateTime", "gteq")), seen.get(("dateTime", "lt"))
    countries = seen.get(("recipientCountry", "isAnyOf"))
    types = seen.get(("recipientType", "isAnyOf"))
    return Permission(
        target=target,
        purposes=_purposes(seen[("purpose", "isAnyOf")], ctx, nonempty=True),
        bases=bases,
        fields=fields,
        statute_ref=statute,
        not_before=nb.instant() if nb else None,
        not_after=na.instant() if na else None,
        recipient_countries=_countries(countries) if countries else None,
        recipient_types=tuple(t.enum(LegalType, "legal type") for t in types.items(nonempty=True))
        if types else None,
    )


def permission_to_json(p: Permission) -> JsonObj:
    cons: list[JsonObj] = [
        {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": list(p.purposes)},
        {"leftOperand": "legalBasis", "operator": "isAnyOf", "rightOperand": list(p.bases)},
    ]
    if p.fields is not None:
        cons.append({"leftOperand": "dataItem", "operator": "isPartOf",
                     "rightOperand": list(p.fields)})
    if p.not_before is not None:
        cons.append({"leftOperand": "dateTime", "operator": "gteq",
                     "rightOperand": format_instant(p.not_before)})
    if p.not_after is not None:
        cons.append({"leftOperand": "dateTime", "operator": "lt",
                     "rightOperand": format_instant(p.not_after)})
    if p.recipient_countries is not None:
        cons.append({"leftOperand": "recipientCountry", "operator": "isAnyOf",
                     "rightOperand": list(p.recipient_countries)})
    if p.recipient_types is not None:
        cons.append({"leftOperand": "recipientType", "operator": "isAnyOf",
                     "rightOperand": [t.value for t in p.recipient_types]})
    d: JsonObj = {"target": str(p.target), "action": "use", "constraint": cons}
    _opt(d, "statute_ref", p.statute_ref)
    return d


def agreement_to_json(a: Agreement) -> JsonObj:
    d: JsonObj = {"uid": a.uid, "version": a.version}
    _opt(d, "title", a.title)
    d.update({
        "type": a.type.value, "state": a.state.value, "assigner": str(a.provider),
        "assignee": [str(c) for c in a.consumers], "valid_from": format_instant(a.valid_from),
    })
    _opt(d, "valid_to", format_instant(a.valid_to) if a.valid_to else None)
    d["allowed_countries"] = list(a.allowed_countries)
    d["recurring"] = a.recurring
    if a.quotas.any:
        q: JsonObj = {}
        _opt(q, "max_per_day", a.quotas.max_per_day)
        _opt(q, "max_total", a.quotas.max_total)
        d["quotas"] = q
    if a.duties != Duties():
        du: JsonObj = {}
        _opt(du, "delete_after", str(a.duties.delete_after) if a.duties.delete_after else None)
        _opt(du, "no_onward_transfer", a.duties.no_onward_transfer)
        _opt(du, "inform_provider", a.duties.inform_provider)
        _opt(du, "use_limitation", a.duties.use_limitation)
        d["duties"] = du
    for key in ("publication_ref", "joint_use_notice_ref", "min_notice_version",
                "recipient_conforming_system", "recipient_links_personal_data",
                "contract_substitutes_record"):
        _opt(d, key, getattr(a, key))
    d["permission"] = [permission_to_json(p) for p in a.permissions]
    return d


def _quotas(v: Value | None) -> Quotas:
    if v is None:
        return Quotas()
    f = v.obj(optional=("max_per_day", "max_total"))
    day, total = f.opt("max_per_day"), f.opt("max_total")
    return Quotas(day.integer(minimum=0) if day else None,
                  total.integer(minimum=0) if total else None)


def _duties(v: Value | None) -> Duties:
    if v is None:
        return Duties()
    f = v.obj(optional=("delete_after", "no_onward_transfer", "inform_provider",
                        "use_limitation"))
    delete = f.opt("delete_after")
    return Duties(
        delete_after=delete.duration() if delete else None,
        no_onward_transfer=_flag(f, "no_onward_transfer"),
        inform_provider=_flag(f, "inform_provider"),
        use_limitation=_text(f.opt("use_limitation")),
    )


# -- consents and stop requests --------------------------------------------------------------

def parse_consent(v: Value, ctx: PolicySnapshot) -> ConsentRecord:
    """Parse a consent record; recipients, purposes and services must be declared."""
    f = v.obj(("consent_id", "subject_ref", "controller", "recipients", "purposes", "status"),
              ("services", "fields", "explicit_special_care", "foreign_transfer", "given_at",
               "expires_at", "withdrawn_at", "collection_method", "notice_version",
               "policy_url", "evidence_hash", "status_checked_at", "jurisdiction", "language"))
    controller_v = f.req("controller")
    controller = controller_v.member_id()
    if controller not in ctx.members:
        controller_v.fail(f"unknown member {str(controller)!r}")
    services_v = f.opt("services")
    services: tuple[ServiceId, ...] = ()
    if services_v is not None:
        services = tuple(_known_service(s, ctx, controller) for s in services_v.items())
    fields_v = f.opt("fields")
    fields = fields_v.strs(pattern=FIELD_NAME, what="field name") if fields_v else None
    foreign = f.opt("foreign_transfer")
    notice = f.opt("notice_version")
    return ConsentRecord(
        consent_id=f.req("consent_id").text(),
        subject_ref=f.req("subject_ref").text(),
        controller=controller,
        recipients=tuple(_known_client(c, ctx) for c in f.req("recipients").items(nonempty=True)),
        purposes=_purposes(f.req("purposes"), ctx, nonempty=True),
        status=f.req("status").enum(ConsentStatus, "consent status (DPV)"),
        services=services,
        fields=fields,
        explicit_special_care=_flag(f, "explicit_special_care"),
        foreign_transfer=_foreign(foreign) if foreign else None,
        given_at=_instant(f.opt("given_at")),
        expires_at=_instant(f.opt("expires_at")),
        withdrawn_at=_instant(f.opt("withdrawn_at")),
        collection_method=_enum(f.opt("collection_method"), CollectionMethod,
                                "collection method"),
        notice_version=notice.integer(minimum=1) if notice else None,
        policy_url=_text(f.opt("policy_url")),
        evidence_hash=_text(f.opt("evidence_hash")),
        status_checked_at=_instant(f.opt("status_checked_at")),
        jurisdiction=_text(f.opt("jurisdiction")) or "JP",
        language=_text(f.opt("language")),
    )


def _foreign(v: Value) -> ForeignTransfer:
    f = v.obj(("countries", "info_provided"))
    return ForeignTransfer(_countries(f.req("countries")), f.req("info_provided").flag())


def consent_to_json(c: ConsentRecord) -> JsonObj:
    d: JsonObj = {
        "consent_id": c.consent_id, "subject_ref": c.subject_ref,
        "controller": str(c.controller), "recipients": [str(r) for r in c.recipients],
        "purposes": list(c.purposes), "status": c.status.value,
    }
    _opt(d, "services", [str(s) for s in c.services] or None)
    _opt(d, "fields", list(c.fields) if c.fields is not None else None)
    _opt(d, "explicit_special_care", c.explicit_special_care)
    if c.foreign_transfer is not None:
        d["foreign_transfer"] = {"countries": list(c.foreign_transfer.countries),
                                 "info_provided": c.foreign_transfer.info_provided}
    for key in ("given_at", "expires_at", "withdrawn_at", "status_checked_at"):
        value = getattr(c, key)
        _opt(d, key, format_instant(value) if value is not None else None)
    _opt(d, "collection_method", c.collection_method.value if c.collection_method else None)
    _opt(d, "notice_version", c.notice_version)
    _opt(d, "policy_url", c.policy_url)
    _opt(d, "evidence_hash", c.evidence_hash)
    d["jurisdiction"] = c.jurisdiction
    _opt(d, "language", c.language)
    return d


def parse_stop_request(v: Value, ctx: PolicySnapshot) -> StopRequest:
    f = v.obj(("id", "subject_ref", "provider", "scope", "since"),
              ("recipient", "purpose", "lifted_at"))
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
        lifted_at=_instant(f.opt("lifted_at")),
    )


def stop_request_to_json(s: StopRequest) -> JsonObj:
    d: JsonObj = {"id": s.id, "subject_ref": s.subject_ref, "provider": str(s.provider),
                  "scope": s.scope.value, "since": format_instant(s.since)}
    _opt(d, "recipient", str(s.recipient) if s.recipient else None)
    _opt(d, "purpose", s.purpose)
    _opt(d, "lifted_at", format_instant(s.lifted_at) if s.lifted_at else None)
    return d


# -- shared field readers --------------------------------------------------------------------

def _text(v: Value | None) -> str | None:
    return v.text() if v is not None else None


def _flag(f: Fields, key: str) -> bool:
    v = f.opt(key)
    return v.flag() if v is not None else False


def _instant(v: Value | None) -> datetime | None:
    return v.instant() if v is not None else None


def _enum(v: Value | None, enum: type[E], what: str) -> E | None:
    return v.enum(enum, what) if v is not None else None


def _country(v: Value | None) -> str | None:
    return v.text(pattern=COUNTRY_CODE, what="country code (ISO 3166 alpha-2)") if v else None


def _countries(v: Value) -> tuple[str, ...]:
    return v.strs(pattern=COUNTRY_CODE, what="country code (ISO 3166 alpha-2)", nonempty=True)


def _purposes(v: Value, ctx: PolicySnapshot, *, nonempty: bool = False) -> tuple[str, ...]:
    codes = v.strs(pattern=PURPOSE_CODE, what="purpose code", nonempty=nonempty)
    for i, code in enumerate(codes):
        if code not in ctx.purposes:
            raise PolicyFormatError(f"{v.path}[{i}]",
                                    f"unknown purpose code {code!r} (declare it under 'purposes')")
    return codes


def _basis(v: Value, ctx: PolicySnapshot, *, any_route: bool) -> str:
    code = v.text()
    if code in FORBIDDEN_BASES:
        v.fail(f"{code!r} is not a basis under APPI (there is no legitimate-interest basis)")
    basis = ctx.basis(code)
    if basis is None:
        v.fail(f"unknown legal basis code {code!r} (see docs/policy.md for the closed list; "
               "ordinance reasons must be declared under 'ordinance_bases')")
    if not any_route and basis.route is Route.EXCEPTION:
        v.fail(f"{code!r} is an exception basis: configure it in an exception profile, "
               "not in an agreement")
    return code


def _bases(v: Value, ctx: PolicySnapshot, *, any_route: bool) -> tuple[str, ...]:
    items = list(v.items(nonempty=True))
    codes = tuple(_basis(item, ctx, any_route=any_route) for item in items)
    if len(set(codes)) != len(codes):
        v.fail("a basis code is listed twice")
    return codes


def _known_client(v: Value, ctx: PolicySnapshot) -> ClientId:
    client = v.client_id()
    if client.member not in ctx.members:
        v.fail(f"unknown member {str(client.member)!r} (declare it under 'members')")
    return client


def _known_service(v: Value, ctx: PolicySnapshot, controller: object) -> ServiceId:
    sid = v.service_id()
    if ctx.service(sid) is None:
        v.fail(f"unknown service {str(sid)!r}")
    if sid.member != controller:
        v.fail(f"service {str(sid)!r} does not belong to the controller {controller!s}")
    return sid
