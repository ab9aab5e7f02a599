"""Property tests: the engine is monotone in what a client may leave out or widen.

Policies are generated (members of every legal type, services with every data class,
agreements, consents, stop requests, exception profiles), and requests are biased
towards ones an agreement covers, so ALLOW outcomes are common enough to matter.
"""

from __future__ import annotations

import functools
import os
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, note, seed, settings
from hypothesis import strategies as st

from secnode.core.identifiers import ClientId, MemberId, ServiceId, SubsystemId
from secnode.core.policy import (
    BASES,
    JST,
    Agreement,
    AgreementRef,
    AgreementState,
    AgreementType,
    ConsentRecord,
    ConsentStatus,
    DataClass,
    Decision,
    Duties,
    ExceptionProfile,
    ExceptionReason,
    ForeignTransfer,
    IsoDuration,
    LegalType,
    Member,
    OrdinanceBasis,
    OrdinanceKind,
    Permission,
    PolicyFormatError,
    PolicyRequest,
    PolicySettings,
    PolicySnapshot,
    PurposeCode,
    Quotas,
    Reason,
    Route,
    Service,
    ServiceField,
    StopRequest,
    StopScope,
    UsageCounters,
    decide,
    filter_fields,
    validate_snapshot,
)

AT = datetime(2026, 6, 1, 10, 0, tzinfo=JST)
PURPOSES = ("P-A", "P-B", "P-C")
FIELDS = ("f1", "f2", "f3", "f4")
SUBJECTS = ("S1", "S2", "S3")
PROVIDERS = (MemberId("JP", "GOV", "PROV-PUB"), MemberId("JP", "COM", "PROV-BIZ"))
CLIENT_MEMBERS = (
    MemberId("JP", "GOV", "C-PUB"),
    MemberId("JP", "COM", "C-BIZ"),
    MemberId("JP", "EDU", "C-ACA"),
    MemberId("JP", "GOV", "C-POL"),
)
CLIENTS: tuple[ClientId, ...] = tuple(
    SubsystemId.of(m, s) for m in CLIENT_MEMBERS for s in ("app", "other")
)
AGREEMENT_BASES = (*(c for c, b in BASES.items() if b.route is not Route.EXCEPTION), "MYNUMBER19-8")
EXCEPTION_BASES = (*(c for c, b in BASES.items() if b.route is Route.EXCEPTION), "ORD-X")
ALL_BASES = AGREEMENT_BASES + EXCEPTION_BASES
CLASS_WEIGHTS = (DataClass.PERSONAL,) * 12 + (DataClass.NON_PERSONAL,) * 3 + tuple(DataClass)
REGIME_BASES = {  # bases that exist for each provider, weighted so ALLOW is common
    "PUBLIC": (
        "APPI69-1-LAW",
        "APPI69-1-PURPOSE",
        "CONSENT",
        "APPI69-2-3",
        "APPI43-44",
        "MYNUMBER19-8",
    ),
    "PRIVATE": ("CONSENT", "APPI27-1-1", "APPI27-2", "APPI27-5-1", "APPI27-5-3", "APPI27-1-7"),
}
LINKAGE = (False,) * 5 + (True,)
SERVICES = tuple(
    ServiceId.of(SubsystemId.of(p, "sys"), f"svc{i}") for p in PROVIDERS for i in range(2)
)


