"""JSON form of the registry entities: settings, members, ordinance bases, purposes,
exception profiles and services.

Each ``parse_*`` takes the JSON value (with its path) and the snapshot holding what
may be referenced; each ``*_to_json`` is its inverse (``parse_x(x_to_json(e)) == e``).
"""

from __future__ import annotations

import re

from . import readers as rd
from .model import (
    ExceptionProfile,
    ExceptionReason,
    Member,
    OrdinanceBasis,
    PolicySettings,
    PolicySnapshot,
    PurposeCode,
    Service,
    ServiceField,
)
from .readers import JsonObj
from .strict_json import PolicyFormatError, Value
from .vocabulary import (
    DPV_PURPOSES,
    EVIDENCE_KEYS,
    FIELD_NAME,
    ORDINANCE_APPI_BASES,
    ORDINANCE_CODE,
    PURPOSE_CODE,
    DataClass,
    LegalType,
    OrdinanceKind,
    Route,
    Status,
)

SUBSYSTEM_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# -- settings, members, purposes, ordinance bases -------------------------------------------


def parse_settings(v: Value) -> PolicySettings:
    f = v.obj(
        optional=(
            "require_issue",
            "max_clock_skew_seconds",
            "consent_max_status_age_seconds",
            "record_retention",
            "recurrence",
            "require_agreement_pin",
        )
    )
    default = PolicySettings()
    retention = default.record_retention
    if (r := f.opt("record_retention")) is not None:
        retention = r.duration()
        if retention.approx_years() < 3:
            r.fail(f"record retention {retention} is below the 3 years APPI requires")
    skew = f.opt("max_clock_skew_seconds")
    age = f.opt("consent_max_status_age_seconds")
    issue = f.opt("require_issue")
    max_days, window = default.recurrence_max_days, default.recurrence_window
    if (rec := f.opt("recurrence")) is not None:
        rf = rec.obj(("max_days", "window"))
        max_days = rf.req("max_days").integer(minimum=1)
        window_v = rf.req("window")
        window = window_v.duration()
        if not window.exact or window.hours or window.minutes or window.seconds or not window.days:
            window_v.fail("the recurrence window is a whole number of days (e.g. P30D)")
        if window.days < max_days:
            window_v.fail(f"a window of {window} cannot hold more than {max_days} separate days")
    pin = f.opt("require_agreement_pin")
    return PolicySettings(
        require_issue=issue.flag() if issue else default.require_issue,
        max_clock_skew_seconds=skew.integer(minimum=0) if skew else default.max_clock_skew_seconds,
        consent_max_status_age_seconds=age.integer(minimum=0) if age else None,
        record_retention=retention,
        recurrence_max_days=max_days,
        recurrence_window=window,
        require_agreement_pin=pin.flag() if pin else False,
    )


def settings_to_json(s: PolicySettings) -> JsonObj:
    d: JsonObj = {
        "require_issue": s.require_issue,
        "max_clock_skew_seconds": s.max_clock_skew_seconds,
        "record_retention": str(s.record_retention),
        "recurrence": {"max_days": s.recurrence_max_days, "window": str(s.recurrence_window)},
        "require_agreement_pin": s.require_agreement_pin,
    }
    if s.consent_max_status_age_seconds is not None:
        d["consent_max_status_age_seconds"] = s.consent_max_status_age_seconds
    return d


def parse_member(v: Value) -> Member:
    f = v.obj(
        ("id", "legal_type", "name"),
        ("country", "status", "address", "representative", "ppc_optout_filing_id", "units"),
    )
    units: list[tuple[str, str]] = []
    if (units_v := f.opt("units")) is not None:
        for item in units_v.items(nonempty=True):
            uf = item.obj(("subsystem", "name"))
            code = uf.req("subsystem").text(pattern=SUBSYSTEM_CODE, what="subsystem code")
            if code in {c for c, _ in units}:
                uf.req("subsystem").fail(f"subsystem {code!r} is listed twice")
            units.append((code, uf.req("name").text()))
    return Member(
        id=f.req("id").member_id(),
        legal_type=f.req("legal_type").enum(LegalType, "legal type"),
        name=f.req("name").text(),
        country=rd.country_opt(f.opt("country")) or "JP",
        status=rd.enum_opt(f.opt("status"), Status, "status") or Status.ACTIVE,
        address=rd.text_opt(f.opt("address")),
        representative=rd.text_opt(f.opt("representative")),
        ppc_optout_filing_id=rd.text_opt(f.opt("ppc_optout_filing_id")),
        units=tuple(units),
    )


