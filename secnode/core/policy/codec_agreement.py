"""JSON form of data-sharing agreements: ODRL-shaped, with a closed constraint profile.

Every leftOperand/operator pair the engine evaluates is listed in
:data:`CONSTRAINT_PROFILE`; anything else is refused at load, so no constraint is
ever silently skipped (the EDC "unbound constraint" trap, research §2).
"""

from __future__ import annotations

from ..identifiers import MemberId
from . import readers as rd
from .model import Agreement, Duties, Permission, PolicySnapshot, Quotas, Service
from .readers import JsonObj
from .strict_json import PolicyFormatError, Value
from .timeutil import format_instant
from .vocabulary import (
    FIELD_NAME,
    PSEUDONYMIZED_BASES,
    AgreementState,
    AgreementType,
    Category,
    DataClass,
    LegalType,
    Regime,
    Route,
    regime_of,
)

CONSTRAINT_PROFILE: dict[str, frozenset[str]] = {
    "purpose": frozenset({"isAnyOf"}),
    "legalBasis": frozenset({"isAnyOf"}),
    "dataItem": frozenset({"isPartOf"}),
    "dateTime": frozenset({"gteq", "lt"}),
    "recipientCountry": frozenset({"isAnyOf"}),
    "recipientType": frozenset({"isAnyOf"}),
}


_AGREEMENT_KEYS = (
    "title",
    "type",
    "state",
    "valid_to",
    "allowed_countries",
    "recurring",
    "quotas",
    "duties",
    "publication_ref",
    "joint_use_notice_ref",
    "min_notice_version",
    "recipient_conforming_system",
    "recipient_links_personal_data",
    "contract_substitutes_record",
)


def parse_agreement(v: Value, ctx: PolicySnapshot) -> Agreement:
    """Parse an ODRL-shaped agreement; every reference must exist in ``ctx``."""
    f = v.obj(
        ("uid", "version", "assigner", "assignee", "valid_from", "permission"), _AGREEMENT_KEYS
    )
    provider_v = f.req("assigner")
    provider = provider_v.member_id()
    if provider not in ctx.members:
        provider_v.fail(f"unknown member {str(provider)!r} (declare it under 'members')")
    consumers = tuple(rd.known_client(c, ctx) for c in f.req("assignee").items(nonempty=True))
    if len(set(consumers)) != len(consumers):
        f.req("assignee").fail("a consumer is listed twice")
    recurring = f.opt("recurring")
    is_recurring = recurring.flag() if recurring else False
    permissions = tuple(
        _permission(p, ctx, provider, is_recurring)
        for p in f.req("permission").items(nonempty=True)
    )
    valid_from = f.req("valid_from").bound(end=False)
    valid_to_v = f.opt("valid_to")
    valid_to = valid_to_v.bound(end=True) if valid_to_v else None
    if valid_to_v is not None and valid_to is not None and valid_to <= valid_from:
        valid_to_v.fail("validity ends before it starts")
    countries = f.opt("allowed_countries")
    notice = f.opt("min_notice_version")
    return Agreement(
        uid=f.req("uid").text(),
        version=f.req("version").integer(minimum=1),
        provider=provider,
        consumers=consumers,
        permissions=permissions,
        valid_from=valid_from,
        valid_to=valid_to,
        state=rd.enum_opt(f.opt("state"), AgreementState, "agreement state")
        or AgreementState.DRAFT,
        type=rd.enum_opt(f.opt("type"), AgreementType, "agreement type") or AgreementType.PROVISION,
        allowed_countries=rd.countries(countries) if countries else ("JP",),
        recurring=is_recurring,
        quotas=_quotas(f.opt("quotas")),
        duties=_duties(f.opt("duties")),
        publication_ref=rd.text_opt(f.opt("publication_ref")),
        joint_use_notice_ref=rd.text_opt(f.opt("joint_use_notice_ref")),
        min_notice_version=notice.integer(minimum=1) if notice else None,
        recipient_conforming_system=rd.flag(f, "recipient_conforming_system"),
        recipient_links_personal_data=rd.flag(f, "recipient_links_personal_data"),
        contract_substitutes_record=rd.flag(f, "contract_substitutes_record"),
        title=rd.text_opt(f.opt("title")),
    )


