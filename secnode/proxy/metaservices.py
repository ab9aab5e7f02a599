"""X-Road metaservices: listClients (client node), listMethods / allowedMethods / getOpenAPI.

listClients is answered by the client's own node from the global
configuration. The per-provider metaservices travel to the provider's node like
any other request (signed, logged) and that node answers them itself.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from lxml import etree

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import MemberId, ServiceId, SubsystemId
from secnode.core.message import Body, MessageHeaders
from secnode.core.xmlsafe import parse_xml
from secnode.proxy.access import client_granted

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime, ServiceEntry
    from secnode.core.globalconf import GlobalConf

PROVIDER_METASERVICES = ("listMethods", "allowedMethods", "getOpenAPI", "getWsdl")
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD_NS = "http://x-road.eu/xsd/xroad.xsd"
ID_NS = "http://x-road.eu/xsd/identifiers"


def provider_metaservice(service: ServiceId) -> str | None:
    return service.service if service.service in PROVIDER_METASERVICES else None


def _id_json(ident: MemberId | SubsystemId | ServiceId, object_type: str) -> dict[str, str]:
    out = {
        "object_type": object_type,
        "xroad_instance": ident.instance,
        "member_class": ident.member_class,
        "member_code": ident.code,
    }
    if isinstance(ident, SubsystemId | ServiceId):
        out["subsystem_code"] = ident.subsystem
    if isinstance(ident, ServiceId):
        out["service_code"] = ident.service
        if ident.version:
            out["service_version"] = ident.version
    return out


def list_clients(conf: GlobalConf) -> dict[str, Any]:
    """Members and subsystems of the federation, in X-Road's JSON shape (pr-mrest)."""
    items: list[dict[str, Any]] = []
    for member in sorted(conf.members.values(), key=lambda m: str(m.id)):
        items.append({"id": _id_json(member.id, "MEMBER"), "name": member.name})
        for sub in sorted(member.subsystems):
            items.append(
                {
                    "id": _id_json(sub, "SUBSYSTEM"),
                    "name": member.name,
                    "subsystem_name": sub.subsystem,
                }
            )
    return {"member": items}


def _services(rt: NodeRuntime, headers: MessageHeaders, allowed_only: bool) -> list[ServiceEntry]:
    entries = rt.services.for_subsystem(headers.service.subsystem_id)
    if allowed_only:
        entries = [e for e in entries if client_granted(e, headers.client, rt.conf)]
    return sorted(entries, key=lambda e: str(e.service))


def answer_provider(
    rt: NodeRuntime, headers: MessageHeaders, meta: str, request_body: Body = b""
) -> tuple[int, str, bytes]:
    """(status, content type, body) for a metaservice addressed to this provider node."""
    if meta == "getWsdl":
        raise XRoadError(
            errors.UNKNOWN_SERVICE,
            "getWsdl is not supported: secnode does not store WSDL documents",
        )
    if meta == "getOpenAPI":
        code = (parse_qs(headers.rest_query or "").get("serviceCode") or [""])[0]
        match = [
            e
            for e in rt.services.for_subsystem(headers.service.subsystem_id)
            if e.service.service == code
        ]
        if not match or not match[0].openapi:
            raise XRoadError(
                errors.UNKNOWN_SERVICE, f"no OpenAPI description for service code {code!r}"
            )
        text = match[0].openapi
        ctype = "application/json" if text.lstrip().startswith("{") else "text/yaml"
        return 200, ctype, text.encode()
    entries = _services(rt, headers, allowed_only=(meta == "allowedMethods"))
    if headers.protocol == "soap":
        return 200, "text/xml; charset=utf-8", _soap_list(bytes(request_body), meta, entries)
    listing = [
        {
            **_id_json(e.service, "SERVICE"),
            "service_type": ("OPENAPI" if e.openapi else "REST") if e.type == "rest" else "WSDL",
        }
        for e in entries
    ]
    return 200, "application/json", json.dumps({"service": listing}).encode()


def _soap_list(request_body: bytes, meta: str, entries: list[ServiceEntry]) -> bytes:
    """A SOAP response echoing the request's header with ``xrd:service`` entries."""
    request = parse_xml(request_body)
    header = request.find(f"{{{SOAP_ENV}}}Header")
    envelope = etree.Element(
        f"{{{SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV, "xrd": XROAD_NS, "id": ID_NS}
    )
    if header is not None:
        envelope.append(header)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    wrapper = etree.SubElement(body, f"{{{XROAD_NS}}}{meta}Response")
    for entry in entries:
        svc = etree.SubElement(wrapper, f"{{{XROAD_NS}}}service")
        svc.set(f"{{{ID_NS}}}objectType", "SERVICE")
        for tag, value in (
            ("xRoadInstance", entry.service.instance),
            ("memberClass", entry.service.member_class),
            ("memberCode", entry.service.code),
            ("subsystemCode", entry.service.subsystem),
            ("serviceCode", entry.service.service),
            ("serviceVersion", entry.service.version),
        ):
            if value:
                etree.SubElement(svc, f"{{{ID_NS}}}{tag}").text = value
    out: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return out
