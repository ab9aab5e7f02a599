"""Member-level identifiers end to end: a member as the client, a member's own service.

X-Road lets a MEMBER be the client (pr-meta example C.2) and a service belong to a member
without a subsystem (``subsystemCode`` is optional in identifiers.xsd). Pure parts first
(identifier forms, SOAP header parsing, the REST path rule X-Road applies), then real
exchanges through two nodes (the demo federation: CA + OCSP, TSA, central, Aizu and
Takamatsu serving, the sample SOAP and REST provider systems): member client -> subsystem
service, subsystem client -> member service, member -> member, over SOAP and (where X-Road
allows it) REST; the refusals; the message log and the policy decision log; and the pr-meta
C.2 request, validated with lxml against X-Road's XSDs and sent through the nodes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import IdentifierError, MemberId, ServiceId, SubsystemId
from secnode.core.message import MessageHeaders, request_digest
from secnode.core.rest_path import parse_service_path
from secnode.core.soap import parse_soap_request
from secnode.demo.calls import CallResult, call_rest, call_soap, soap_request
from secnode.demo.calls import http as http_call
from secnode.demo.federation import DemoError, Federation
from secnode.demo.two_cities import build_two_city_federation
from tests.support.xroad import artefacts
from tests.support.xroad import soap_schema as soap_schema_of

XROAD = artefacts()
XSD = XROAD / "xsd"
C2 = XROAD / "pr-meta" / "c2-listmethods-request.xml"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XRD = "http://x-road.eu/xsd/xroad.xsd"
NS = {"s": SOAP_NS, "xrd": XRD, "id": "http://x-road.eu/xsd/identifiers"}
CT = "text/xml; charset=utf-8"

AIZU = MemberId.parse("JP/GOV/072028")
TAKA = MemberId.parse("JP/GOV/372013")
PORTAL = SubsystemId.of(AIZU, "portal")
METRICS = ServiceId.of(TAKA, "getMetrics")  # a member's own service (SOAP)
HIDDEN = ServiceId.of(TAKA, "getSecrets")  # a member's own service granted to nobody
WELFARE = ServiceId.of(SubsystemId.of(TAKA, "welfare"), "getResident")
RESIDENTS = ServiceId.of(SubsystemId.of(AIZU, "residents"), "residents")


@pytest.fixture(scope="module")
def soap_schema(tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    """The SOAP 1.1 envelope with X-Road's header elements (xroad.xsd, identifiers.xsd) and
    metaservice answers (service-metainfo.xsd); the Header and Body are lax, so every
    element with a declaration is validated and a service's own body passes."""
    return soap_schema_of(tmp_path_factory.mktemp("xsd"), XSD)


def valid(schema: etree.XMLSchema, body: bytes) -> etree._Element:
    doc = etree.fromstring(body)
    assert schema.validate(doc), (schema.error_log, body[:2000])
    return doc


# ----- pure parts ---------------------------------------------------------------------------
def test_member_service_string_form_is_unambiguous() -> None:
    own = ServiceId.parse("JP/GOV/372013//getMetrics/v1")
    assert (own.subsystem, own.service, own.version) == (None, "getMetrics", "v1")
    assert own.provider == TAKA and own.is_member_level
    sub = ServiceId.parse("JP/GOV/372013/getMetrics/v1")  # five parts: always a subsystem's
    assert (sub.subsystem, sub.service, sub.version) == ("getMetrics", "v1", None)
    assert str(own) == "JP/GOV/372013//getMetrics/v1" != str(sub)
    assert sorted([sub, own]) == [own, sub]
    with pytest.raises(IdentifierError, match="belongs to a member, not to a subsystem"):
        _ = own.subsystem_id
    with pytest.raises(IdentifierError, match=r"INSTANCE/CLASS/CODE//SERVICE"):
        ServiceId.parse("JP/GOV/372013/getMetrics")
    with pytest.raises(IdentifierError, match="has 7 part"):
        ServiceId.parse("JP/GOV/372013//a/b/c")


