"""Reading an X-Road SOAP Header: identifiers, text fields and secnode's policy fields.

A request and a response carry the same header fields (pr-mess v4.0 plus
secnode's policy namespace), so one reader turns a Header element into
:class:`HeaderFields`; the request-only and response-only rules (what is
mandatory, what must be echoed) are applied by :mod:`secnode.core.soap` and
:mod:`secnode.core.soap_response`. Kept apart from them because it is the
part that knows X-Road's identifier shapes and the duplicate/unknown-field
rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

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
    check_text,
)
from secnode.core.soap_names import ID_NS, POLICY_NS, XROAD_NS, qname
from secnode.core.xmlsafe import Element

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
    "SERVICE": (  # no subsystemCode: a member's own service (identifiers.xsd: minOccurs 0)
        frozenset({"xRoadInstance", "memberClass", "memberCode", "serviceCode"}),
        frozenset({"subsystemCode", "serviceVersion"}),
    ),
    "SERVER": (
        frozenset({"xRoadInstance", "memberClass", "memberCode", "serverCode"}),
        frozenset(),
    ),
}


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
    if object_type is None:  # required by identifiers.xsd: X-Road's schema check refuses it
        raise XRoadError(errors.INVALID_XML, f"{field} has no id:objectType attribute")
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
            raise XRoadError(code, f"{field} has unexpected element {qname(tag)[1]!r}")
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
            return ServiceId(subsystem=kwargs.pop("subsystem", None), **kwargs)
        return NodeId(**kwargs)
    except IdentifierError as exc:
        raise XRoadError(code, f"{field}: {exc}") from None


@dataclass(slots=True)
class HeaderFields:
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


def _checked(
    field: str, value: str, max_length: int = MAX_HEADER_VALUE_LENGTH, *, lines: bool = False
) -> str:
    try:
        return check_text(field, value, max_length, lines=lines)
    except MessageError as exc:
        raise XRoadError(errors.INVALID_HEADER_FIELD, str(exc)) from None


# Header elements we read: full tag -> (field name for messages, HeaderFields attribute).
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
# Policy extension elements (agreement, consentId, ...): kept in HeaderFields.extensions.
_EXTENSION_TAGS: Final = {_P + element: (element, attr) for attr, _, element in POLICY_EXTENSIONS}
_CLIENT_TAG: Final = _X + "client"
_SERVICE_TAG: Final = _X + "service"
_SECURITY_SERVER_TAG: Final = _X + "securityServer"
REQUEST_HASH_TAG: Final = _X + "requestHash"


def read_header(header: Element) -> HeaderFields:
    """Read X-Road and policy fields from a SOAP Header element.

    An empty text element means the field is not set (so a missing ``id`` is then
    reported as missing). Duplicated fields are refused (X-Road ``DuplicateHeaderField``); unknown
    elements in the X-Road namespace and foreign namespaces are ignored (other
    X-Road extensions such as ``representedParty`` pass through untouched);
    unknown elements in *our* policy namespace are refused, because a policy
    field we do not understand must not be silently ignored.
    """
    out = HeaderFields()
    seen: set[str] = set()
    for child in header:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        out.element_count += 1
        text_field = _TEXT_TAGS.get(tag)
        extension = _EXTENSION_TAGS.get(tag)
        if (
            text_field is None
            and extension is None
            and tag not in (_CLIENT_TAG, _SERVICE_TAG, _SECURITY_SERVER_TAG, REQUEST_HASH_TAG)
        ):
            if tag.startswith(_P):
                raise XRoadError(
                    errors.INVALID_HEADER_FIELD,
                    f"unknown policy header {qname(tag)[1]!r} ({POLICY_NS})",
                )
            continue  # another extension: not ours to judge
        if tag in seen:
            raise XRoadError(
                errors.DUPLICATE_HEADER_FIELD, f"header field {qname(tag)[1]} is repeated"
            )
        seen.add(tag)
        if text_field is not None:
            name, attr, max_length = text_field
            value = _text(child, name)
            if value:  # an empty element (X-Road's own <xroad:issue/>) means "not set"
                setattr(out, attr, _checked(name, value, max_length, lines=name == "issue"))
        elif extension is not None:
            name, attr = extension
            value = _text(child, name)
            if value:
                out.extensions[attr] = _checked(name, value)
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