def member_to_json(m: Member) -> JsonObj:
    d: JsonObj = {
        "id": str(m.id),
        "legal_type": m.legal_type.value,
        "name": m.name,
        "country": m.country,
        "status": m.status.value,
    }
    rd.put_opt(d, "address", m.address)
    rd.put_opt(d, "representative", m.representative)
    rd.put_opt(d, "ppc_optout_filing_id", m.ppc_optout_filing_id)
    rd.put_opt(d, "units", [{"subsystem": c, "name": n} for c, n in m.units] or None)
    return d


def parse_ordinance_basis(v: Value) -> OrdinanceBasis:
    f = v.obj(("code", "kind", "ordinance", "article", "label_ja", "label_en"), ("appi_basis",))
    appi_v = f.opt("appi_basis")
    if appi_v is not None and appi_v.text() not in ORDINANCE_APPI_BASES:
        appi_v.fail(
            f"an ordinance reason rests on an APPI Art. 69 basis "
            f"({', '.join(sorted(ORDINANCE_APPI_BASES))}), not {appi_v.raw!r}"
        )
    return OrdinanceBasis(
        code=f.req("code").text(pattern=ORDINANCE_CODE, what="ordinance basis code (ORD-...)"),
        kind=f.req("kind").enum(OrdinanceKind, "ordinance reason kind"),
        ordinance=f.req("ordinance").text(),
        article=f.req("article").text(),
        label_ja=f.req("label_ja").text(),
        label_en=f.req("label_en").text(),
        appi_basis=appi_v.text() if appi_v is not None else None,
    )


def ordinance_basis_to_json(o: OrdinanceBasis) -> JsonObj:
    d: JsonObj = {
        "code": o.code,
        "kind": o.kind.value,
        "ordinance": o.ordinance,
        "article": o.article,
        "label_ja": o.label_ja,
        "label_en": o.label_en,
    }
    rd.put_opt(d, "appi_basis", o.appi_basis)
    return d


def parse_purpose(v: Value, ctx: PolicySnapshot) -> PurposeCode:
    f = v.obj(
        ("code", "label_ja", "label_en"),
        ("dpv_purpose", "default_retention", "allowed_bases", "compatible_with"),
    )
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
        allowed_bases=rd.basis_codes(bases, ctx, any_route=True) if bases else (),
        compatible_with=compatible.strs(pattern=PURPOSE_CODE, what="purpose code")
        if compatible
        else (),
    )


def purpose_to_json(p: PurposeCode) -> JsonObj:
    d: JsonObj = {"code": p.code, "label_ja": p.label_ja, "label_en": p.label_en}
    rd.put_opt(d, "dpv_purpose", p.dpv_purpose)
    rd.put_opt(d, "default_retention", str(p.default_retention) if p.default_retention else None)
    rd.put_opt(d, "allowed_bases", list(p.allowed_bases) or None)
    rd.put_opt(d, "compatible_with", list(p.compatible_with) or None)
    return d


# -- services and exception profiles --------------------------------------------------------


def parse_exception_profile(v: Value, ctx: PolicySnapshot) -> ExceptionProfile:
    f = v.obj(
        ("id", "reasons"),
        ("title", "fields", "max_lookback", "allowed_countries", "post_review", "notify"),
    )
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
        if fields
        else None,
        max_lookback=duration,
        allowed_countries=rd.countries(countries) if countries else ("JP",),
        post_review=post.flag() if post else True,
        notify=notify.strs() if notify else (),
        title=rd.text_opt(f.opt("title")),
    )