@functools.cache
def pick(items: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """Cached ``sampled_from``: building strategies inside composites is what makes them slow."""
    return st.sampled_from(items)


@functools.cache
def subset(items: tuple[Any, ...], min_size: int = 0) -> st.SearchStrategy[tuple[Any, ...]]:
    if not items:
        return st.just(())
    return st.lists(st.sampled_from(items), min_size=min_size, unique=True).map(tuple)


@functools.cache
def maybe_subset(items: tuple[Any, ...]) -> st.SearchStrategy[tuple[Any, ...] | None]:
    return st.none() | subset(items, min_size=1)


times = st.integers(min_value=-800, max_value=800).map(lambda d: AT + timedelta(days=d))
maybe_time = st.none() | times
VALID_NOW = st.integers(0, 700).map(lambda d: AT - timedelta(days=d))
STOP_SCOPES = st.lists(st.sampled_from(tuple(StopScope)), max_size=2)
EVIDENCE = st.sampled_from(
    (
        {"ref": "R", "doc_type": "照会書", "statute": "法", "consent_difficulty": "yes"},
        {"ref": "R-1"},
        {},
    )
)


@st.composite
def services(draw: st.DrawFn, profs: tuple[ExceptionProfile, ...]) -> tuple[Service, ...]:
    out = []
    for sid in SERVICES:
        names = draw(subset(FIELDS, min_size=1))
        fields = tuple(
            ServiceField(n, draw(pick(CLASS_WEIGHTS)), draw(pick(LINKAGE))) for n in names
        )
        usable = tuple(p.id for p in profs if p.fields is None or set(p.fields) <= set(names))
        out.append(
            Service(
                id=sid,
                fields=fields,
                registered_purposes=draw(subset(PURPOSES)),
                subject_required=draw(st.booleans()),
                exception_profiles=draw(subset(usable)),
                acquired_via_opt_out=draw(st.booleans()),
            )
        )
    return tuple(out)


@st.composite
def profiles(draw: st.DrawFn) -> tuple[ExceptionProfile, ...]:
    if not draw(st.booleans()):
        return ()
    reasons = tuple(
        ExceptionReason(
            code,
            draw(subset(tuple(LegalType), min_size=1)),
            draw(subset(("doc_type", "ref", "statute"))),
        )
        for code in draw(subset(EXCEPTION_BASES, min_size=1))
    )
    return (
        ExceptionProfile(
            "EP",
            reasons,
            fields=draw(maybe_subset(FIELDS)),
            max_lookback=draw(pick((None, IsoDuration(days=14)))),
            allowed_countries=draw(pick((("JP",), ("JP", "US")))),
        ),
    )


@st.composite
def agreements(draw: st.DrawFn, svcs: tuple[Service, ...]) -> tuple[Agreement, ...]:
    out = []
    for i in range(draw(st.integers(1, 4))):
        provider = draw(pick(tuple(PROVIDERS)))
        regime = "PUBLIC" if provider == PROVIDERS[0] else "PRIVATE"
        mine = [s for s in svcs if s.provider == provider]
        perms = []
        for _ in range(draw(st.integers(1, 2))):
            svc = draw(pick(tuple(mine)))
            perms.append(
                Permission(
                    target=svc.id,
                    purposes=draw(subset(PURPOSES, min_size=1)),
                    bases=draw(
                        subset(REGIME_BASES[regime], min_size=1)
                        if draw(pick((True,) * 4 + (False,)))
                        else subset(AGREEMENT_BASES, min_size=1)
                    ),
                    fields=draw(maybe_subset(svc.field_names)),
                    statute_ref=draw(pick(("法令X条", "法令X条", None))),
                )
            )
        start = draw(pick((VALID_NOW,) * 4 + (times,)).flatmap(lambda x: x))
        out.append(
            Agreement(
                uid=f"DSA-{i}",
                version=draw(st.integers(1, 3)),
                provider=provider,
                consumers=draw(subset(CLIENTS + CLIENT_MEMBERS, min_size=1)),
                permissions=tuple(perms),
                valid_from=start,
                valid_to=start + timedelta(days=draw(pick((1500, 1500, 30, 400)))),
                state=draw(pick((AgreementState.ACTIVE,) * 12 + tuple(AgreementState))),
                type=draw(pick((AgreementType.PROVISION,) * 3 + tuple(AgreementType))),
                allowed_countries=draw(pick((("JP",), ("JP", "US"), ("JP", "DE")))),
                recurring=draw(pick((False, False, True))),
                quotas=draw(pick((Quotas(), Quotas(max_per_day=3), Quotas(max_total=5)))),
                duties=Duties(no_onward_transfer=draw(st.booleans())),
                publication_ref=draw(pick((None, "https://x.example/pub"))),
                joint_use_notice_ref=draw(pick((None, "https://x.example/joint"))),
                min_notice_version=draw(pick((None, None, None, 1, 3))),
                recipient_conforming_system=draw(st.booleans()),
                recipient_links_personal_data=draw(st.booleans()),
            )
        )
    return tuple(out)


@st.composite
def consents(
    draw: st.DrawFn, svcs: tuple[Service, ...], dsas: tuple[Agreement, ...]
) -> tuple[ConsentRecord, ...]:
    """Mostly consents that match an agreement's permission, so consent flows can succeed."""
    out = []
    for i in range(draw(st.integers(1, 4))):
        if dsas and draw(pick(("aligned",) * 3 + ("random",))) == "aligned":
            a = draw(pick(dsas))
            p = draw(pick(a.permissions))
            svc = next(s for s in svcs if s.id == p.target)
            consumer = draw(pick(a.consumers))
            recipients: tuple[ClientId, ...] = (consumer,)
            purposes = (draw(pick(p.purposes)),)
        else:
            svc = draw(pick(tuple(svcs)))
            recipients = draw(subset(CLIENTS, min_size=1))
            purposes = draw(subset(PURPOSES, min_size=1))
        given = draw(
            pick((None, AT - timedelta(days=10), AT - timedelta(days=10), AT + timedelta(days=10)))
        )
        out.append(
            ConsentRecord(
                consent_id=f"CR-{i}",
                subject_ref=draw(pick(tuple(SUBJECTS))),
                controller=svc.provider,
                recipients=recipients,
                purposes=purposes,
                status=draw(pick((ConsentStatus.ConsentGiven,) * 20 + tuple(ConsentStatus))),
                services=draw(pick(((), (svc.id,)))),
                fields=draw(maybe_subset(svc.field_names)),
                explicit_special_care=draw(st.booleans()),
                foreign_transfer=draw(
                    pick((None, ForeignTransfer(("US",), True), ForeignTransfer(("US",), False)))
                ),
                given_at=given,
                expires_at=draw(
                    pick(
                        (
                            None,
                            AT + timedelta(days=30),
                            AT + timedelta(days=30),
                            AT - timedelta(days=1),
                        )
                    )
                ),
                notice_version=draw(pick((None, 1, 2, 3))),
            )
        )
    return tuple(out)


@st.composite
def policies(draw: st.DrawFn) -> PolicySnapshot:
    members = [
        Member(PROVIDERS[0], LegalType.PUBLIC_BODY, "Provider city"),
        Member(
            PROVIDERS[1],
            LegalType.BUSINESS,
            "Provider business",
            ppc_optout_filing_id=draw(pick((None, "PPC-1"))),
        ),
    ] + [
        Member(
            m, draw(pick(tuple(LegalType))), m.code, country=draw(pick(("JP",) * 6 + ("US", "DE")))
        )
        for m in CLIENT_MEMBERS
    ]
    profs = draw(profiles())
    svcs = draw(services(profs))
    stops = [
        StopRequest(
            f"STOP-{i}",
            draw(pick(tuple(SUBJECTS))),
            draw(pick(tuple(PROVIDERS))),
            scope,
            since=draw(times),
            recipient=draw(pick(tuple(CLIENTS))) if scope is StopScope.RECIPIENT else None,
            purpose=draw(pick(tuple(PURPOSES))) if scope is StopScope.PURPOSE else None,
        )
        for i, scope in enumerate(draw(STOP_SCOPES))
    ]
    dsas = draw(agreements(svcs))
    return PolicySnapshot.build(
        members=members,
        purposes=[PurposeCode(p, p, p) for p in PURPOSES],
        ordinance_bases=[
            OrdinanceBasis(
                "ORD-X", draw(pick(tuple(OrdinanceKind))), "条例", "第1条", "例外", "exception"
            )
        ],
        exception_profiles=profs,
        services=svcs,
        agreements=dsas,
        consents=draw(consents(svcs, dsas)),
        stop_requests=stops,
        settings=PolicySettings(require_issue=draw(st.booleans())),
    )


@st.composite
def requests(draw: st.DrawFn, policy: PolicySnapshot) -> PolicyRequest:
    """Often derived from an agreement's permission, so that ALLOW is reachable."""
    agreements_ = list(policy.agreements.values())
    if agreements_ and draw(st.integers(0, 9)) < 7:
        a = draw(pick(tuple(agreements_)))
        p = draw(pick(tuple(a.permissions)))
        consumer = draw(pick(tuple(a.consumers)))
        client = consumer if isinstance(consumer, SubsystemId) else SubsystemId.of(consumer, "app")
        service, purpose, basis = (
            p.target,
            draw(pick(tuple(p.purposes))),
            draw(pick(tuple(p.bases))),
        )
        pool = p.fields or policy.services[p.target].field_names
        fields = draw(maybe_subset(pool))
        pin = draw(pick((None, AgreementRef(a.uid), AgreementRef(a.uid, a.version))))
    else:
        client, service = draw(pick(tuple(CLIENTS))), draw(pick(tuple(SERVICES)))
        purpose = draw(pick((*PURPOSES, None)))
        basis = draw(pick((*ALL_BASES, None)))
        fields = draw(maybe_subset(policy.services[service].field_names))
        pin = None
    consent_ids = tuple(
        c.consent_id
        for c in policy.consents.values()
        if purpose in c.purposes and c.controller == service.member
    )
    chosen = draw(pick((*consent_ids * 3, *policy.consents, None)))
    subject = draw(pick((*SUBJECTS, None)))
    if chosen is not None and draw(pick((True, True, False))):
        subject = policy.consents[chosen].subject_ref
    return PolicyRequest(
        client=client,
        service=service,
        purpose=purpose,
        basis=basis,
        subject_ref=subject,
        fields=fields,
        agreement=pin,
        consent_id=chosen,
        evidence=draw(EVIDENCE),
        recipient_country=draw(pick((None, None, "JP", "US"))),
        recurring=draw(pick((False,) * 4 + (True,))),
        data_from=draw(pick((AT - timedelta(days=3), None, AT - timedelta(days=30)))),
        issue=draw(pick(("ISSUE-1",) * 4 + (None,))),
    )


usages = st.sampled_from(
    [UsageCounters(), UsageCounters({"DSA-0": 3, "DSA-1": 1}, {"DSA-0": 5, "DSA-2": 9})]
)
# 60 examples keep the suite fast; POLICY_EXAMPLES=2000 for a thorough run.
EXAMPLES = int(os.environ.get("POLICY_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[PolicySnapshot, PolicyRequest, UsageCounters]:
    policy = draw(policies())
    return policy, draw(requests(policy)), draw(usages)


def _note(d: Decision) -> None:
    note(f"{d.decision} {d.reason.value}: {d.message}")


HEADERS = ("purpose", "basis", "subject_ref", "consent_id", "evidence", "issue", "data_from")


@SETTINGS
@given(worlds(), st.sampled_from(HEADERS))
def test_removing_a_policy_header_never_turns_deny_into_allow(world: Any, header: str) -> None:
    policy, request, usage = world
    before = decide(request, policy, AT, usage)
    after = decide(request.without(header), policy, AT, usage)
    _note(before)
    _note(after)
    assert before.reason is not Reason.SYSTEM_ERROR
    if not before.allow:
        assert not after.allow


@SETTINGS
@given(worlds(), st.data())
def test_widening_requested_fields_never_turns_deny_into_allow(world: Any, data: Any) -> None:
    policy, request, usage = world
    svc = policy.service(request.service)
    assert svc is not None
    extra = data.draw(st.sampled_from([*svc.field_names, "not_a_field", None]))
    wider = None if extra is None else tuple(dict.fromkeys((*(request.fields or ()), extra)))
    if request.fields is None:
        wider = None  # already the widest request
    before = decide(request, policy, AT, usage)
    after = decide(replace(request, fields=wider), policy, AT, usage)
    _note(before)
    _note(after)
    if not before.allow:
        assert not after.allow


@SETTINGS
@given(worlds(), st.data())
def test_time_outside_agreement_validity_never_allows_through_it(world: Any, data: Any) -> None:
    policy, request, usage = world
    assume(policy.agreements)
    a = data.draw(st.sampled_from(list(policy.agreements.values())))
    assert a.valid_to is not None
    outside = data.draw(
        st.sampled_from(
            [a.valid_from - timedelta(seconds=1), a.valid_to, a.valid_to + timedelta(days=400)]
        )
    )
    before = decide(request, policy, AT, usage)
    after = decide(request, policy, outside, usage)
    _note(before)
    _note(after)
    assert not (after.allow and after.agreement_id == a.uid)
    basis = policy.basis(request.basis or "")
    agreement_route = basis is not None and basis.route is not Route.EXCEPTION
    if (
        not before.allow
        and agreement_route
        and request.agreement is not None
        and request.agreement.uid == a.uid
    ):
        assert not after.allow


@SETTINGS
@given(worlds(), st.data())
def test_withdrawing_a_consent_never_turns_deny_into_allow(world: Any, data: Any) -> None:
    policy, request, usage = world
    assume(policy.consents)
    cid = data.draw(st.sampled_from(sorted(policy.consents)))
    withdrawn = replace(
        policy.consents[cid],
        status=ConsentStatus.ConsentWithdrawn,
        withdrawn_at=AT - timedelta(hours=1),
    )
    changed = policy.with_changes(consents=MappingProxyType({**policy.consents, cid: withdrawn}))
    before = decide(request, policy, AT, usage)
    after = decide(request, changed, AT, usage)
    _note(before)
    _note(after)
    if not before.allow:
        assert not after.allow
    if before.allow and before.consent_id == cid:
        assert (after.allow, after.reason) == (False, Reason.CONSENT_NOT_VALID)


@SETTINGS
@given(worlds())
def test_decisions_are_well_formed(world: Any) -> None:
    policy, request, usage = world
    d = decide(request, policy, AT, usage)
    _note(d)
    assert d.allow == d.reason.allows
    assert d.reason is not Reason.SYSTEM_ERROR
    if d.allow:
        requested = set(request.fields or ())
        assert d.permitted_fields is None or requested <= set(d.permitted_fields)
        assert d.obligations
    else:
        assert d.permitted_fields == () and d.obligations == ()


@settings(max_examples=30, deadline=None)
@given(policies())
def test_generated_policies_round_trip_through_the_file_format(policy: PolicySnapshot) -> None:
    """Everything the loader accepts round-trips; what it refuses is only terms that can never
    authorise anything (issue 17 item 3: e.g. an Art. 27 basis drawn for a city)."""
    try:
        loaded = validate_snapshot(policy)
    except PolicyFormatError as exc:
        assert "can never" in str(exc), str(exc)
        return
    assert replace(loaded, digest=None) == policy


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), json_values, max_size=4),
    subset(("a", "b", "a.b", "c.a")),
)
def test_filter_fields_never_releases_an_unpermitted_top_level_key(
    response: dict[str, Any],
    permitted: tuple[str, ...],
) -> None:
    try:
        out = filter_fields(response, permitted)
    except ValueError:
        return
    assert set(out) <= {p.split(".")[0] for p in permitted}


def test_generator_reaches_allow_outcomes() -> None:
    """Guard against the properties passing vacuously: generated worlds do reach ALLOW."""
    seen: set[Reason] = set()

    @seed(20260601)
    @settings(
        max_examples=300,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(worlds())
    def collect(world: Any) -> None:
        policy, request, usage = world
        seen.add(decide(request, policy, AT, usage).reason)

    collect()
    assert {Reason.OK_CONSENT, Reason.OK_STATUTE, Reason.NOT_PERSONAL_DATA} <= seen
