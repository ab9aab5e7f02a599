"""Sample calls an information system makes through its node (REST and SOAP)."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape

from secnode.core.identifiers import ClientId, ServiceId, SubsystemId

SOAP_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"
    xmlns:ns1="urn:demo:welfare">
  <SOAP-ENV:Header>
    <xrd:client id:objectType="{ctype}">
      <id:xRoadInstance>{ci}</id:xRoadInstance>
      <id:memberClass>{cc}</id:memberClass>
      <id:memberCode>{cm}</id:memberCode>{cs}
    </xrd:client>
    <xrd:service id:objectType="SERVICE">
      <id:xRoadInstance>{si}</id:xRoadInstance>
      <id:memberClass>{sc}</id:memberClass>
      <id:memberCode>{sm}</id:memberCode>{ss}
      <id:serviceCode>{svc}</id:serviceCode>
    </xrd:service>
    <xrd:id>{mid}</xrd:id>
    <xrd:userId>JP-demo-operator</xrd:userId>
    <xrd:issue>demo-{mid8}</xrd:issue>
    <xrd:protocolVersion>4.0</xrd:protocolVersion>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body>
    <ns1:{svc}>{payload}</ns1:{svc}>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""


@dataclass
class CallResult:
    status: int
    headers: dict[str, str]
    body: bytes


def _subsystem_code(code: str | None) -> str:
    """The ``subsystemCode`` element, or nothing for a member (identifiers.xsd: optional)."""
    return "" if code is None else f"\n      <id:subsystemCode>{escape(code)}</id:subsystemCode>"


def soap_request(
    client: ClientId, service: ServiceId, payload: str, message_id: str | None = None
) -> bytes:
    """An X-Road v4.0 SOAP request in the published example's shape (a member or a
    subsystem as the client, a service of a subsystem or of a member)."""
    mid = message_id or str(uuid.uuid4())
    sub = client.subsystem if isinstance(client, SubsystemId) else None
    return SOAP_TEMPLATE.format(
        ctype="SUBSYSTEM" if sub is not None else "MEMBER",
        ci=client.instance,
        cc=client.member_class,
        cm=client.code,
        cs=_subsystem_code(sub),
        si=service.instance,
        sc=service.member_class,
        sm=service.code,
        ss=_subsystem_code(service.subsystem),
        svc=service.service,
        mid=escape(mid),
        mid8=mid[:8],
        payload=payload,
    ).encode("utf-8")


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> CallResult:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return CallResult(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        with exc:  # its response holds the connection
            return CallResult(exc.code, dict(exc.headers), exc.read())


def call_soap(client_url: str, client: ClientId, service: ServiceId, payload: str) -> CallResult:
    return http(
        "POST",
        client_url + "/",
        soap_request(client, service, payload),
        {"Content-Type": "text/xml; charset=utf-8"},
    )


def call_rest(
    client_url: str,
    client: ClientId,
    service: ServiceId,
    path: str = "",
    method: str = "GET",
    body: bytes | None = None,
    extra: dict[str, str] | None = None,
) -> CallResult:
    url = f"{client_url}/r1/{service}{path}"
    headers = {"X-Road-Client": str(client), **(extra or {})}
    return http(method, url, body, headers)
