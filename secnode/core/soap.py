"""X-Road message protocol v4.0 (SOAP 1.1) as secnode's client interface speaks it.

Existing X-Road client and provider systems must work unchanged, so this
module follows pr-mess v4.0 and X-Road's own checks (``SoapUtils``,
``SoapHeader``) rather than a looser reading of SOAP: protocolVersion must be
"4.0", the body has exactly one child and its name starts with the service
code, a response must echo the request's ``client``, ``service``, ``id`` and
``userId``, and the provider's node inserts ``xrd:requestHash`` (base64
SHA-512 of the request bytes as the client sent them).

Performance: we never canonicalise and never re-serialise a request. The
request bytes travel untouched and are hashed raw. Responses get
``requestHash`` by splicing bytes before ``</...:Header>`` (found with a
header-only pull parse and verified by re-parsing the header); only when
splicing is impossible (e.g. UTF-16) do we fall back to a DOM rewrite.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from lxml import etree

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import (
    ClientId,
    IdentifierError,
    MemberId,
    NodeId,
    ServiceId,
    SubsystemId,
)
from secnode.core.message import (
    MAX_HEADER_VALUE_LENGTH,
    MAX_MESSAGE_ID_LENGTH,
    POLICY_EXTENSIONS,
    MessageError,
    MessageHeaders,
    check_text,
)
from secnode.core.xmlsafe import (
    Element,
    XmlDoctypeError,
    XmlError,
    make_pull_parser,
    parse_xml,
    reject_doctype,
)

SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
XROAD_NS: Final = "http://x-road.eu/xsd/xroad.xsd"
ID_NS: Final = "http://x-road.eu/xsd/identifiers"
# secnode's own SOAP header namespace for the policy context (purpose, legal
# basis, data subject and the extensions of message.POLICY_EXTENSIONS). One
# constant: clients, docs and tests use this name.
POLICY_NS: Final = "https://secnode.example/xsd/policy"
PROTOCOL_VERSION: Final = "4.0"
REQUEST_HASH_ALGORITHM: Final = "http://www.w3.org/2001/04/xmlenc#sha512"
# SOAP metaservices a node answers itself (pr-meta); getWsdl may be refused by the server.
SOAP_METASERVICES: Final = frozenset({"listMethods", "allowedMethods", "getWsdl"})

_ENVELOPE: Final = f"{{{SOAP_ENV_NS}}}Envelope"
_HEADER: Final = f"{{{SOAP_ENV_NS}}}Header"
_BODY: Final = f"{{{SOAP_ENV_NS}}}Body"
_FAULT: Final = f"{{{SOAP_ENV_NS}}}Fault"
_OBJECT_TYPE: Final = f"{{{ID_NS}}}objectType"

_ID_PARTS: Final = {
    "xRoadInstance": "instance",
    "memberClass": "member_class",
    "memberCode": "code",
    "subsystemCode": "subsystem",
    "serviceCode": "service",
    "serviceVersion": "version",
    "serverCode": "server_code",
}
# objectType -> (required parts, optional parts)
_ID_SHAPES: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "MEMBER": (frozenset({"xRoadInstance", "memberClass", "memberCode"}), frozenset()),
    "SUBSYSTEM": (
        frozenset({"xRoadInstance", "memberClass", "memberCode", "subsystemCode"}),
        frozenset(),
    ),
    "SERVICE": (
        frozenset({"xRoadInstance", "memberClass", "memberCode", "subsystemCode", "serviceCode"}),
        frozenset({"serviceVersion"}),
    ),
    "SERVER": (
        frozenset({"xRoadInstance", "memberClass", "memberCode", "serverCode"}),
        frozenset(),
    ),
}

_CHUNK: Final = 64 * 1024
# Below this size a full DOM parse costs less than a pull parse that stops early.
_DOM_THRESHOLD: Final = 16 * 1024


# --------------------------------------------------------------------------
# Content type
# --------------------------------------------------------------------------

def _split_content_type(value: str) -> tuple[str, dict[str, str]]:
    mime, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        key, sep, val = item.partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return mime.strip().lower(), params


def check_content_type(content_type: str | None) -> str | None:
    """Check a SOAP request's ``Content-Type``; return its charset (``None`` = from the XML).

    Only ``text/xml`` is accepted (X-Road ``validateMimeType``). SwA and MTOM
    (``multipart/related``, ``application/xop+xml``) are refused clearly
    until attachments are implemented; SOAP 1.2's ``application/soap+xml`` is
    refused because X-Road v4.0 is SOAP 1.1 only.
    """
    if content_type is None or not content_type.strip():
        raise XRoadError(errors.INVALID_CONTENT_TYPE, "SOAP request has no Content-Type")
    mime, params = _split_content_type(content_type)
    if mime in ("multipart/related", "application/xop+xml") or mime.startswith("multipart/"):
        raise XRoadError(
            errors.INVALID_CONTENT_TYPE,
            f"attachments are not supported yet (Content-Type {mime}); "
            "send a plain text/xml SOAP message",
        )
    if mime == "application/soap+xml":
        raise XRoadError(
            errors.INVALID_CONTENT_TYPE,
            "SOAP 1.2 (application/soap+xml) is not supported; X-Road v4.0 uses SOAP 1.1 text/xml",
        )
    if mime != "text/xml":
        raise XRoadError(errors.INVALID_CONTENT_TYPE, f"invalid content type: {mime}")
    charset = params.get("charset")
    if charset is None:
        return None
    charset = charset.lower()
    return None if charset in ("utf-8", "utf8") else charset


# --------------------------------------------------------------------------
# Request model
# --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SoapRequest:
    """The header fields of an X-Road v4.0 SOAP request, validated.

    ``body_wrapper`` is the local name of the body's (single) child element,
    ``body_wrapper_ns`` its namespace (``None`` if unqualified).
    """

    client: ClientId
    service: ServiceId
    message_id: str
    protocol_version: str
    body_wrapper: str
    body_wrapper_ns: str | None = None
    user_id: str | None = None
    issue: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    data_subject: str | None = None
    security_server: NodeId | None = None
    policy_extensions: tuple[tuple[str, str], ...] = ()
    """(MessageHeaders attribute, value) of the policy extension elements present."""

    @property
    def metaservice(self) -> str | None:
        """``listMethods`` / ``allowedMethods`` / ``getWsdl`` if the node must answer itself."""
        code = self.service.service
        return code if code in SOAP_METASERVICES else None

    def message_headers(self, content_type: str | None) -> MessageHeaders:
        """The canonical model of this request, for the signed digest."""
        return MessageHeaders(
            protocol="soap",
            client=self.client,
            service=self.service,
            message_id=self.message_id,
            user_id=self.user_id,
            issue=self.issue,
            purpose=self.purpose,
            legal_basis=self.legal_basis,
            data_subject=self.data_subject,
            **dict(self.policy_extensions),
            content_type=content_type,
        )


def soap_request_hash(request_bytes: bytes) -> str:
    """``xrd:requestHash`` value: base64(SHA-512(request bytes exactly as received))."""
    return base64.b64encode(hashlib.sha512(request_bytes).digest()).decode("ascii")


# --------------------------------------------------------------------------
# Header field readers
# --------------------------------------------------------------------------

def _is_element(node: Any) -> bool:
    return isinstance(node.tag, str)  # skips comments and processing instructions


def _qname(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


def _text(elem: Element, field: str, code: str = errors.INVALID_HEADER_FIELD) -> str:
    """Text of a simple element, surrounding whitespace removed."""
    if len(elem) == 0:  # fast path: no children at all (lxml counts comments and PIs too)
        text = elem.text
        return "" if text is None else str(text).strip()
    for child in elem:
        if isinstance(child.tag, str):
            raise XRoadError(code, f"header field {field} must contain text only")
    return "".join(elem.itertext()).strip()


# Full lxml tag of each identifier part -> (XML local name, identifiers.py keyword).
_ID_TAGS: Final = {f"{{{ID_NS}}}{local}": (local, kw) for local, kw in _ID_PARTS.items()}


def _read_identifier(elem: Element, field: str, allowed: tuple[str, ...], code: str) -> Any:
    """Build a MemberId / SubsystemId / ServiceId / NodeId from an identifier element."""
    object_type = elem.get(_OBJECT_TYPE)
    if object_type is None:
        raise XRoadError(code, f"{field} has no id:objectType attribute")
    if object_type not in allowed:
        raise XRoadError(
            code, f"{field} objectType must be {' or '.join(allowed)}, not {object_type!r}"
        )
    parts: dict[str, str] = {}
    kwargs: dict[str, str] = {}
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        known = _ID_TAGS.get(tag)
        if known is None:
            raise XRoadError(code, f"{field} has unexpected element {_qname(tag)[1]!r}")
        local, keyword = known
        if local in parts:
            raise XRoadError(code, f"{field} has more than one {local}")
        parts[local] = kwargs[keyword] = _text(child, f"{field}/{local}", code)
    required, optional = _ID_SHAPES[object_type]
    if parts.keys() != required:
        missing = sorted(required - parts.keys())
        if missing:
            raise XRoadError(code, f"{field} ({object_type}) is missing {', '.join(missing)}")
        extra = sorted(parts.keys() - required - optional)
        if extra:
            raise XRoadError(code, f"{field} ({object_type}) must not have {', '.join(extra)}")
    try:
        if object_type == "MEMBER":
            return MemberId(**kwargs)
        if object_type == "SUBSYSTEM":
            return SubsystemId(**kwargs)
        if object_type == "SERVICE":
            return ServiceId(**kwargs)
        return NodeId(**kwargs)
    except IdentifierError as exc:
        raise XRoadError(code, f"{field}: {exc}") from None


@dataclass(slots=True)
class _Header:
    """What one SOAP Header holds, before request/response-specific rules."""

    client: ClientId | None = None
    service: ServiceId | None = None
    message_id: str | None = None
    user_id: str | None = None
    issue: str | None = None
    protocol_version: str | None = None
    request_hash: str | None = None
    request_hash_algorithm: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    data_subject: str | None = None
    security_server: NodeId | None = None
    element_count: int = 0
    extensions: dict[str, str] = field(default_factory=dict)


def _checked(field: str, value: str, max_length: int = MAX_HEADER_VALUE_LENGTH) -> str:
    try:
        return check_text(field, value, max_length)
    except MessageError as exc:
        raise XRoadError(errors.INVALID_HEADER_FIELD, str(exc)) from None


# Header elements we read: full tag -> (field name for messages, _Header attribute).
_X = f"{{{XROAD_NS}}}"
_P = f"{{{POLICY_NS}}}"
_TEXT_TAGS: Final = {
    _X + "id": ("id", "message_id", MAX_MESSAGE_ID_LENGTH),
    _X + "userId": ("userId", "user_id", MAX_HEADER_VALUE_LENGTH),
    _X + "issue": ("issue", "issue", MAX_HEADER_VALUE_LENGTH),
    _X + "protocolVersion": ("protocolVersion", "protocol_version", MAX_HEADER_VALUE_LENGTH),
    _P + "purpose": ("purpose", "purpose", MAX_HEADER_VALUE_LENGTH),
    _P + "legalBasis": ("legalBasis", "legal_basis", MAX_HEADER_VALUE_LENGTH),
    _P + "dataSubject": ("dataSubject", "data_subject", MAX_HEADER_VALUE_LENGTH),
}
# Policy extension elements (agreement, consentId, ...): kept in _Header.extensions.
_EXTENSION_TAGS: Final = {_P + element: (element, attr) for attr, _, element in POLICY_EXTENSIONS}
_CLIENT_TAG: Final = _X + "client"
_SERVICE_TAG: Final = _X + "service"
_SECURITY_SERVER_TAG: Final = _X + "securityServer"
_REQUEST_HASH_TAG: Final = _X + "requestHash"


def _read_header(header: Element) -> _Header:
    """Read X-Road and policy fields from a SOAP Header element.

    Duplicated fields are refused (X-Road ``DuplicateHeaderField``); unknown
    elements in the X-Road namespace and foreign namespaces are ignored (other
    X-Road extensions such as ``representedParty`` pass through untouched);
    unknown elements in *our* policy namespace are refused, because a policy
    field we do not understand must not be silently ignored.
    """
    out = _Header()
    seen: set[str] = set()
    for child in header:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        out.element_count += 1
        text_field = _TEXT_TAGS.get(tag)
        extension = _EXTENSION_TAGS.get(tag)
        if text_field is None and extension is None and tag not in (
            _CLIENT_TAG, _SERVICE_TAG, _SECURITY_SERVER_TAG, _REQUEST_HASH_TAG
        ):
            if tag.startswith(_P):
                raise XRoadError(
                    errors.INVALID_HEADER_FIELD,
                    f"unknown policy header {_qname(tag)[1]!r} ({POLICY_NS})",
                )
            continue  # another extension: not ours to judge
        if tag in seen:
            raise XRoadError(
                errors.DUPLICATE_HEADER_FIELD, f"header field {_qname(tag)[1]} is repeated"
            )
        seen.add(tag)
        if text_field is not None:
            name, attr, max_length = text_field
            setattr(out, attr, _checked(name, _text(child, name), max_length))
        elif extension is not None:
            name, attr = extension
            out.extensions[attr] = _checked(name, _text(child, name))
        elif tag == _CLIENT_TAG:
            out.client = _read_identifier(
                child, "client", ("MEMBER", "SUBSYSTEM"), errors.INVALID_CLIENT_IDENTIFIER
            )
        elif tag == _SERVICE_TAG:
            out.service = _read_identifier(
                child, "service", ("SERVICE",), errors.INVALID_SERVICE_IDENTIFIER
            )
        elif tag == _SECURITY_SERVER_TAG:
            out.security_server = _read_identifier(
                child, "securityServer", ("SERVER",), errors.INVALID_HEADER_FIELD
            )
        else:  # requestHash
            out.request_hash = _text(child, "requestHash")
            out.request_hash_algorithm = child.get("algorithmId")
    return out


def _check_wrapper(wrapper: str, service: ServiceId, code: str) -> None:
    # X-Road SoapUtils.validateServiceName: the body element name *starts with*
    # the service code (so both getRandom and getRandomResponse pass).
    if not wrapper.startswith(service.service):
        raise XRoadError(
            code,
            f"Malformed SOAP message: service code {service.service!r} does not match "
            f"body element {wrapper!r}",
        )


def _request_from_header(h: _Header, wrapper: str, wrapper_ns: str | None) -> SoapRequest:
    if h.protocol_version is None:
        raise XRoadError(errors.MISSING_HEADER_FIELD, "Required field 'protocolVersion' is missing")
    if h.protocol_version != PROTOCOL_VERSION:
        raise XRoadError(
            errors.INVALID_PROTOCOL_VERSION,
            f"Unsupported protocol version {h.protocol_version!r}; expected {PROTOCOL_VERSION!r}",
        )
    if h.client is None:
        raise XRoadError(errors.MISSING_HEADER_FIELD, "Required field 'client' is missing")
    if h.message_id is None:
        raise XRoadError(errors.MISSING_HEADER_FIELD, "Required field 'id' is missing")
    if h.service is None:
        raise XRoadError(errors.MISSING_HEADER_FIELD, "Required field 'service' is missing")
    if h.request_hash is not None:
        raise XRoadError(errors.INVALID_HEADER_FIELD, "a request must not carry requestHash")
    _check_wrapper(wrapper, h.service, errors.INCONSISTENT_HEADERS)
    return SoapRequest(
        client=h.client,
        service=h.service,
        message_id=h.message_id,
        protocol_version=h.protocol_version,
        body_wrapper=wrapper,
        body_wrapper_ns=wrapper_ns,
        user_id=h.user_id,
        issue=h.issue,
        purpose=h.purpose,
        legal_basis=h.legal_basis,
        data_subject=h.data_subject,
        security_server=h.security_server,
        policy_extensions=tuple(sorted(h.extensions.items())),
    )


# --------------------------------------------------------------------------
# Envelope walking: full DOM, or a pull parse that stops early
# --------------------------------------------------------------------------

@dataclass(slots=True)
class _Scan:
    header: Element | None = None
    header_prefix: str | None = None
    body_seen: bool = False
    wrapper: str | None = None
    wrapper_ns: str | None = None
    fault: Element | None = None


def _check_root(tag: str, code: str) -> None:
    if tag == _ENVELOPE:
        return
    ns, local = _qname(tag)
    if ns == SOAP12_ENV_NS:
        raise XRoadError(code, "SOAP 1.2 envelopes are not supported; X-Road v4.0 uses SOAP 1.1")
    raise XRoadError(
        code, f"Malformed SOAP message: root element is {local!r}, not a SOAP 1.1 Envelope"
    )


def _envelope_child(scan: _Scan, elem: Element, code: str) -> None:
    if elem.tag == _HEADER:
        if scan.header is not None or scan.body_seen:
            raise XRoadError(code, "Malformed SOAP message: misplaced or repeated Header")
        scan.header = elem
        scan.header_prefix = elem.prefix
    elif elem.tag == _BODY:
        if scan.body_seen:
            raise XRoadError(code, "Malformed SOAP message: more than one Body")
        scan.body_seen = True
    else:
        _, local = _qname(elem.tag)
        raise XRoadError(code, f"Malformed SOAP message: unexpected element {local!r} in Envelope")


def _one_child_error() -> XRoadError:
    return XRoadError(
        errors.INVALID_BODY, "Malformed SOAP message: body must have exactly one child element"
    )


def _scan_dom(root: Element, code: str, missing_body_code: str) -> _Scan:
    """Walk a fully parsed envelope: optional Header first, then exactly one Body
    with exactly one child element; nothing else."""
    _check_root(root.tag, code)
    scan = _Scan()
    body: Element | None = None
    for child in root:
        if _is_element(child):
            _envelope_child(scan, child, code)
            if child.tag == _BODY:
                body = child
    if body is None:
        raise XRoadError(missing_body_code, "Malformed SOAP message: body missing")
    children = [c for c in body if _is_element(c)]
    if len(children) != 1:
        raise _one_child_error()
    scan.wrapper_ns, scan.wrapper = _qname(children[0].tag)
    if children[0].tag == _FAULT:
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


def _scan(
    data: bytes,
    code: str,
    missing_body_code: str,
    encoding: str | None = None,
    full: bool = True,
    want_fault: bool = False,
    xml_code: str | None = None,
) -> _Scan:
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
) -> _Scan:
    """Parse only as far as the start tag of Body's first child.

    If that child is a SOAP Fault and ``want_fault`` is set, parse on to the
    end of the Fault so its fields can be read. The cost does not grow with
    the body: a 1 MiB message costs what its header costs. What follows is
    not checked here (see ``check_body`` of :func:`parse_soap_request`).
    The caller has already run :func:`reject_doctype`.
    """
    parser = make_pull_parser(encoding=encoding)
    scan = _Scan()
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
                        in_body = elem.tag == _BODY
                    elif depth == 3 and in_body:
                        scan.wrapper_ns, scan.wrapper = _qname(elem.tag)
                        if not (want_fault and elem.tag == _FAULT):
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


# --------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------

def parse_soap_request(
    data: bytes, content_type: str | None = None, *, check_body: bool = True
) -> SoapRequest:
    """Parse and validate an X-Road v4.0 SOAP request as a client system sent it.

    ``content_type`` is the HTTP ``Content-Type``; pass ``None`` only when the
    transport has none to give (it is then not checked, and the XML decides
    the charset). With ``check_body`` (default) the whole message is parsed,
    so malformed XML anywhere, a second Body or a Body with more than one
    child is refused. With ``check_body=False`` only the prolog, Header and the
    body wrapper's start tag are parsed (constant cost for large messages);
    the provider then sees any later malformation itself.

    Raises :class:`XRoadError` with an X-Road ``Client.*`` code on any problem.
    Never resolves entities: a DOCTYPE is refused before parsing.
    """
    charset = check_content_type(content_type) if content_type is not None else None
    if not isinstance(data, bytes):
        raise TypeError("SOAP request must be bytes")
    if not data.strip():
        raise XRoadError(errors.INVALID_SOAP, "Malformed SOAP message: request is empty")
    try:
        scan = _scan(
            data,
            errors.INVALID_SOAP,
            errors.MISSING_BODY,
            encoding=charset,
            full=check_body,
            xml_code=errors.INVALID_XML,
        )
    except XmlError as exc:  # DOCTYPE
        raise XRoadError(errors.INVALID_XML, str(exc)) from None
    except LookupError as exc:  # unknown charset name in Content-Type
        raise XRoadError(errors.INVALID_CONTENT_TYPE, f"unsupported charset: {exc}") from None
    if scan.header is None:
        raise XRoadError(errors.MISSING_HEADER, "Malformed SOAP message: header missing")
    if scan.fault is not None:
        raise XRoadError(errors.INVALID_BODY, "a request must not be a SOAP Fault")
    assert scan.wrapper is not None  # the scanners guarantee a wrapper or raise
    return _request_from_header(_read_header(scan.header), scan.wrapper, scan.wrapper_ns)


# --------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------

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
        if _is_element(child) and _qname(child.tag) == (None, name):
            return "".join(child.itertext()).strip()
    return None


def _check_echo(h: _Header, request: SoapRequest, code: str) -> None:
    """The response must repeat the request's headers (pr-mess §2.2; X-Road
    checks client, service, id and userId). issue and the policy headers are
    compared when the response carries them."""
    if h.protocol_version != PROTOCOL_VERSION:
        raise XRoadError(code, f"response protocolVersion is {h.protocol_version!r}, not 4.0")
    pairs: list[tuple[str, object, object, bool]] = [
        ("client", h.client, request.client, True),
        ("service", h.service, request.service, True),
        ("id", h.message_id, request.message_id, True),
        ("userId", h.user_id, request.user_id, True),
        ("issue", h.issue, request.issue, False),
        ("purpose", h.purpose, request.purpose, False),
        ("legalBasis", h.legal_basis, request.legal_basis, False),
        ("dataSubject", h.data_subject, request.data_subject, False),
        *((element, h.extensions.get(attr), dict(request.policy_extensions).get(attr), False)
          for attr, _, element in POLICY_EXTENSIONS),
    ]
    for name, got, expected, mandatory in pairs:
        if got is None and not mandatory:
            continue
        if got != expected:
            raise XRoadError(code, f"Field '{name}' does not match in request and response")


def _inspect_response(
    response: bytes, request: SoapRequest, invalid_code: str, inconsistent_code: str
) -> tuple[_Scan, _Header | None, SoapResponse]:
    if not isinstance(response, bytes):
        raise TypeError("SOAP response must be bytes")
    if not response.strip():
        raise XRoadError(invalid_code, "Malformed SOAP message: response is empty")
    try:
        scan = _scan(response, invalid_code, invalid_code, full=False, want_fault=True)
    except XmlError as exc:
        raise XRoadError(invalid_code, str(exc)) from None
    if scan.fault is not None:
        return scan, None, SoapResponse(
            is_fault=True,
            fault_code=_fault_field(scan.fault, "faultcode"),
            fault_string=_fault_field(scan.fault, "faultstring"),
        )
    if scan.header is None:
        raise XRoadError(inconsistent_code, "Malformed SOAP message: response header missing")
    try:
        h = _read_header(scan.header)
    except XRoadError as exc:
        raise XRoadError(invalid_code, f"response header: {exc.message}") from None
    _check_echo(h, request, inconsistent_code)
    assert scan.wrapper is not None
    _check_wrapper(scan.wrapper, request.service, invalid_code)
    return scan, h, SoapResponse(
        is_fault=False, body_wrapper=scan.wrapper, request_hash=h.request_hash
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
        scan = _scan(data, errors.SERVICE_INVALID_SOAP, errors.SERVICE_INVALID_SOAP, full=False)
    except (XRoadError, XmlError):
        return False
    if scan.header is None:
        return False
    children = [c for c in scan.header if isinstance(c.tag, str)]
    if len(children) != expected_count:
        return False
    last = children[-1]
    return bool(
        last.tag == _REQUEST_HASH_TAG
        and last.text == value
        and last.get("algorithmId") == REQUEST_HASH_ALGORITHM
        and len(last) == 0
    )


def _splice_request_hash(response: bytes, scan: _Scan, count: int, value: str) -> bytes:
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
    scan = _scan(response, errors.SERVICE_INVALID_SOAP, errors.SERVICE_INVALID_SOAP, full=False)
    if scan.header is None:
        raise XRoadError(errors.SERVICE_MISSING_HEADER, "response header missing")
    count = sum(1 for child in scan.header if isinstance(child.tag, str))
    return _splice_request_hash(response, scan, count, value)


def _insert_with_dom(response: bytes, value: str) -> bytes:
    root = parse_xml(response)
    header = root.find(_HEADER)
    if header is None:
        raise XRoadError(errors.SERVICE_MISSING_HEADER, "response header missing")
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
    refused otherwise. Errors are ``Server.ServerProxy.ServiceFailed.*``.
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
        raise XRoadError(
            errors.SERVICE_INCONSISTENT_HEADERS, "provider response carries a wrong requestHash"
        )
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