def _permission(v: Value, ctx: PolicySnapshot, provider: MemberId, recurring: bool) -> Permission:
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
            left_v.fail(
                f"unknown constraint {left!r} (allowed: {', '.join(sorted(CONSTRAINT_PROFILE))})"
            )
        if op not in CONSTRAINT_PROFILE[left]:
            op_v.fail(
                f"operator {op!r} is not allowed for {left!r} (allowed: "
                f"{', '.join(sorted(CONSTRAINT_PROFILE[left]))})"
            )
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
                raise PolicyFormatError(
                    f"{item_v.path}[{i}]", f"service {str(target)!r} has no field {name!r}"
                )
    bases_v = seen[("legalBasis", "isAnyOf")]
    bases = rd.basis_codes(bases_v, ctx, any_route=False)
    purposes_v = seen[("purpose", "isAnyOf")]
    purposes = rd.purposes(purposes_v, ctx, nonempty=True)
    _never_authorises(
        ctx, provider, service, fields, bases, bases_v, purposes, purposes_v, recurring
    )
    statute = rd.text_opt(f.opt("statute_ref"))
    nb, na = seen.get(("dateTime", "gteq")), seen.get(("dateTime", "lt"))
    countries = seen.get(("recipientCountry", "isAnyOf"))
    types = seen.get(("recipientType", "isAnyOf"))
    return Permission(
        target=target,
        purposes=purposes,
        bases=bases,
        fields=fields,
        statute_ref=statute,
        not_before=nb.instant() if nb else None,
        not_after=na.instant() if na else None,
        recipient_countries=rd.countries(countries) if countries else None,
        recipient_types=tuple(t.enum(LegalType, "legal type") for t in types.items(nonempty=True))
        if types
        else None,
    )


def _never_authorises(
    ctx: PolicySnapshot,
    provider: MemberId,
    service: Service,
    fields: tuple[str, ...] | None,
    bases: tuple[str, ...],
    bases_v: Value,
    purposes: tuple[str, ...],
    purposes_v: Value,
    recurring: bool,
) -> None:
    """Refuse terms that can never authorise a request (authoring mistakes, issue 17 item 3).

    Each would pass silently today and fail only when a request is decided; the decision
    function still refuses them (for snapshots built elsewhere), with the same rules.
    """
    legal_type = ctx.members[provider].legal_type
    regime = regime_of(legal_type)
    chosen = [x for x in service.fields if fields is None or x.name in fields]
    classes = (
        frozenset(x.data_class for x in chosen) if service.declares_fields else service.data_classes
    ) - {DataClass.NON_PERSONAL}
    for k, code in enumerate(bases):
        basis = ctx.basis(code)
        if basis is None:  # rd.basis_codes has refused unknown codes already
            continue
        at = f"{bases_v.path}[{k}]"
        if regime not in basis.regimes:
            if basis.category is Category.OPT_OUT:
                why = "public bodies have no opt-out route (APPI Art. 69)"
            elif regime is Regime.PUBLIC:
                why = "a public body provides under APPI Art. 69, not the business chapter"
            else:
                why = "Art. 69 bases exist only for public bodies (APPI Ch. 5)"
            raise PolicyFormatError(
                at, f"{code} can never apply to {provider!s} ({legal_type.value}): {why}"
            )
        if (
            classes
            and classes <= {DataClass.MYNUMBER}
            and basis.category is not (Category.MY_NUMBER_ACT)
        ):
            raise PolicyFormatError(
                at,
                f"{service.id} carries only My Number data, which leaves only under My Number "
                f"Act Art. 19 (MYNUMBER19-<item>); {code} can never authorise it",
            )
        if classes and classes <= {DataClass.PSEUDONYMIZED} and code not in PSEUDONYMIZED_BASES:
            raise PolicyFormatError(
                at,
                f"{service.id} carries only pseudonymized data, which leaves only by law, "
                f"entrustment or joint use ({', '.join(sorted(PSEUDONYMIZED_BASES))}); "
                f"{code} can never authorise it",
            )
        if recurring and basis.ad_hoc_only:
            raise PolicyFormatError(
                at,
                f"{code} is ad hoc only (APPI Art. 69(2), PPC), so on a recurring agreement "
                "it can never authorise anything: recurring provision must be within the "
                "specified purpose",
            )
        within_needed = code == "APPI69-1-PURPOSE" or (
            recurring and basis.route is Route.CONSENT and regime is Regime.PUBLIC
        )
        if within_needed:
            for i, purpose in enumerate(purposes):
                if purpose not in service.registered_purposes:
                    raise PolicyFormatError(
                        f"{purposes_v.path}[{i}]",
                        f"purpose {purpose} is not registered for {service.id} (APPI Art. 61), "
                        f"so {code} on a{' recurring' if recurring else 'n'} agreement can "
                        "never authorise it (register the purpose or change the basis)",
                    )