def test_signature_binds_member_level_service_apart_from_a_subsystem_service() -> None:
    """Same parts but for the subsystem: the signed digests differ (the service's string form
    with its empty subsystem part is what the digest holds, beside ``client_type``)."""
    body = bytes(32)
    own = MessageHeaders("soap", AIZU, ServiceId.parse("JP/GOV/372013//a/b"), "m1")
    sub = MessageHeaders("soap", AIZU, ServiceId.parse("JP/GOV/372013/a/b"), "m1")
    member = MessageHeaders("soap", PORTAL, ServiceId.parse("JP/GOV/372013//a/b"), "m1")
    digests = {request_digest(h, body) for h in (own, sub, member)}
    assert len(digests) == 3


def test_c2_request_is_valid_x_road_and_parses_as_member_client(
    soap_schema: etree.XMLSchema,
) -> None:
    data = C2.read_bytes()
    valid(soap_schema, data)
    req = parse_soap_request(data, CT)
    assert isinstance(req.client, MemberId) and str(req.client) == "Inst1/MemberClass1/ClientId"
    assert str(req.service) == "Inst1/MemberClass1/ProviderId/Subsystem1/listMethods"


def test_soap_service_without_subsystem_code_is_a_member_service(
    soap_schema: etree.XMLSchema,
) -> None:
    data = soap_request(AIZU, METRICS, "")
    valid(soap_schema, data)
    req = parse_soap_request(data, CT)
    assert req.client == AIZU and req.service == METRICS and req.service.subsystem is None


def test_rest_path_is_read_as_x_road_reads_it() -> None:
    """X-Road's RestRequest takes exactly five parts after /r1/: the fourth is always the
    subsystem. A four-part path is refused with the reason, never read as a member's service."""
    service, rest = parse_service_path("/r1/JP/GOV/372013/getMetrics/x/y")
    assert (service.subsystem, service.service, rest) == ("getMetrics", "x", "/y")
    with pytest.raises(XRoadError, match="always belongs to a subsystem") as info:
        parse_service_path("/r1/JP/GOV/372013/getMetrics")
    assert info.value.code == errors.BAD_REQUEST


# ----- through two nodes --------------------------------------------------------------------
def node_dir(fed: Federation, name: str) -> Path:
    return fed.nodes[name].dir


def operator(fed: Federation, name: str, *args: str) -> str:
    return fed.run("secnode", *args, "--dir", node_dir(fed, name))


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """The demo federation, plus member-level services, rights and callers."""
    federation = build_two_city_federation(tmp_path_factory.mktemp("fed"), say=lambda _m: None)
    try:
        soap_url = f"http://127.0.0.1:{federation.ports['soap_service']}/soap"
        for code in ("getMetrics", "getSecrets"):
            operator(federation, "takamatsu", "service", "add", str(TAKA), code,
                     "--type", "soap", "--url", soap_url)  # fmt: skip
            operator(federation, "takamatsu", "service", "classify", f"/{code}", "--non-personal")
        operator(federation, "takamatsu", "acl", "grant", "/getMetrics", str(PORTAL))
        operator(federation, "takamatsu", "acl", "grant", str(METRICS), str(AIZU))
        operator(federation, "takamatsu", "acl", "grant", "welfare/getResident", str(AIZU))
        operator(federation, "aizu", "acl", "grant", "residents/residents", str(TAKA))
        operator(federation, "aizu", "client", "allow", str(AIZU), "--address", "127.0.0.1")
        operator(federation, "aizu", "client", "allow", "residents", "--address", "127.0.0.1")
        operator(federation, "takamatsu", "client", "allow", str(TAKA), "--address", "127.0.0.1")
        _wait_ready(federation)
        yield federation
    finally:
        federation.stop()


