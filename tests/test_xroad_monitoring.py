"""Issue 18 item 9: X-Road's environmental monitoring and evidence download on real nodes.

``getSecurityServerMetrics`` is sent the way X-Road's monitoring systems send it (PR-ENVMONMES:
a member-level service of the node's owner, ``securityServer`` naming the node) through the
Aizu node to the Takamatsu node; every answer is validated with lxml against X-Road's
``monitoring.xsd`` (bundled in ``secnode/core/xroad_xsd/``) inside the SOAP envelope and
X-Road header schemas. ``/asic`` downloads the evidence of an exchange from the client's own
node; ``secnode log verify`` (a subprocess) accepts the file with only the auditor's anchors.
The federation is the demo's: CA + OCSP, a real TSA, the registry, two serving nodes.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
from cryptography import x509
from lxml import etree

from secnode.core import envmonitor
from secnode.core.identifiers import MemberId, ServiceId, SubsystemId
from secnode.core.soap import parse_soap_request
from secnode.demo.calls import CallResult, call_soap, http, soap_request
from secnode.demo.federation import CityNode, Federation, build_two_city_federation
from secnode.proxy import metaservices, wire

T = TypeVar("T")
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XRD = "http://x-road.eu/xsd/xroad.xsd"
M = envmonitor.MONITORING_NS
NS = {"s": SOAP_NS, "xrd": XRD, "m": M}
CT = "text/xml; charset=utf-8"
BUNDLED_XSD = Path(__file__).resolve().parents[1] / "secnode" / "core" / "xroad_xsd"


def _shared_xsd() -> Path:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "xroad" / "xsd"
        if (candidate / "soap-envelope.xsd").is_file():
            return candidate
    raise AssertionError("X-Road's artefacts (shared/xroad/) are not beside the repository")


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    """SOAP 1.1 envelope + X-Road's header elements + X-Road's monitoring.xsd."""
    xsd, tmp = _shared_xsd(), tmp_path_factory.mktemp("xsd")
    top = tmp / "all.xsd"
    top.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        f'<xs:import namespace="{SOAP_NS}" '
        f'schemaLocation="{(xsd / "soap-envelope.xsd").as_uri()}"/>'
        f'<xs:import namespace="{XRD}" schemaLocation="{(xsd / "xroad.xsd").as_uri()}"/>'
        f'<xs:import namespace="{M}" '
        f'schemaLocation="{(BUNDLED_XSD / "monitoring.xsd").as_uri()}"/>'
        "</xs:schema>"
    )
    return etree.XMLSchema(etree.parse(str(top)))


def metrics_request(
    client: SubsystemId | MemberId,
    owner: MemberId,
    server_code: str | None,
    fields: list[str] | None = None,
    message_id: str | None = None,
) -> bytes:
    """PR-ENVMONMES's request (its example's misplaced objectType put right), with an
    ``outputSpec`` as monitoring.xsd has it when ``fields`` is given."""
    sub = (
        f"<id:subsystemCode>{client.subsystem}</id:subsystemCode>"
        if isinstance(client, SubsystemId)
        else ""
    )
    kind = "SUBSYSTEM" if isinstance(client, SubsystemId) else "MEMBER"
    server = (
        ""
        if server_code is None
        else f"""<xrd:securityServer id:objectType="SERVER">
            <id:xRoadInstance>{owner.instance}</id:xRoadInstance>
            <id:memberClass>{owner.member_class}</id:memberClass>
            <id:memberCode>{owner.code}</id:memberCode>
            <id:serverCode>{server_code}</id:serverCode>
        </xrd:securityServer>"""
    )
    spec = (
        ""
        if fields is None
        else "<m:outputSpec>"
        + "".join(f"<m:outputField>{f}</m:outputField>" for f in fields)
        + "</m:outputSpec>"
    )
    return f"""<SOAP-ENV:Envelope
	xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
	xmlns:id="http://x-road.eu/xsd/identifiers"
	xmlns:xrd="http://x-road.eu/xsd/xroad.xsd"
	xmlns:m="http://x-road.eu/xsd/monitoring">
    <SOAP-ENV:Header>
        <xrd:client id:objectType="{kind}">
            <id:xRoadInstance>{client.instance}</id:xRoadInstance>
            <id:memberClass>{client.member_class}</id:memberClass>
            <id:memberCode>{client.code}</id:memberCode>{sub}
        </xrd:client>
        <xrd:service id:objectType="SERVICE">
            <id:xRoadInstance>{owner.instance}</id:xRoadInstance>
            <id:memberClass>{owner.member_class}</id:memberClass>
            <id:memberCode>{owner.code}</id:memberCode>
            <id:serviceCode>getSecurityServerMetrics</id:serviceCode>
        </xrd:service>
        {server}
        <xrd:id>{message_id or uuid.uuid4()}</xrd:id>
        <xrd:protocolVersion>4.0</xrd:protocolVersion>
    </SOAP-ENV:Header>
    <SOAP-ENV:Body>
        <m:getSecurityServerMetrics>{spec}</m:getSecurityServerMetrics>
    </SOAP-ENV:Body>