def permission_to_json(p: Permission) -> JsonObj:
    cons: list[JsonObj] = [
        {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": list(p.purposes)},
        {"leftOperand": "legalBasis", "operator": "isAnyOf", "rightOperand": list(p.bases)},
    ]
    if p.fields is not None:
        cons.append(
            {"leftOperand": "dataItem", "operator": "isPartOf", "rightOperand": list(p.fields)}
        )
    if p.not_before is not None:
        cons.append(
            {
                "leftOperand": "dateTime",
                "operator": "gteq",
                "rightOperand": format_instant(p.not_before),
            }
        )
    if p.not_after is not None:
        cons.append(
            {
                "leftOperand": "dateTime",
                "operator": "lt",
                "rightOperand": format_instant(p.not_after),
            }
        )
    if p.recipient_countries is not None:
        cons.append(
            {
                "leftOperand": "recipientCountry",
                "operator": "isAnyOf",
                "rightOperand": list(p.recipient_countries),
            }
        )
    if p.recipient_types is not None:
        cons.append(
            {
                "leftOperand": "recipientType",
                "operator": "isAnyOf",
                "rightOperand": [t.value for t in p.recipient_types],
            }
        )
    d: JsonObj = {"target": str(p.target), "action": "use", "constraint": cons}
    rd.put_opt(d, "statute_ref", p.statute_ref)
    return d


def agreement_to_json(a: Agreement) -> JsonObj:
    d: JsonObj = {"uid": a.uid, "version": a.version}
    rd.put_opt(d, "title", a.title)
    d.update(
        {
            "type": a.type.value,
            "state": a.state.value,
            "assigner": str(a.provider),
            "assignee": [str(c) for c in a.consumers],
            "valid_from": format_instant(a.valid_from),
        }
    )
    rd.put_opt(d, "valid_to", format_instant(a.valid_to) if a.valid_to else None)
    d["allowed_countries"] = list(a.allowed_countries)
    d["recurring"] = a.recurring
    if a.quotas.any:
        q: JsonObj = {}
        rd.put_opt(q, "max_per_day", a.quotas.max_per_day)
        rd.put_opt(q, "max_total", a.quotas.max_total)
        d["quotas"] = q
    if a.duties != Duties():
        du: JsonObj = {}
        delete = a.duties.delete_after
        rd.put_opt(du, "delete_after", str(delete) if delete else None)
        rd.put_opt(du, "no_onward_transfer", a.duties.no_onward_transfer)
        rd.put_opt(du, "inform_provider", a.duties.inform_provider)
        rd.put_opt(du, "use_limitation", a.duties.use_limitation)
        d["duties"] = du
    for key in (
        "publication_ref",
        "joint_use_notice_ref",
        "min_notice_version",
        "recipient_conforming_system",
        "recipient_links_personal_data",
        "contract_substitutes_record",
    ):
        rd.put_opt(d, key, getattr(a, key))
    d["permission"] = [permission_to_json(p) for p in a.permissions]
    return d


def _quotas(v: Value | None) -> Quotas:
    if v is None:
        return Quotas()
    f = v.obj(optional=("max_per_day", "max_total"))
    day, total = f.opt("max_per_day"), f.opt("max_total")
    return Quotas(
        day.integer(minimum=0) if day else None, total.integer(minimum=0) if total else None
    )


def _duties(v: Value | None) -> Duties:
    if v is None:
        return Duties()
    f = v.obj(optional=("delete_after", "no_onward_transfer", "inform_provider", "use_limitation"))
    delete = f.opt("delete_after")
    return Duties(
        delete_after=delete.duration() if delete else None,
        no_onward_transfer=rd.flag(f, "no_onward_transfer"),
        inform_provider=rd.flag(f, "inform_provider"),
        use_limitation=rd.text_opt(f.opt("use_limitation")),
    )