def soap(fed: Federation, via: str, client: Any, service: ServiceId) -> CallResult:
    wrapper = f"<ns1:id>{uuid.uuid4().hex[:8]}</ns1:id>"
    return call_soap(fed.nodes[via].client_url, client, service, wrapper)


def fault(result: CallResult) -> tuple[str | None, str | None]:
    doc = etree.fromstring(result.body)
    return (
        doc.findtext("s:Body/s:Fault/faultcode", namespaces=NS),
        doc.findtext("s:Body/s:Fault/faultstring", namespaces=NS),
    )


def _wait_ready(fed: Federation) -> None:
    """Both nodes have loaded the new services, rights and callers (their reload job runs
    every few seconds): Aizu the member calls Takamatsu's member service over SOAP, and
    Takamatsu the member calls Aizu's REST service."""
    taka = fed.nodes["takamatsu"].client_url
    deadline = time.monotonic() + 60
    while True:
        result = soap(fed, "aizu", AIZU, METRICS)
        if result.status == 200 and fault(result)[0] is None:
            rest = call_rest(taka, TAKA, RESIDENTS, "/1001")
            if rest.status == 200:
                return
            result = rest
        assert time.monotonic() < deadline, result.body
        time.sleep(0.5)


def header_ids(doc: etree._Element) -> tuple[str, str]:
    client = doc.find("s:Header/xrd:client", NS)
    service = doc.find("s:Header/xrd:service", NS)
    assert client is not None and service is not None
    return (
        client.get(f"{{{NS['id']}}}objectType") or "",
        "/".join(e.text or "" for e in service),
    )


@pytest.mark.parametrize(
    ("client", "service"),
    [
        pytest.param(AIZU, WELFARE, id="member-client-to-subsystem-service"),
        pytest.param(PORTAL, METRICS, id="subsystem-client-to-member-service"),
        pytest.param(AIZU, METRICS, id="member-to-member"),
    ],
)
def test_soap_exchanges(
    fed: Federation, soap_schema: etree.XMLSchema, client: Any, service: ServiceId
) -> None:
    result = soap(fed, "aizu", client, service)
    assert result.status == 200, result.body
    doc = valid(soap_schema, result.body)
    assert fault(result) == (None, None)
    assert doc.find(f"s:Body/{{urn:demo:welfare}}{service.service}Response", NS) is not None
    object_type, service_parts = header_ids(doc)
    assert object_type == ("MEMBER" if isinstance(client, MemberId) else "SUBSYSTEM")
    assert service_parts == "/".join(p for p in service.parts() if p)
    assert doc.find("s:Header/xrd:requestHash", NS) is not None


def test_rest_member_client_to_subsystem_service(fed: Federation) -> None:
    """``X-Road-Client: INSTANCE/CLASS/CODE`` (three parts) calling Aizu's REST service."""
    result = call_rest(fed.nodes["takamatsu"].client_url, TAKA, RESIDENTS, "/1001")
    assert result.status == 200, result.body
    assert json.loads(result.body)["id"] == "1001"
    assert result.headers["X-Road-Client"] == str(TAKA)


def test_rest_paths_never_name_a_member_service(fed: Federation) -> None:
    aizu = fed.nodes["aizu"].client_url
    four = http_call("GET", f"{aizu}/r1/JP/GOV/372013/getMetrics", None,
                     {"X-Road-Client": str(AIZU)})  # fmt: skip
    assert four.status == 400 and four.headers["X-Road-Error"] == errors.BAD_REQUEST
    assert b"always belongs to a subsystem" in four.body
    five = http_call("GET", f"{aizu}/r1/JP/GOV/372013/getMetrics/x", None,
                     {"X-Road-Client": str(AIZU)})  # fmt: skip
    assert five.headers["X-Road-Error"] == errors.UNKNOWN_MEMBER, five.body
    assert b"subsystem JP/GOV/372013/getMetrics is not registered" in five.body


