"""X-Road metaservices: listClients (client node), listMethods / allowedMethods /
getOpenAPI / getWsdl (provider node), in X-Road's shapes; and the owner member's
getSecurityServerMetrics, answered by :mod:`secnode.proxy.monitoring`.

listClients is answered by the client's own node from the global configuration
(``text/xml`` clientList unless the client asks for JSON). The per-provider
metaservices travel to the provider's node like any other request (signed,
logged) and that node answers them itself: over SOAP, WSDL services, answers
with ``requestHash``; over REST, REST services with their endpoints (pr-mrest).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from lxml import etree

from secnode.core import errors, mime_related, openapi_doc
from secnode.core.errors import XRoadError
from secnode.core.identifiers import MemberId, ServiceId, SubsystemId
from secnode.core.message import Body, MessageHeaders
from secnode.core.soap import SoapRequest
from secnode.core.soap_response import prepare_soap_response
from secnode.core.xmlsafe import parse_xml
from secnode.proxy import monitoring
from secnode.proxy.access import client_granted

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime, ServiceEntry
    from secnode.core.globalconf import GlobalConf

PROVIDER_METASERVICES = ("listMethods", "allowedMethods", "getOpenAPI", "getWsdl")
#: X-Road's environmental monitoring service, a member-level service of the node's owner.
METRICS_SERVICE = "getSecurityServerMetrics"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD_NS = "http://x-road.eu/xsd/xroad.xsd"
ID_NS = "http://x-road.eu/xsd/identifiers"
SOAP_CTYPE = "text/xml; charset=utf-8"

log = logging.getLogger("secnode.metaservices")


def provider_metaservice(service: ServiceId) -> str | None:
    """The metaservice the provider node answers itself: a subsystem's listMethods, ...,
    or the owner member's getSecurityServerMetrics (X-Road's environmental monitoring)."""
    if service.service == METRICS_SERVICE and service.is_member_level:
        return METRICS_SERVICE
    return service.service if service.service in PROVIDER_METASERVICES else None


def _id_json(ident: MemberId | SubsystemId | ServiceId, object_type: str) -> dict[str, str]:
    out = {
        "object_type": object_type,
        "xroad_instance": ident.instance,
        "member_class": ident.member_class,
        "member_code": ident.code,
    }
    if isinstance(ident, SubsystemId | ServiceId) and ident.subsystem is not None:
        out["subsystem_code"] = ident.subsystem
    if isinstance(ident, ServiceId):
        out["service_code"] = ident.service
        if ident.version:
            out["service_version"] = ident.version
    return out


def _clients(conf: GlobalConf, instance: str | None) -> list[tuple[Any, str, str | None]]:
    """(id, member name, subsystem code or None) of every member and subsystem."""
    out: list[tuple[Any, str, str | None]] = []
    for member in sorted(conf.members.values(), key=lambda m: str(m.id)):
        if instance is not None and member.id.instance != instance:
            continue
        out.append((member.id, member.name, None))
        out.extend((sub, member.name, sub.subsystem) for sub in sorted(member.subsystems))
    return out


def list_clients(conf: GlobalConf, instance: str | None = None) -> dict[str, Any]:
    """Members and subsystems of the federation (of ``instance`` if given), in X-Road's JSON
    shape (pr-meta Annex B)."""
    items: list[dict[str, Any]] = []
    for ident, name, subsystem in _clients(conf, instance):
        if subsystem is None:
            items.append({"id": _id_json(ident, "MEMBER"), "name": name})
        else:
            items.append(
                {"id": _id_json(ident, "SUBSYSTEM"), "name": name, "subsystem_name": subsystem}
            )
    return {"member": items}


def list_clients_xml(conf: GlobalConf, instance: str | None = None) -> bytes:
    """The same list as X-Road's default answer: ``xrd:clientList`` (service-metainfo.xsd)."""
    root = etree.Element(f"{{{XROAD_NS}}}clientList", nsmap={"xrd": XROAD_NS, "id": ID_NS})
    for ident, name, subsystem in _clients(conf, instance):
        member = etree.SubElement(root, f"{{{XROAD_NS}}}member")
        _id_xml(member, "id", ident, "MEMBER" if subsystem is None else "SUBSYSTEM")
        etree.SubElement(member, f"{{{XROAD_NS}}}name").text = name
        if subsystem is not None:
            etree.SubElement(member, f"{{{XROAD_NS}}}subsystemName").text = subsystem
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
    return out