def _exception_reason(v: Value, ctx: PolicySnapshot) -> ExceptionReason:
    f = v.obj(("basis", "eligible_recipient_types"), ("required_evidence", "accepted_doc_types"))
    basis_v = f.req("basis")
    code = rd.basis_code(basis_v, ctx, any_route=True)
    basis = ctx.basis(code)
    if basis is None or basis.route is not Route.EXCEPTION:
        basis_v.fail(
            f"basis {code!r} is not an exception basis; exception profiles take "
            "APPI27-1-2/3/4, APPI69-2-4 or declared ORD-* codes"
        )
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
    rd.put_opt(d, "title", p.title)
    reasons = []
    for r in p.reasons:
        item: JsonObj = {
            "basis": r.basis,
            "eligible_recipient_types": [t.value for t in r.eligible_recipient_types],
        }
        rd.put_opt(item, "required_evidence", list(r.required_evidence) or None)
        rd.put_opt(item, "accepted_doc_types", list(r.accepted_doc_types) or None)
        reasons.append(item)
    d["reasons"] = reasons
    rd.put_opt(d, "fields", list(p.fields) if p.fields is not None else None)
    rd.put_opt(d, "max_lookback", str(p.max_lookback) if p.max_lookback else None)
    d["allowed_countries"] = list(p.allowed_countries)
    d["post_review"] = p.post_review
    rd.put_opt(d, "notify", list(p.notify) or None)
    return d


def parse_service(v: Value, ctx: PolicySnapshot) -> Service:
    f = v.obj(
        ("id",),
        (
            "title",
            "status",
            "fields",
            "data_classes",
            "registered_purposes",
            "subject_required",
            "exception_profiles",
            "acquisition_circumstances",
            "acquired_via_opt_out",
            "personal_info_file_ref",
        ),
    )
    fields_v = f.opt("fields")
    classes_v = f.opt("data_classes")
    if (fields_v is None) == (classes_v is None):
        v.fail(
            "a service declares either 'fields' (preferred) or 'data_classes', not both "
            "and not neither"
        )
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
                raise PolicyFormatError(
                    path,
                    f"profile {pid!r} names fields the service does "
                    f"not declare: {', '.join(extra)}",
                )
    subject = f.opt("subject_required")
    via_optout = f.opt("acquired_via_opt_out")
    return Service(
        id=f.req("id").service_id(),
        fields=fields,
        data_classes=classes,
        registered_purposes=rd.purposes(purposes_v, ctx) if purposes_v else (),
        status=rd.enum_opt(f.opt("status"), Status, "status") or Status.ACTIVE,
        subject_required=subject.flag() if subject else True,
        exception_profiles=profiles,
        acquisition_circumstances=rd.text_opt(f.opt("acquisition_circumstances")),
        acquired_via_opt_out=via_optout.flag() if via_optout else False,
        personal_info_file_ref=rd.text_opt(f.opt("personal_info_file_ref")),
        title=rd.text_opt(f.opt("title")),
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
    rd.put_opt(d, "title", s.title)
    d["status"] = s.status.value
    if s.fields:
        fields = []
        for item in s.fields:
            fd: JsonObj = {"name": item.name, "class": item.data_class.value}
            rd.put_opt(fd, "linkage_key", item.linkage_key)
            fields.append(fd)
        d["fields"] = fields
    else:
        d["data_classes"] = sorted(c.value for c in s.data_classes)
    rd.put_opt(d, "registered_purposes", list(s.registered_purposes) or None)
    d["subject_required"] = s.subject_required
    rd.put_opt(d, "exception_profiles", list(s.exception_profiles) or None)
    rd.put_opt(d, "acquisition_circumstances", s.acquisition_circumstances)
    rd.put_opt(d, "acquired_via_opt_out", s.acquired_via_opt_out)
    rd.put_opt(d, "personal_info_file_ref", s.personal_info_file_ref)
    return d