@pytest.mark.parametrize(
    ("via", "client", "service", "code", "reason"),
    [
        pytest.param("aizu", MemberId.parse("JP/GOV/999999"), METRICS, errors.UNKNOWN_MEMBER,
                     "client JP/GOV/999999 is not registered", id="unknown-member-client"),
        pytest.param("aizu", AIZU, ServiceId.parse("JP/GOV/999999//getMetrics"),
                     errors.UNKNOWN_MEMBER, "no node serves member JP/GOV/999999",
                     id="unknown-member-provider"),
        pytest.param("aizu", AIZU, ServiceId.of(TAKA, "nothing"), errors.UNKNOWN_SERVICE,
                     "unknown service JP/GOV/372013//nothing", id="unknown-member-service"),
        pytest.param("aizu", AIZU, HIDDEN, errors.ACCESS_DENIED,
                     "JP/GOV/072028 has no access right to JP/GOV/372013//getSecrets",
                     id="member-not-granted"),
        pytest.param("aizu", SubsystemId.of(AIZU, "residents"), METRICS, errors.ACCESS_DENIED,
                     "JP/GOV/072028/residents has no access right to JP/GOV/372013//getMetrics",
                     id="member-grant-does-not-cover-its-subsystems"),
        pytest.param("aizu", PORTAL, HIDDEN, errors.ACCESS_DENIED,
                     "has no access right", id="subsystem-not-granted-member-service"),
        pytest.param("aizu", TAKA, METRICS, errors.INVALID_CLIENT_IDENTIFIER,
                     "not a member or subsystem served by this node", id="other-member-client"),
    ],
)  # fmt: skip
def test_refusals(
    fed: Federation, via: str, client: Any, service: ServiceId, code: str, reason: str
) -> None:
    result = soap(fed, via, client, service)
    got_code, got_reason = fault(result)
    assert got_code == code and reason in (got_reason or ""), result.body


def test_operator_commands_for_member_level(fed: Federation) -> None:
    with pytest.raises(DemoError, match="REST protocol addresses only services of subsystems"):
        operator(fed, "takamatsu", "service", "add", str(TAKA), "restful", "--type", "rest",
                 "--url", "http://127.0.0.1:1/")  # fmt: skip
    with pytest.raises(DemoError, match="JP/GOV/372013 is not this node's member"):
        operator(fed, "aizu", "client", "allow", str(TAKA), "--address", "127.0.0.2")
    with pytest.raises(DemoError, match="JP/GOV/072028 is not this node's member"):
        operator(fed, "takamatsu", "service", "add", str(AIZU), "x", "--type", "soap",
                 "--url", "http://127.0.0.1:1/")  # fmt: skip
    operator(fed, "aizu", "client", "allow", str(AIZU), "--address", "127.0.0.9")
    operator(fed, "aizu", "client", "remove", str(AIZU), "--address", "127.0.0.9")
    with pytest.raises(DemoError, match="no such rule for JP/GOV/072028"):
        operator(fed, "aizu", "client", "remove", str(AIZU), "--address", "127.0.0.9")
    callers = json.loads(operator(fed, "aizu", "client", "list", "--json"))
    assert {"subsystem": str(AIZU), "kind": "address", "value": "127.0.0.1"} in callers
    listed = json.loads(operator(fed, "takamatsu", "service", "list", "--json"))
    metrics = next(s for s in listed if s["id"] == str(METRICS))
    assert metrics["granted"] == sorted([str(AIZU), str(PORTAL)])
    rights = json.loads(operator(fed, "takamatsu", "acl", "list", str(METRICS), "--json"))
    assert {r["client"] for r in rights} == {str(AIZU), str(PORTAL)}


def _decisions(fed: Federation, name: str, message_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        operator(fed, name, "policy", "log", "--message-id", message_id, "--json")
    )
    return found