def _id_xml(parent: Any, tag: str, ident: Any, object_type: str) -> Any:
    elem = etree.SubElement(parent, f"{{{XROAD_NS}}}{tag}")
    elem.set(f"{{{ID_NS}}}objectType", object_type)
    for part, value in (
        ("xRoadInstance", ident.instance),
        ("memberClass", ident.member_class),
        ("memberCode", ident.code),
        ("subsystemCode", getattr(ident, "subsystem", None)),
        ("serviceCode", getattr(ident, "service", None)),
        ("serviceVersion", getattr(ident, "version", None)),
    ):
        if value:
            etree.SubElement(elem, f"{{{ID_NS}}}{part}").text = value
    return elem


def _services(
    rt: NodeRuntime, headers: MessageHeaders, allowed_only: bool, kind: str
) -> list[ServiceEntry]:
    """The subsystem's services of ``kind`` (X-Road lists WSDL services over SOAP and REST
    services over REST), only those granted to the client for allowedMethods."""
    entries = [e for e in rt.services.for_provider(headers.service.provider) if e.type == kind]
    if allowed_only:
        entries = [e for e in entries if client_granted(e, headers.client, rt.conf)]
    return sorted(entries, key=lambda e: str(e.service))


def _rest_listing(entries: list[ServiceEntry]) -> list[dict[str, Any]]:
    """pr-mrest Annex B: each service with its type and endpoints (from its OpenAPI)."""
    listing = []
    for e in entries:
        if e.openapi:
            try:
                endpoints = openapi_doc.endpoints(e.openapi)
            except openapi_doc.OpenApiError as exc:  # stored before it was checked
                log.warning("service %s: %s; listed without endpoints", e.service, exc)
                endpoints = []
        else:
            endpoints = [openapi_doc.ANY_ENDPOINT]
        listing.append(
            {
                **_id_json(e.service, "SERVICE"),
                "service_type": "OPENAPI" if e.openapi else "REST",
                "endpoint_list": [{"method": m, "path": p} for m, p in endpoints],
            }
        )
    return listing


def answer_provider(
    rt: NodeRuntime,
    headers: MessageHeaders,
    meta: str,
    request_body: Body = b"",
    soap_request: SoapRequest | None = None,
) -> tuple[int, str, bytes]:
    """(status, content type, body) for a metaservice addressed to this provider node.

    A SOAP answer is complete: it echoes the request header and carries ``requestHash``,
    like any provider's response after this node prepared it."""
    if meta == METRICS_SERVICE:  # the caller was checked by monitoring.check_request
        if soap_request is None:
            raise XRoadError(errors.UNKNOWN_SERVICE, f"{METRICS_SERVICE} is a SOAP service")
        return monitoring.answer(rt, headers, bytes(request_body), soap_request)
    if meta == "getOpenAPI":
        return _get_openapi(rt, headers)
    if headers.protocol == "soap":
        assert soap_request is not None
        request_body = bytes(request_body)  # lxml takes bytes; a metaservice request is small
        if meta == "getWsdl":
            return _get_wsdl(rt, headers, request_body, soap_request)
        entries = _services(rt, headers, meta == "allowedMethods", "soap")
        envelope = _soap_list(request_body, meta, entries)
        return 200, SOAP_CTYPE, prepare_soap_response(envelope, soap_request, request_body)
    if meta == "getWsdl":
        raise XRoadError(errors.UNKNOWN_SERVICE, "getWsdl is a SOAP metaservice")
    entries = _services(rt, headers, meta == "allowedMethods", "rest")
    body = json.dumps({"service": _rest_listing(entries)}).encode()
    return 200, "application/json", body


