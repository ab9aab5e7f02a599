"""X-Road message protocol v4.0 (SOAP 1.1) as secnode's client interface speaks it.

Existing X-Road client and provider systems must work unchanged, so this
module follows pr-mess v4.0 and X-Road's own checks (``SoapUtils``,
``SoapHeader``) rather than a looser reading of SOAP: protocolVersion must be
"4.x" (any 4.x, as X-Road accepts), empty optional elements mean "not set", the
body has exactly one child and its name starts with the service code, a
response must echo the request's ``client``, ``service``, ``id`` and ``userId``,
and the provider's node inserts ``xrd:requestHash`` (base64 SHA-512 of the
request bytes as the client sent them).

Performance: we never canonicalise and never re-serialise a request. The
request bytes travel untouched and are hashed raw. Responses get
``requestHash`` by splicing bytes before ``</...:Header>`` (found with a
header-only pull parse and verified by re-parsing the header); only when
splicing is impossible (e.g. UTF-16) do we fall back to a DOM rewrite.

This module parses requests. The names are in :mod:`secnode.core.soap_names`,
the header reader in :mod:`secnode.core.soap_header`, the envelope scanner in
:mod:`secnode.core.soap_envelope`, and the response checks and ``requestHash``
splicing in :mod:`secnode.core.soap_response`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import ClientId, NodeId, ServiceId
from secnode.core.message import MessageHeaders
from secnode.core.soap_envelope import check_wrapper, scan_envelope
from secnode.core.soap_header import HeaderFields, read_header
from secnode.core.soap_names import PROTOCOL_VERSION_PATTERN, SOAP_METASERVICES
from secnode.core.xmlsafe import XmlError

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

    Only ``text/xml`` is accepted (X-Road ``validateMimeType``): a SwA or MTOM message
    (``multipart/related``) is taken apart first (:func:`secnode.core.soap_mime.split`)
    and its SOAP part parsed as ``text/xml``; SOAP 1.2's ``application/soap+xml`` is
    refused because X-Road v4.0 is SOAP 1.1 only.
    """
    if content_type is None or not content_type.strip():
        raise XRoadError(errors.INVALID_CONTENT_TYPE, "SOAP request has no Content-Type")
    mime, params = _split_content_type(content_type)
    if mime in ("multipart/related", "application/xop+xml") or mime.startswith("multipart/"):
        raise XRoadError(
            errors.INVALID_CONTENT_TYPE,
            f"a {mime} message must be taken apart before its SOAP part is parsed",
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


def _request_from_header(h: HeaderFields, wrapper: str, wrapper_ns: str | None) -> SoapRequest:
    if h.protocol_version is None:
        raise XRoadError(errors.MISSING_HEADER_FIELD, "Required field 'protocolVersion' is missing")
    if not PROTOCOL_VERSION_PATTERN.fullmatch(h.protocol_version):
        raise XRoadError(
            errors.INVALID_PROTOCOL_VERSION,
            f"Unsupported protocol version {h.protocol_version!r}; expected 4.x",
        )
    if h.client is None:
        raise XRoadError(errors.MISSING_HEADER_FIELD, "Required field 'client' is missing")
    if h.message_id is None:
        raise XRoadError(errors.MISSING_HEADER_FIELD, "Required field 'id' is missing")
    if h.service is None:
        raise XRoadError(errors.MISSING_HEADER_FIELD, "Required field 'service' is missing")
    if h.request_hash is not None:
        raise XRoadError(errors.INVALID_HEADER_FIELD, "a request must not carry requestHash")
    check_wrapper(wrapper, h.service, errors.INCONSISTENT_HEADERS)
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
        scan = scan_envelope(
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
    return _request_from_header(read_header(scan.header), scan.wrapper, scan.wrapper_ns)