def test_member_exchange_in_the_logs(fed: Federation) -> None:
    message_id = str(uuid.uuid4())
    body = soap_request(AIZU, METRICS, "<ns1:id>1</ns1:id>", message_id)
    result = http_call("POST", fed.nodes["aizu"].client_url + "/", body, {"Content-Type": CT})
    assert result.status == 200 and fault(result)[0] is None, result.body
    for name, direction in (("aizu", "request_out"), ("takamatsu", "request_in")):
        found = json.loads(
            operator(fed, name, "log", "search", "--client", str(AIZU),
                     "--service", str(METRICS), "--message-id", message_id, "--json")
        )  # fmt: skip
        record = next(r for r in found if r["direction"] == direction)
        assert record["client_id"] == str(AIZU) and record["service_id"] == str(METRICS)
        shown = json.loads(operator(fed, name, "log", "show", record["id"], "--json"))
        assert json.dumps(shown).count(str(METRICS)) >= 1
    # The provider's policy point decides (the client's only pre-checks refusals); its
    # decision row is written behind, batched: wait for it.
    deadline = time.monotonic() + 60
    while not (decisions := _decisions(fed, "takamatsu", message_id)):
        assert time.monotonic() < deadline, f"takamatsu has no decision for {message_id}"
        time.sleep(0.5)
    assert [(d["side"], d["client"], d["service"]) for d in decisions] == [
        ("provider", str(AIZU), str(METRICS))
    ], decisions
    # the member filter finds the member's own service too
    by_member = json.loads(
        operator(fed, "takamatsu", "log", "search", "--service", str(TAKA),
                 "--message-id", message_id, "--json")
    )  # fmt: skip
    assert by_member


def test_c2_request_through_the_nodes(fed: Federation, soap_schema: etree.XMLSchema) -> None:
    """pr-meta C.2 as X-Road publishes it (a MEMBER client asks listMethods), addressed to
    Aizu the member calling Takamatsu's welfare subsystem; request and answer schema-valid."""
    text = C2.read_text()
    for old, new in (
        ("Inst1", "JP"),
        ("MemberClass1", "GOV"),
        ("ClientId", AIZU.code),
        ("ProviderId", TAKA.code),
        ("Subsystem1", "welfare"),
        ("411d6755661409fed365ad8135f8210be07613da", str(uuid.uuid4())),
    ):
        text = text.replace(f">{old}<", f">{new}<")
    data = text.encode()
    valid(soap_schema, data)
    result = http_call("POST", fed.nodes["aizu"].client_url + "/", data, {"Content-Type": CT})
    assert result.status == 200, result.body
    doc = valid(soap_schema, result.body)
    assert header_ids(doc)[0] == "MEMBER"
    codes = {
        e.text
        for e in doc.iterfind("s:Body/xrd:listMethodsResponse/xrd:service/id:serviceCode", NS)
    }
    assert "getResident" in codes, result.body


@pytest.mark.parametrize(
    ("meta", "client", "expected"),
    [
        ("listMethods", PORTAL, {"getMetrics", "getSecrets"}),
        ("allowedMethods", AIZU, {"getMetrics"}),
        ("allowedMethods", PORTAL, {"getMetrics"}),
    ],
)
def test_soap_metaservices_of_a_member(
    fed: Federation, soap_schema: etree.XMLSchema, meta: str, client: Any, expected: set[str]
) -> None:
    """listMethods / allowedMethods addressed to the member itself list its own services."""
    data = soap_request(client, ServiceId.of(TAKA, meta), "").replace(
        f"<ns1:{meta}></ns1:{meta}>".encode(), f"<xrd:{meta}/>".encode()
    )
    result = http_call("POST", fed.nodes["aizu"].client_url + "/", data, {"Content-Type": CT})
    doc = valid(soap_schema, result.body)
    assert fault(result)[0] is None, result.body
    listed = doc.findall(f"s:Body/xrd:{meta}Response/xrd:service", NS)
    assert {e.findtext("id:serviceCode", namespaces=NS) for e in listed} == expected
    assert all(e.find("id:subsystemCode", NS) is None for e in listed), result.body