def _get_openapi(rt: NodeRuntime, headers: MessageHeaders) -> tuple[int, str, bytes]:
    """The service's stored OpenAPI with ``servers`` cut to their paths (X-Road does: the
    provider system's host stays inside)."""
    code = (parse_qs(headers.rest_query or "").get("serviceCode") or [""])[0]
    match = [
        e for e in rt.services.for_provider(headers.service.provider) if e.service.service == code
    ]
    if not match or not match[0].openapi:
        raise XRoadError(
            errors.UNKNOWN_SERVICE, f"no OpenAPI description for service code {code!r}"
        )
    try:
        ctype, text = openapi_doc.without_hosts(match[0].openapi)
    except openapi_doc.OpenApiError as exc:
        raise XRoadError(errors.SERVER_PROXY_INTERNAL_ERROR, str(exc)) from exc
    return 200, ctype, text.encode()


def _get_wsdl(
    rt: NodeRuntime, headers: MessageHeaders, request_body: bytes, soap_request: SoapRequest
) -> tuple[int, str, bytes]:
    """pr-meta §4: the SOAP response (``getWsdlResponse`` naming the service) and the
    stored WSDL as its attachment, ``multipart/related``."""
    body = parse_xml(request_body).find(f"{{{SOAP_ENV}}}Body/{{{XROAD_NS}}}getWsdl")
    code = body.findtext(f"{{{XROAD_NS}}}serviceCode") if body is not None else None
    version = body.findtext(f"{{{XROAD_NS}}}serviceVersion") if body is not None else None
    if not code or not code.strip():
        raise XRoadError(errors.INVALID_BODY, "getWsdl needs xrd:serviceCode in its body")
    code, version = code.strip(), (version or "").strip() or None
    match = [
        e
        for e in rt.services.for_provider(headers.service.provider)
        if e.type == "soap" and e.service.service == code and e.service.version == version
    ]
    if not match:
        raise XRoadError(errors.UNKNOWN_SERVICE, f"no SOAP service {code!r} (version {version})")
    if not match[0].wsdl:
        raise XRoadError(
            errors.UNKNOWN_SERVICE,
            f"service {code!r} has no stored WSDL (see 'secnode service wsdl')",
        )
    envelope = _soap_envelope(request_body, "getWsdlResponse")
    wrapper = envelope[-1][0]
    etree.SubElement(wrapper, f"{{{XROAD_NS}}}serviceCode").text = code
    if version:
        etree.SubElement(wrapper, f"{{{XROAD_NS}}}serviceVersion").text = version
    soap_part = prepare_soap_response(
        etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"),
        soap_request,
        request_body,
    )
    ctype, out = mime_related.build(soap_part, match[0].wsdl.encode("utf-8"), "text/xml")
    return 200, ctype, out


def _soap_envelope(request_body: bytes, response_wrapper: str) -> Any:
    """A response envelope echoing the request's header, with an empty body wrapper."""
    request = parse_xml(request_body)
    header = request.find(f"{{{SOAP_ENV}}}Header")
    envelope = etree.Element(
        f"{{{SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV, "xrd": XROAD_NS, "id": ID_NS}
    )
    if header is not None:
        envelope.append(header)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    etree.SubElement(body, f"{{{XROAD_NS}}}{response_wrapper}")
    return envelope


def _soap_list(request_body: bytes, meta: str, entries: list[ServiceEntry]) -> bytes:
    """A SOAP response echoing the request's header with ``xrd:service`` entries."""
    envelope = _soap_envelope(request_body, f"{meta}Response")
    wrapper = envelope[-1][0]
    for entry in entries:
        _id_xml(wrapper, "service", entry.service, "SERVICE")
    out: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return out
