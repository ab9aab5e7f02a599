"""Walking a SOAP 1.1 envelope: a full DOM parse, or a pull parse that stops early.

Both requests and responses are scanned the same way (one Header at most,
then exactly one Body with exactly one child), and the pull parse is what
keeps a large message's cost at the cost of its header; that machinery is
its own module so the request and response rules read without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from lxml import etree

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import ServiceId
from secnode.core.soap_names import (
    BODY_TAG,
    ENVELOPE_TAG,
    FAULT_TAG,
    HEADER_TAG,
    SOAP12_ENV_NS,
    is_element,
    qname,
)
from secnode.core.xmlsafe import (
    Element,
    XmlDoctypeError,
    XmlError,
    make_pull_parser,
    parse_xml,
    reject_doctype,
)

_CHUNK: Final = 64 * 1024
# Below this size a full DOM parse costs less than a pull parse that stops early.
_DOM_THRESHOLD: Final = 16 * 1024


def check_wrapper(wrapper: str, service: ServiceId, code: str) -> None:
    # X-Road SoapUtils.validateServiceName: the body element name *starts with*
    # the service code (so both getRandom and getRandomResponse pass).
    if not wrapper.startswith(service.service):
        raise XRoadError(
            code,
            f"Malformed SOAP message: service code {service.service!r} does not match "
            f"body element {wrapper!r}",
        )


@dataclass(slots=True)
class Scan:
    header: Element | None = None
    header_prefix: str | None = None
    body_seen: bool = False
    wrapper: str | None = None
    wrapper_ns: str | None = None
    fault: Element | None = None


def _check_root(tag: str, code: str) -> None:
    if tag == ENVELOPE_TAG:
        return
    ns, local = qname(tag)
    if ns == SOAP12_ENV_NS:
        raise XRoadError(code, "SOAP 1.2 envelopes are not supported; X-Road v4.0 uses SOAP 1.1")
    raise XRoadError(
        code, f"Malformed SOAP message: root element is {local!r}, not a SOAP 1.1 Envelope"
    )


def _envelope_child(scan: Scan, elem: Element, code: str) -> None:
    if elem.tag == HEADER_TAG:
        if scan.header is not None or scan.body_seen:
            raise XRoadError(code, "Malformed SOAP message: misplaced or repeated Header")
        scan.header = elem
        scan.header_prefix = elem.prefix
    elif elem.tag == BODY_TAG:
        if scan.body_seen:
            raise XRoadError(code, "Malformed SOAP message: more than one Body")
        scan.body_seen = True
    else:
        _, local = qname(elem.tag)
        raise XRoadError(code, f"Malformed SOAP message: unexpected element {local!r} in Envelope")


def _one_child_error() -> XRoadError:
    return XRoadError(
        errors.INVALID_BODY, "Malformed SOAP message: body must have exactly one child element"
    )


def _scan_dom(root: Element, code: str, missing_body_code: str) -> Scan:
    """Walk a fully parsed envelope: optional Header first, then exactly one Body
    with exactly one child element; nothing else."""
    _check_root(root.tag, code)
    scan = Scan()
    body: Element | None = None
    for child in root:
        if is_element(child):
            _envelope_child(scan, child, code)
            if child.tag == BODY_TAG:
                body = child
    if body is None:
        raise XRoadError(missing_body_code, "Malformed SOAP message: body missing")
    children = [c for c in body if is_element(c)]
    if len(children) != 1:
        raise _one_child_error()
    scan.wrapper_ns, scan.wrapper = qname(children[0].tag)
    if children[0].tag == FAULT_TAG:
        scan.fault = children[0]
    return scan


def _chunks(data: bytes) -> Iterator[bytes]:
    """Feed sizes that start small (a typical header fits in the first 2 KiB)
    and grow, so stopping early wastes little parsing of the body."""
    start, size = 0, 2048
    while start < len(data):
        yield data[start : start + size]
        start += size
        size = min(size * 2, _CHUNK)


def scan_envelope(
    data: bytes,
    code: str,
    missing_body_code: str,
    encoding: str | None = None,
    full: bool = True,
    want_fault: bool = False,
    xml_code: str | None = None,
) -> Scan:
    """Scan an envelope: full DOM parse if ``full`` or the message is small
    (cheaper than a pull parse below ~16 KiB, and checks more), else a pull
    parse that stops at the body wrapper. Raises XmlError for DTDs."""
    if full or len(data) <= _DOM_THRESHOLD:
        try:
            root = parse_xml(data, encoding=encoding)
        except XmlDoctypeError:
            raise
        except XmlError as exc:
            raise XRoadError(xml_code or code, str(exc)) from None
        return _scan_dom(root, code, missing_body_code)
    reject_doctype(data)
    return _scan_pull(
        data, code, missing_body_code, encoding=encoding, want_fault=want_fault, xml_code=xml_code
    )


def _scan_pull(
    data: bytes,
    code: str,
    missing_body_code: str,
    encoding: str | None = None,
    want_fault: bool = False,
    xml_code: str | None = None,
) -> Scan:
    """Parse only as far as the start tag of Body's first child.

    If that child is a SOAP Fault and ``want_fault`` is set, parse on to the
    end of the Fault so its fields can be read. The cost does not grow with
    the body: a 1 MiB message costs what its header costs. What follows is
    not checked here (see ``check_body`` of :func:`parse_soap_request`).
    The caller has already run :func:`reject_doctype`.
    """
    parser = make_pull_parser(encoding=encoding)
    scan = Scan()
    depth = 0
    in_body = False
    try:
        for chunk in _chunks(data):
            parser.feed(chunk)
            for event, elem in parser.read_events():
                if event == "start":
                    depth += 1
                    if depth == 1:
                        _check_root(elem.tag, code)
                    elif depth == 2:
                        _envelope_child(scan, elem, code)
                        in_body = elem.tag == BODY_TAG
                    elif depth == 3 and in_body:
                        scan.wrapper_ns, scan.wrapper = qname(elem.tag)
                        if not (want_fault and elem.tag == FAULT_TAG):
                            return scan
                        scan.fault = elem
                    continue
                # "end" of the element at the current depth
                if depth == 3 and scan.fault is not None:
                    return scan
                if depth == 2 and in_body:
                    raise _one_child_error()  # Body ended without a child element
                depth -= 1
        parser.close()
    except etree.XMLSyntaxError as exc:
        raise XRoadError(xml_code or code, f"malformed XML: {exc}") from None
    if not scan.body_seen:
        raise XRoadError(missing_body_code, "Malformed SOAP message: body missing")
    raise _one_child_error()