</SOAP-ENV:Envelope>""".encode()


# ----- pure parts -------------------------------------------------------------------------------
def state(**changes: Any) -> envmonitor.NodeState:
    now = dt.datetime(2026, 12, 3, 6, 0, tzinfo=dt.UTC)
    values: dict[str, Any] = {
        "server": "JP/GOV/372013/ss1",
        "version": "0.1.0",
        "uptime_seconds": 12.5,
        "certificates": [
            envmonitor.CertState("sign", "CN=Takamatsu", 0x1F, now, "good", now),
            envmonitor.CertState("auth", "CN=Takamatsu", 0x20, now, None, None),
        ],
        "last_timestamp": now,
        "unstamped": 0,
        "disk_free_bytes": 10**9,
        "disk_total_bytes": 2 * 10**9,
        "rss_bytes": 80 * 2**20,
        "load_average": (0.5, 0.25, 0.125),
        **changes,
    }
    return envmonitor.NodeState(**values)


def monitoring_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(BUNDLED_XSD / "monitoring.xsd")))


@pytest.mark.parametrize(
    "changes", [{}, {"rss_bytes": None, "load_average": None, "unstamped": None}]
)
def test_metric_tree_is_valid_per_x_road_schema(changes: dict[str, Any]) -> None:
    out = envmonitor.response_body(envmonitor.metric_set(state(**changes)))
    assert monitoring_schema().validate(out), monitoring_schema().error_log
    assert out.findtext("m:metricSet/m:name", namespaces=NS) == "SERVER:JP/GOV/372013/ss1"
    serial = out.find(".//m:metricSet[m:name='signCertificate']", NS)
    assert serial is not None
    assert serial.findtext("m:stringMetric[m:name='SerialNumber']/m:value", namespaces=NS) == "1F"


def test_output_spec_selects_metrics_and_keeps_the_version() -> None:
    tree = envmonitor.select(envmonitor.metric_set(state()), ["Timestamping", "Uptime"])
    assert [name for _kind, name, _value in tree.items] == [
        "proxyVersion",
        "systemMetrics",
        "Timestamping",
    ]
    system = tree.items[1][2]
    assert [name for _kind, name, _value in system.items] == ["Uptime"]
    out = envmonitor.response_body(tree)
    assert monitoring_schema().validate(out), monitoring_schema().error_log


def test_only_the_owner_and_the_monitoring_group_may_ask() -> None:
    owner = MemberId.parse("JP/GOV/372013")
    monitor = SubsystemId.parse("JP/GOV/072028/portal")
    assert envmonitor.may_query(owner, owner, ())
    assert envmonitor.may_query(monitor, owner, (monitor,))
    assert not envmonitor.may_query(monitor, owner, ())
    assert not envmonitor.may_query(SubsystemId.of(owner, "portal"), owner, (monitor,))


def test_metrics_service_is_the_owner_members_own() -> None:
    owner = MemberId.parse("JP/GOV/372013")
    service = ServiceId.of(owner, "getSecurityServerMetrics")
    assert str(service) == "JP/GOV/372013//getSecurityServerMetrics"
    assert ServiceId.parse(str(service)) == service and service.provider == owner
    assert metaservices.provider_metaservice(service) == "getSecurityServerMetrics"
    # a subsystem's service of that name is no metaservice: it would be an ordinary service
    subsystem = ServiceId.of(SubsystemId.of(owner, "welfare"), "getSecurityServerMetrics")
    assert metaservices.provider_metaservice(subsystem) is None


def test_x_road_request_parses_and_travels_in_the_wire_headers(schema: etree.XMLSchema) -> None:
    owner = MemberId.parse("JP/GOV/372013")
    body = metrics_request(SubsystemId.parse("JP/GOV/072028/portal"), owner, "ss1", [])
    assert schema.validate(etree.fromstring(body)), schema.error_log  # what X-Road's schemas say
    parsed = parse_soap_request(body, CT)
    headers = parsed.message_headers(CT)
    assert headers.service == ServiceId.of(owner, "getSecurityServerMetrics")
    assert str(parsed.security_server) == "JP/GOV/372013/ss1"
    assert wire.decode_headers(wire.encode_headers(headers)) == headers
    assert envmonitor.requested_fields(etree.fromstring(body)) == []


# ----- the federation ---------------------------------------------------------------------------
def wait_for(
    what: str, attempt: Callable[[], T], done: Callable[[T], bool], timeout: float = 60
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = attempt()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: {value}"
        time.sleep(0.5)


def fault_code(result: CallResult) -> str | None:
    return etree.fromstring(result.body).findtext("s:Body/s:Fault/faultcode", namespaces=NS)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    base = tmp_path_factory.mktemp("mon")
    federation = build_two_city_federation(
        base, say=lambda _m: None, settings={"timestamping_interval": 1, "conf_refresh_interval": 2}
    )
    try:
        aizu = federation.nodes["aizu"]
        central = base / "central"
        group = envmonitor.MONITORING_GROUP
        federation.run("central", "group", "add", group, "--dir", central)
        federation.run("central", "group", "add-member", group, aizu.client_id, "--dir", central)
        federation.run("central", "conf", "publish", "--dir", central)
        # a second system of Aizu's, allowed out, but not the monitoring client
        federation.run(
            "secnode", "client", "allow", "residents", "--address", "127.0.0.1", "--dir", aizu.dir
        )
        yield federation
    finally:
        federation.stop()


def ask_metrics(fed: Federation, client: str, **kwargs: Any) -> CallResult:
    aizu, taka = fed.nodes["aizu"], fed.nodes["takamatsu"]
    server = kwargs.pop("server_code", taka.server_code)
    body = metrics_request(SubsystemId.parse(client), MemberId.parse(taka.member), server, **kwargs)
    return http("POST", aizu.client_url + "/", body, {"Content-Type": CT})


@pytest.fixture(scope="module")
def ready(fed: Federation) -> Federation:
    """Takamatsu follows the configuration with the monitoring group; Aizu lets 'residents'
    (a second system, not the monitoring client) out."""
    aizu = fed.nodes["aizu"]
    wait_for(
        "metrics for the monitoring client",
        lambda: ask_metrics(fed, aizu.client_id),
        lambda r: r.status == 200 and fault_code(r) is None,
    )
    wait_for(  # Aizu's service reload lets 'residents' out after a few seconds
        "Aizu lets its residents system out",
        lambda: ask_metrics(fed, f"{aizu.member}/residents"),
        lambda r: fault_code(r) != "Server.ClientProxy.AccessDenied",
    )
    return fed


def metric(doc: Any, path: str) -> str | None:
    """``a/b/c``: the value of metric ``c`` in set ``b`` in set ``a`` under the root set."""
    *sets, name = path.split("/")
    xpath = "s:Body/m:getSecurityServerMetricsResponse/m:metricSet"
    for s in sets:
        xpath += f"/m:metricSet[m:name='{s}']"
    xpath += f"/*[m:name='{name}']/m:value"
    value: str | None = doc.findtext(xpath, namespaces=NS)
    return value


def cert_of(node: CityNode, usage: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((node.dir / "keys" / f"{usage}.pem").read_bytes())


@pytest.mark.slow
def test_metrics_answer_for_the_monitoring_client(
    ready: Federation, schema: etree.XMLSchema
) -> None:
    aizu, taka = ready.nodes["aizu"], ready.nodes["takamatsu"]
    welfare = ServiceId.parse(f"{taka.member}/welfare/getResident")
    exchanged = call_soap(
        aizu.client_url, SubsystemId.parse(aizu.client_id), welfare, "<ns1:id>2002</ns1:id>"
    )
    assert exchanged.status == 200 and fault_code(exchanged) is None, exchanged.body
    result = wait_for(  # time-stamping runs every second: the exchange gets stamped
        "a time-stamp reported",
        lambda: ask_metrics(ready, aizu.client_id),
        lambda r: bool(metric(etree.fromstring(r.body), "Timestamping/LastTimestamp")),
    )
    doc = etree.fromstring(result.body)
    assert schema.validate(doc), (schema.error_log, result.body[:3000])
    assert doc.findtext("s:Header/xrd:requestHash", namespaces=NS)
    root = doc.find("s:Body/m:getSecurityServerMetricsResponse/m:metricSet", NS)
    assert root is not None and root.findtext("m:name", namespaces=NS) == (
        f"SERVER:{taka.member}/{taka.server_code}"
    )
    assert metric(doc, "proxyVersion")
    assert float(metric(doc, "systemMetrics/Uptime") or 0) > 0
    assert int(metric(doc, "systemMetrics/DiskSpaceFree") or 0) > 0
    assert int(metric(doc, "systemMetrics/ResidentSetSize") or 0) > 10 * 2**20
    assert metric(doc, "systemMetrics/SystemLoadAverage1") is not None
    for usage in ("sign", "auth"):
        cert = cert_of(taka, usage)
        base = f"Certificates/{usage}Certificate"
        assert metric(doc, f"{base}/SerialNumber") == format(cert.serial_number, "X")
        assert metric(doc, f"{base}/NotAfter") == cert.not_valid_after_utc.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        assert "Takamatsu" in (metric(doc, f"{base}/Subject") or "")
        assert metric(doc, f"{base}/OcspStatus") == "good"
    last = dt.datetime.fromisoformat(metric(doc, "Timestamping/LastTimestamp") or "")
    assert abs((dt.datetime.now(dt.UTC) - last).total_seconds()) < 120
    assert int(metric(doc, "Timestamping/UnstampedRecords") or -1) >= 0


@pytest.mark.slow
def test_output_spec_over_the_nodes(ready: Federation, schema: etree.XMLSchema) -> None:
    aizu = ready.nodes["aizu"]
    result = ask_metrics(ready, aizu.client_id, fields=["Certificates"])
    doc = etree.fromstring(result.body)
    assert schema.validate(doc), schema.error_log
    sets = doc.findall("s:Body/m:getSecurityServerMetricsResponse/m:metricSet/m:metricSet", NS)
    assert [s.findtext("m:name", namespaces=NS) for s in sets] == ["Certificates"]
    assert metric(doc, "proxyVersion")


@pytest.mark.slow
def test_metrics_are_refused_to_others_and_the_refusal_is_logged(ready: Federation) -> None:
    aizu = ready.nodes["aizu"]
    other = f"{aizu.member}/residents"
    refused = ask_metrics(ready, other)
    assert fault_code(refused) == "Server.ServerProxy.AccessDenied", refused.body
    assert b"security-server-monitoring" in refused.body
    log_text = (ready.base / "logs" / "node-takamatsu.log").read_text(errors="replace")
    assert f"{other} may not read the metrics of this node" in log_text
    no_target = ask_metrics(ready, aizu.client_id, server_code=None)
    assert fault_code(no_target) == "Client.MissingHeaderField", no_target.body
    wrong = ask_metrics(ready, aizu.client_id, server_code="ss9")
    assert fault_code(wrong) == "Server.ClientProxy.InvalidSecurityServer", wrong.body
    taka = ready.nodes["takamatsu"]
    other_service = metrics_request(
        SubsystemId.parse(aizu.client_id), MemberId.parse(taka.member), taka.server_code
    ).replace(b"getSecurityServerMetrics", b"getSomethingElse")  # header and body
    unknown = http("POST", aizu.client_url + "/", other_service, {"Content-Type": CT})
    assert fault_code(unknown) == "Server.ServerProxy.UnknownService", unknown.body


# ----- evidence download ------------------------------------------------------------------------
def asic(node: CityNode, query_id: str, client: str, **flags: str) -> CallResult:
    sid = SubsystemId.parse(client)
    params = {
        "queryId": query_id,
        "xRoadInstance": sid.instance,
        "memberClass": sid.member_class,
        "memberCode": sid.code,
        "subsystemCode": sid.subsystem,
        **flags,
    }
    return http("GET", f"{node.client_url}/asic?{urlencode(params)}")


def verify_file(fed: Federation, path: Path, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(
        (fed.base / "ca" / "ca.pem").read_bytes() + (fed.base / "tsa" / "tsa.pem").read_bytes()
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "secnode",
            "log",
            "verify",
            str(path),
            "--anchor",
            str(anchors),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=fed.env(),
        timeout=120,
    )
    return done.returncode, json.loads(done.stdout)


@pytest.mark.slow
def test_asic_download_verifies_offline(ready: Federation, tmp_path: Path) -> None:
    aizu, taka = ready.nodes["aizu"], ready.nodes["takamatsu"]
    welfare = ServiceId.parse(f"{taka.member}/welfare/getResident")
    query_id = f"asic-{uuid.uuid4()}"
    body = soap_request(
        SubsystemId.parse(aizu.client_id), welfare, "<ns1:id>2002</ns1:id>", query_id
    )
    sent = http("POST", aizu.client_url + "/", body, {"Content-Type": CT})
    assert sent.status == 200 and fault_code(sent) is None, sent.body
    got = wait_for(  # stamped within a few rounds (or force stamps it now)
        "the evidence of the exchange",
        lambda: asic(aizu, query_id, aizu.client_id, force="true"),
        lambda r: r.status == 200,
    )
    assert got.headers["Content-Type"] == "application/vnd.secnode.evidence-bundle"
    assert "attachment" in got.headers["Content-Disposition"]
    path = tmp_path / "evidence.bundle"
    path.write_bytes(got.body)
    code, report = verify_file(ready, path, tmp_path)
    assert code == 0, report
    assert report["checked"]["records"] == 2 and report["checked"]["signatures"] == 2
    only = asic(aizu, query_id, aizu.client_id, type="request")
    assert only.status == 200
    (tmp_path / "request.bundle").write_bytes(only.body)
    code, report = verify_file(ready, tmp_path / "request.bundle", tmp_path)
    assert code == 0 and report["checked"]["records"] == 1, report


@pytest.mark.slow
def test_asic_refusals(ready: Federation) -> None:
    aizu, taka = ready.nodes["aizu"], ready.nodes["takamatsu"]
    welfare = ServiceId.parse(f"{taka.member}/welfare/getResident")
    query_id = f"asic-{uuid.uuid4()}"
    body = soap_request(
        SubsystemId.parse(aizu.client_id), welfare, "<ns1:id>2002</ns1:id>", query_id
    )
    assert http("POST", aizu.client_url + "/", body, {"Content-Type": CT}).status == 200
    unknown = asic(aizu, "no-such-query", aizu.client_id)
    assert unknown.status == 404 and b"no message with queryId" in unknown.body
    other = asic(aizu, query_id, f"{aizu.member}/residents")  # allowed out, but not its exchange
    assert other.status == 403 and b"only its client may fetch it" in other.body
    stranger = asic(aizu, query_id, f"{aizu.member}/unregistered")
    assert stranger.status == 403 and b"may not act as" in stranger.body
    foreign = asic(aizu, query_id, taka.client_id)
    assert foreign.status == 403 and b"not served by this node" in foreign.body
    bad = asic(aizu, query_id, aizu.client_id, type="both")
    assert bad.status == 400 and b"type must be request or response" in bad.body
    log_text = (ready.base / "logs" / "node-aizu.log").read_text(errors="replace")
    assert "only its client may fetch it" in log_text


@pytest.mark.slow
def test_asic_waits_for_time_stamps_unless_forced(ready: Federation) -> None:
    """With the TSA down the evidence is refused (409) with the reason; once it is back,
    ``force`` stamps the records at once."""
    aizu, taka = ready.nodes["aizu"], ready.nodes["takamatsu"]
    welfare = ServiceId.parse(f"{taka.member}/welfare/getResident")
    tsa = ready.processes.pop("tsa")
    tsa.terminate()
    tsa.wait(timeout=10)
    try:
        query_id = f"asic-{uuid.uuid4()}"
        body = soap_request(
            SubsystemId.parse(aizu.client_id), welfare, "<ns1:id>2002</ns1:id>", query_id
        )
        assert http("POST", aizu.client_url + "/", body, {"Content-Type": CT}).status == 200
        waiting = asic(aizu, query_id, aizu.client_id)
        assert waiting.status == 409 and b"not time-stamped yet" in waiting.body, waiting.body
        assert b"add &force" in waiting.body
        forced = asic(aizu, query_id, aizu.client_id, force="")
        assert forced.status == 409 and b"time-stamping failed" in forced.body, forced.body
    finally:
        ready.start(
            "tsa", "certs", "tsa", "serve", ready.base / "tsa",
            "--port", str(ready.ports["tsa"]), port=ready.ports["tsa"],
        )  # fmt: skip
    got = wait_for(
        "the forced evidence",
        lambda: asic(aizu, query_id, aizu.client_id, force=""),
        lambda r: r.status == 200,
    )
    assert got.headers["Content-Type"] == "application/vnd.secnode.evidence-bundle"
