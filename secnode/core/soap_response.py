"""Checking a SOAP response against its request, and adding ``xrd:requestHash``.

The provider's node checks the provider system's response and splices the
request hash into its header (:func:`prepare_soap_response`); the client's
node checks that the hash came back and matches what its client sent
(:func:`check_soap_response`). Both sides share the echo rules, so they sit
together here, apart from request parsing in :mod:`secnode.core.soap`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.message import POLICY_EXTENSIONS
from secnode.core.soap import SoapRequest, soap_request_hash
from secnode.core.soap_envelope import Scan, check_wrapper, scan_envelope
from secnode.core.soap_header import REQUEST_HASH_TAG, HeaderFields, read_header
from secnode.core.soap_names import (
    HEADER_TAG,
    REQUEST_HASH_ALGORITHM,
    XROAD_NS,
    is_element,
    qname,
)
from secnode.core.xmlsafe import Element, XmlError, parse_xml


@dataclass(frozen=True, slots=True)
class SoapResponse:
    """What a node learned from a SOAP response it checked.

    A provider's SOAP Fault is passed on as it is (``is_fault``): it need not
    echo the request headers and gets no ``requestHash``.
    """

    is_fault: bool
    fault_code: str | None = None
    fault_string: str | None = None
    body_wrapper: str | None = None
    request_hash: str | None = None


def _fault_field(fault: Element, name: str) -> str | None:
    for child in fault:
        if is_element(child) and qname(child.tag) == (None, name):
            return "".join(child.itertext()).strip()
    return None


def _check_echo(h: HeaderFields, request: SoapRequest, code: str) -> None:
    """The response must repeat the request's headers (pr-mess §2.2; X-Road
    checks client, service, id and userId). issue and the policy headers are
    compared when the response carries them."""
    if h.protocol_version != request.protocol_version:
        raise XRoadError(
            code,
            f"response protocolVersion is {h.protocol_version!r}, "
            f"not the request's {request.protocol_version!r}",
        )
    pairs: list[tuple[str, object, object, bool]] = [
        ("client", h.client, request.client, True),
        ("service", h.service, request.service, True),
        ("id", h.message_id, request.message_id, True),
        ("userId", h.user_id, request.user_id, True),
        ("issue", h.issue, request.issue, False),
        ("purpose", h.purpose, request.purpose, False),
        ("legalBasis", h.legal_basis, request.legal_basis, False),
        ("dataSubject", h.data_subject, request.data_subject, False),
        *(
            (element, h.extensions.get(attr), dict(request.policy_extensions).get(attr), False)
            for attr, _, element in POLICY_EXTENSIONS
        ),
    ]
    for name, got, expected, mandatory in pairs:
        if got is None and not mandatory:
            continue
        if got != expected:
            raise XRoadError(code, f"Field '{name}' does not match in request and response")


def _inspect_response(
    response: bytes, request: SoapRequest, invalid_code: str, inconsistent_code: str
) -> tuple[Scan, HeaderFields | None, SoapResponse]:
    if not isinstance(response, bytes):
        raise TypeError("SOAP response must be bytes")
    if not response.strip():
        raise XRoadError(invalid_code, "Malformed SOAP message: response is empty")
    try:
        scan = scan_envelope(response, invalid_code, invalid_code, full=False, want_fault=True)
    except XmlError as exc:
        raise XRoadError(invalid_code, str(exc)) from None
    if scan.fault is not None:
        return (
            scan,
            None,
            SoapResponse(
                is_fault=True,
                fault_code=_fault_field(scan.fault, "faultcode"),
                fault_string=_fault_field(scan.fault, "faultstring"),
            ),
        )
    if scan.header is None:
        raise XRoadError(inconsistent_code, "Malformed SOAP message: response header missing")
    try:
        h = read_header(scan.header)
    except XRoadError as exc:
        raise XRoadError(invalid_code, f"response header: {exc.message}") from None
    _check_echo(h, request, inconsistent_code)
    assert scan.wrapper is not None
    check_wrapper(scan.wrapper, request.service, invalid_code)
    return (
        scan,
        h,
        SoapResponse(is_fault=False, body_wrapper=scan.wrapper, request_hash=h.request_hash),
    )


def _request_hash_element(header: Element, value: str) -> str:
    # Reuse a prefix the response already binds to the X-Road namespace (the
    # common case: it copied the request header), else declare one locally.
    for prefix, ns in header.nsmap.items():
        if ns == XROAD_NS and prefix:
            return (
                f'<{prefix}:requestHash algorithmId="{REQUEST_HASH_ALGORITHM}">'
                f"{value}</{prefix}:requestHash>"
            )
    return (
        f'<xrd:requestHash xmlns:xrd="{XROAD_NS}" algorithmId="{REQUEST_HASH_ALGORITHM}">'
        f"{value}</xrd:requestHash>"
    )


def _spliced_ok(data: bytes, value: str, expected_count: int) -> bool:
    """Does ``data``'s Header have ``expected_count`` element children, the last
    being our requestHash with ``value``? (Proves a byte splice landed right.)"""
    try:
        scan = scan_envelope(
            data, errors.SERVICE_INVALID_SOAP, errors.SERVICE_INVALID_SOAP, full=False
        )
    except (XRoadError, XmlError):
        return False
    if scan.header is None:
        return False
    children = [c for c in scan.header if isinstance(c.tag, str)]
    if len(children) != expected_count:
        return False
    last = children[-1]
    return bool(
        last.tag == REQUEST_HASH_TAG
        and last.text == value
        and last.get("algorithmId") == REQUEST_HASH_ALGORITHM
        and len(last) == 0
    )


def _splice_request_hash(response: bytes, scan: Scan, count: int, value: str) -> bytes:
    assert scan.header is not None
    snippet = _request_hash_element(scan.header, value).encode("ascii")
    prefix = scan.header_prefix
    end_tag = re.compile(
        rb"</" + (re.escape(prefix.encode("ascii")) + rb":" if prefix else b"") + rb"Header\s*>"
    )
    match = end_tag.search(response)
    if match is not None:
        spliced = response[: match.start()] + snippet + response[match.start() :]
        if _spliced_ok(spliced, value, count + 1):
            return spliced
    return _insert_with_dom(response, value)


def insert_request_hash(response: bytes, value: str) -> bytes:
    """Return ``response`` with ``xrd:requestHash`` = ``value`` as the last Header child.

    Fast path: splice the element in before ``</prefix:Header>``; the result
    is re-parsed (header only) to prove the splice landed in the Header's
    element content and not in a comment, CDATA or nested element. Otherwise
    (non-ASCII-compatible encodings, odd layouts) rewrite with lxml and
    re-serialise. The provider's bytes are otherwise left exactly as sent.
    """
    scan = scan_envelope(
        response, errors.SERVICE_INVALID_SOAP, errors.SERVICE_INVALID_SOAP, full=False
    )
    if scan.header is None:
        raise XRoadError(errors.SERVICE_MISSING_HEADER, "response header missing")
    count = sum(1 for child in scan.header if isinstance(child.tag, str))
    return _splice_request_hash(response, scan, count, value)


def _replace_with_dom(response: bytes, value: str) -> bytes:
    """The response with its own ``requestHash`` elements removed and ours added."""
    root = parse_xml(response)
    header = root.find(HEADER_TAG)
    if header is None:
        raise XRoadError(errors.SERVICE_MISSING_HEADER, "response header missing")
    for old in header.findall(REQUEST_HASH_TAG):
        header.remove(old)
    return _append_request_hash(root, header, value)


def _insert_with_dom(response: bytes, value: str) -> bytes:
    root = parse_xml(response)
    header = root.find(HEADER_TAG)
    if header is None:
        raise XRoadError(errors.SERVICE_MISSING_HEADER, "response header missing")
    return _append_request_hash(root, header, value)


def _append_request_hash(root: Element, header: Element, value: str) -> bytes:
    elem = etree.SubElement(header, f"{{{XROAD_NS}}}requestHash")
    elem.set("algorithmId", REQUEST_HASH_ALGORITHM)
    elem.text = value
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    out: bytes = etree.tostring(root.getroottree(), xml_declaration=True, encoding=encoding)
    return out


def prepare_soap_response(response: bytes, request: SoapRequest, request_bytes: bytes) -> bytes:
    """Provider node: check a provider system's response and add ``requestHash``.

    Checks the response is a SOAP 1.1 envelope whose header echoes the
    request (client, service, id, userId; issue and policy headers if present)
    and whose body element starts with the service code. Returns the bytes to
    sign and send back: the response with ``xrd:requestHash`` =
    base64(SHA-512(``request_bytes``)). A SOAP Fault is returned unchanged.
    A ``requestHash`` the provider put there itself is kept if it is right and
    replaced otherwise (as X-Road does). Errors are ``Server.ServerProxy.ServiceFailed.*``.
    """
    scan, h, info = _inspect_response(
        response, request, errors.SERVICE_INVALID_SOAP, errors.SERVICE_INCONSISTENT_HEADERS
    )
    if info.is_fault:
        return response
    assert h is not None
    expected = soap_request_hash(request_bytes)
    if h.request_hash is not None:
        if h.request_hash == expected and h.request_hash_algorithm == REQUEST_HASH_ALGORITHM:
            return response
        # X-Road replaces it: a provider that copies a request header, or hashes another
        # form of the request, still works.
        return _replace_with_dom(response, expected)
    return _splice_request_hash(response, scan, h.element_count, expected)


def check_soap_response(
    response: bytes, request: SoapRequest, request_bytes: bytes
) -> SoapResponse:
    """Client node: check the response the provider node sent back.

    Same echo checks as :func:`prepare_soap_response`, and ``requestHash``
    must be present, SHA-512, and equal to the hash of the bytes this node
    received from its client. A SOAP Fault is accepted as it is. Errors are
    ``Server.ClientProxy.InconsistentResponse``.
    """
    _, h, info = _inspect_response(
        response, request, errors.INCONSISTENT_RESPONSE, errors.INCONSISTENT_RESPONSE
    )
    if info.is_fault:
        return info
    assert h is not None
    if h.request_hash is None:
        raise XRoadError(errors.INCONSISTENT_RESPONSE, "response has no requestHash")
    if h.request_hash_algorithm != REQUEST_HASH_ALGORITHM:
        raise XRoadError(
            errors.INCONSISTENT_RESPONSE,
            f"unsupported requestHash algorithm {h.request_hash_algorithm!r}",
        )
    if h.request_hash != soap_request_hash(request_bytes):
        raise XRoadError(
            errors.INCONSISTENT_RESPONSE, "Response message hash does not match request message"
        )
    return info
