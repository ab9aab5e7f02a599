"""Errors as the caller sees them: a SOAP 1.1 fault or X-Road's REST JSON error (pure).

Rendering lives here, not on :class:`~secnode.core.errors.XRoadError`, so the error
catalogue needs no message format and the SOAP module needs no error renderer.
"""

from __future__ import annotations

import json
import re
from xml.sax.saxutils import escape

from secnode.core.errors import (
    ERROR_HEADER,
    REST_ERROR_CONTENT_TYPE,
    SOAP_FAULT_HTTP_STATUS,
    XRoadError,
    default_http_status,
)
from secnode.core.soap_names import SOAP_ENV_NS

REST_XML_ERROR_CONTENT_TYPE = "application/xml; charset=utf-8"

Rendered = tuple[int, dict[str, str], bytes]


def rest_body(err: XRoadError) -> bytes:
    """The JSON body ``{"type", "message", "detail"}`` (pr-rest §4.6), UTF-8."""
    doc = {"type": err.code, "message": err.message, "detail": err.detail}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def rest_headers(err: XRoadError) -> dict[str, str]:
    """Headers that go with :func:`rest_body`, including ``X-Road-Error``."""
    return {"Content-Type": REST_ERROR_CONTENT_TYPE, ERROR_HEADER: err.code}


def rest_xml_body(err: XRoadError) -> bytes:
    """The same error as XML, for a client that asks ``Accept: application/xml`` (X-Road:
    ``<error><type/><message/><detail/></error>``)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><error>'
        f"<type>{_xml_text(err.code)}</type><message>{_xml_text(err.message)}</message>"
        f"<detail>{_xml_text(err.detail)}</detail></error>"
    ).encode()


def rest_response(err: XRoadError, xml: bool = False) -> Rendered:
    """``(status, headers, body)`` for a REST client: 400 for a ``Client.*`` error, else 500,
    as X-Road answers (the status the error was raised with is for the logs); an XML body
    when the client asked for one."""
    status = default_http_status(err.code)
    if xml:
        headers = {"Content-Type": REST_XML_ERROR_CONTENT_TYPE, ERROR_HEADER: err.code}
        return status, headers, rest_xml_body(err)
    return status, rest_headers(err), rest_body(err)


def wants_xml(accept: str | None) -> bool:
    """Does an ``Accept`` header ask for an XML error body (and not JSON first)?"""
    if not accept:
        return False
    types = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    for kind in types:
        if kind in ("application/xml", "text/xml"):
            return True
        if kind == "application/json":
            return False
    return False


def soap_body(err: XRoadError) -> bytes:
    """The SOAP 1.1 fault document for this error."""
    return build_fault(err.code, err.message, err.detail)


def soap_response(err: XRoadError) -> Rendered:
    """``(status, headers, body)`` for a SOAP client: HTTP 200 as X-Road does."""
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ""}
    return SOAP_FAULT_HTTP_STATUS, headers, soap_body(err)


_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(value: str) -> str:
    return escape(_XML_ILLEGAL.sub("\ufffd", value), {'"': "&quot;"})


def build_fault(
    code: str, message: str, detail: str | None = None, actor: str | None = None
) -> bytes:
    """A SOAP 1.1 fault document in X-Road's layout (``SoapFault.createFaultXml``).

    ``faultcode`` = ``code``, ``faultstring`` = ``message``, optional
    ``faultactor``, and ``detail/faultDetail`` (unqualified) = ``detail``,
    which X-Road uses for a log-correlation UUID. Characters XML 1.0 cannot
    carry are replaced, so any message is safe to embed. Send it with HTTP 200
    (:data:`secnode.core.errors.SOAP_FAULT_HTTP_STATUS`).
    """
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV_NS}">',
        "<SOAP-ENV:Body><SOAP-ENV:Fault>",
        f"<faultcode>{_xml_text(code)}</faultcode>",
        f"<faultstring>{_xml_text(message)}</faultstring>",
    ]
    if actor is not None:
        parts.append(f"<faultactor>{_xml_text(actor)}</faultactor>")
    if detail is not None:
        parts.append(f'<detail><faultDetail xmlns="">{_xml_text(detail)}</faultDetail></detail>')
    parts.append("</SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>")
    return "".join(parts).encode("utf-8")
