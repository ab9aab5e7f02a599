"""X-Road v4.0 SOAP client interface: requests, responses, requestHash, faults, XML safety.

The malformed-request cases follow X-Road's own proxy test-suite names
(MissingHeader, WrongProtocolVersionHeader, MissingObjectTypeMessage,
Utf8BomNormalSubsystem, AttachmentMTOM, ...), see xroad-reference §3.10.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

import pytest
from lxml import etree

from secnode.core import errors, faults, soap, soap_response, xmlsafe
from secnode.core.errors import XRoadError
from secnode.core.identifiers import MemberId, NodeId, ServiceId, SubsystemId
from secnode.core.soap_names import ID_NS, POLICY_NS, SOAP_ENV_NS, XROAD_NS

DATA = Path(__file__).parent / "data" / "xroad"
REQUEST = (DATA / "getRandom-request.xml").read_bytes()
RESPONSE = (DATA / "getRandom-response.xml").read_bytes()
E1 = (DATA / "example-request-e1.xml").read_bytes()
CT = "text/xml; charset=utf-8"
NS = {"s": SOAP_ENV_NS, "xrd": XROAD_NS, "id": ID_NS}


F = TypeVar("F", bound=Callable[..., None])


def both_modes(test: F) -> F:
    """Run a request test with the full parse and with the header-only parse."""
    mark = pytest.mark.parametrize("check_body", [True, False], ids=["full", "header-only"])
    return cast(F, mark(test))


def big(doc: bytes, n: int = 2000) -> bytes:
    """Make a message large enough that header-only mode takes the pull-parser path."""
    return doc.replace(b"<seed>42</seed>", b"<seed>42</seed>" + b"<pad>xxxxxxxxxx</pad>" * n, 1)


def expect(code: str, data: bytes, content_type: str | None = CT, check_body: bool = True) -> str:
    with pytest.raises(XRoadError) as info:
        soap.parse_soap_request(data, content_type, check_body=check_body)
    assert info.value.code == code, info.value
    assert info.value.http_status == 400
    return info.value.message


# --------------------------------------------------------------------------
# The published example shape parses
# --------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["small", "large"])
@both_modes
def test_published_example_request_parses(check_body: bool, size: str) -> None:
    data = REQUEST if size == "small" else big(REQUEST)
    req = soap.parse_soap_request(data, CT, check_body=check_body)
    assert req.client == SubsystemId("EE", "GOV", "MEMBER1", "SUBSYSTEM1")
    assert req.service == ServiceId("EE", "GOV", "MEMBER2", "SUBSYSTEM2", "getRandom", "v1")
    assert req.message_id == "4894e35d-bf0f-44a6-867a-8e51f1daa7e0"
    assert req.user_id == "EE12345678901"
    assert req.issue == "12345"
    assert req.protocol_version == "4.0"
    assert req.body_wrapper == "getRandom"
    assert req.body_wrapper_ns == "http://producer.x-road.eu"
    assert (req.purpose, req.legal_basis, req.data_subject) == (None, None, None)
    assert req.metaservice is None


def test_annex_e1_example_parses() -> None:
    req = soap.parse_soap_request(E1, "text/xml")
    assert str(req.service) == "EE/GOV/MEMBER2/SUBSYSTEM2/exampleService/v1"
    assert req.body_wrapper == "exampleService"


def test_member_client_and_policy_headers_and_security_server() -> None:
    data = REQUEST.replace(
        b'<xrd:client id:objectType="SUBSYSTEM">', b'<xrd:client id:objectType="MEMBER">'
    ).replace(b"<id:subsystemCode>SUBSYSTEM1</id:subsystemCode>", b"")
    policy = (
        f'<p:purpose xmlns:p="{POLICY_NS}">child-allowance</p:purpose>'
        f'<p:legalBasis xmlns:p="{POLICY_NS}">consent</p:legalBasis>'
        f'<p:dataSubject xmlns:p="{POLICY_NS}">JP-123</p:dataSubject>'
        '<xrd:securityServer id:objectType="SERVER"><id:xRoadInstance>EE</id:xRoadInstance>'
        "<id:memberClass>GOV</id:memberClass><id:memberCode>MEMBER2</id:memberCode>"
        "<id:serverCode>ss1</id:serverCode></xrd:securityServer>"
        '<r:representedParty xmlns:r="http://x-road.eu/xsd/representation.xsd">'
        "<r:partyCode>X</r:partyCode></r:representedParty>"
    ).encode()
    data = data.replace(b"</SOAP-ENV:Header>", policy + b"</SOAP-ENV:Header>")
    req = soap.parse_soap_request(data, CT)
    assert req.client == MemberId("EE", "GOV", "MEMBER1")
    assert (req.purpose, req.legal_basis, req.data_subject) == (
        "child-allowance",
        "consent",
        "JP-123",
    )
    assert req.security_server == NodeId("EE", "GOV", "MEMBER2", "ss1")
    mh = req.message_headers(CT)
    assert mh.protocol == "soap" and mh.purpose == "child-allowance" and mh.content_type == CT


def test_wrapper_may_extend_service_code_as_in_xroad() -> None:
    # X-Road's SoapUtils.validateServiceName uses startsWith.
    data = REQUEST.replace(b"ns1:getRandom>", b"ns1:getRandomRequest>")
    assert soap.parse_soap_request(data, CT).body_wrapper == "getRandomRequest"


def test_metaservice_request() -> None:
    data = REQUEST.replace(b"getRandom", b"listMethods")
    assert soap.parse_soap_request(data, CT).metaservice == "listMethods"


@both_modes
def test_utf8_bom_accepted(check_body: bool) -> None:
    req = soap.parse_soap_request(b"\xef\xbb\xbf" + REQUEST, CT, check_body=check_body)
    assert req.user_id == "EE12345678901"
    req = soap.parse_soap_request(b"\xef\xbb\xbf" + big(REQUEST), CT, check_body=check_body)
    assert req.user_id == "EE12345678901"


def test_comments_cdata_and_declared_charset_accepted() -> None:
    data = REQUEST.replace(b"<seed>42</seed>", b"<seed><![CDATA[<!DOCTYPE x> 42]]></seed>")
    data = data.replace(b"<xrd:id>", b"<!-- note --><xrd:id>")
    assert soap.parse_soap_request(data, CT).message_id.startswith("4894e35d")
    latin = REQUEST.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"').replace(
        b"<seed>42</seed>", "<seed>Ä</seed>".encode("latin-1")
    )
    assert soap.parse_soap_request(latin, "text/xml; charset=ISO-8859-1").issue == "12345"


# --------------------------------------------------------------------------
# Malformed requests are refused with X-Road's codes
# --------------------------------------------------------------------------


def _drop(data: bytes, pattern: bytes) -> bytes:
    out, n = re.subn(pattern, b"", data, count=1, flags=re.S)
    assert n == 1, pattern
    return out


@both_modes
def test_missing_header(check_body: bool) -> None:
    data = _drop(REQUEST, rb"<SOAP-ENV:Header>.*</SOAP-ENV:Header>")
    assert "header missing" in expect(errors.MISSING_HEADER, data, check_body=check_body)
    expect(errors.MISSING_HEADER, big(data), check_body=check_body)


@pytest.mark.parametrize(
    ("element", "field"),
    [
        (rb"<xrd:client .*?</xrd:client>", "client"),
        (rb"<xrd:service .*?</xrd:service>", "service"),
        (rb"<xrd:id>.*?</xrd:id>", "id"),
        (rb"<xrd:protocolVersion>.*?</xrd:protocolVersion>", "protocolVersion"),
    ],
)
@both_modes
def test_missing_mandatory_header_field(element: bytes, field: str, check_body: bool) -> None:
    data = _drop(REQUEST, element)
    message = expect(errors.MISSING_HEADER_FIELD, data, check_body=check_body)
    assert f"'{field}'" in message


def test_optional_header_fields_may_be_missing() -> None:
    data = _drop(_drop(REQUEST, rb"<xrd:userId>.*?</xrd:userId>"), rb"<xrd:issue>.*?</xrd:issue>")
    req = soap.parse_soap_request(data, CT)
    assert req.user_id is None and req.issue is None


@both_modes
def test_wrong_protocol_version(check_body: bool) -> None:
    data = REQUEST.replace(b">4.0<", b">3.1<")
    assert "3.1" in expect(errors.INVALID_PROTOCOL_VERSION, data, check_body=check_body)


@both_modes
def test_missing_object_type(check_body: bool) -> None:
    """identifiers.xsd requires objectType: X-Road's schema check answers Client.InvalidXml
    (its MissingObjectTypeMessage case)."""
    data = REQUEST.replace(b' id:objectType="SUBSYSTEM"', b"")
    assert "objectType" in expect(errors.INVALID_XML, data, check_body=check_body)
    data = REQUEST.replace(b' id:objectType="SERVICE"', b"")
    expect(errors.INVALID_XML, data, check_body=check_body)


@both_modes
@pytest.mark.parametrize("version", ["4.1", "4.x", "4.10"])
def test_any_4x_protocol_version_is_accepted(check_body: bool, version: str) -> None:
    data = REQUEST.replace(b">4.0<", f">{version}<".encode())
    assert soap.parse_soap_request(data, CT, check_body=check_body).protocol_version == version


@both_modes
@pytest.mark.parametrize("version", ["5.0", "4.", "40", "4.0 beta"])
def test_protocol_versions_other_than_4x_are_refused(check_body: bool, version: str) -> None:
    data = REQUEST.replace(b">4.0<", f">{version}<".encode())
    expect(errors.INVALID_PROTOCOL_VERSION, data, check_body=check_body)


@both_modes
def test_empty_optional_header_elements_mean_not_set(check_body: bool) -> None:
    """X-Road's own queries send ``<xroad:issue/>``: an empty element is no value."""
    data = REQUEST.replace(b"<xrd:issue>12345</xrd:issue>", b"<xrd:issue/>").replace(
        b"<xrd:userId>EE12345678901</xrd:userId>", b"<xrd:userId>  </xrd:userId>"
    )
    req = soap.parse_soap_request(data, CT, check_body=check_body)
    assert req.issue is None and req.user_id is None
    headers = req.message_headers(CT)
    assert headers.issue is None and headers.user_id is None


@both_modes
def test_empty_id_is_a_missing_field(check_body: bool) -> None:
    data = REQUEST.replace(b"<xrd:id>4894e35d-bf0f-44a6-867a-8e51f1daa7e0</xrd:id>", b"<xrd:id/>")
    assert "'id'" in expect(errors.MISSING_HEADER_FIELD, data, check_body=check_body)


@both_modes
def test_multi_line_issue_is_accepted(check_body: bool) -> None:
    """X-Road's SplitHeader case: the issue text runs over several lines."""
    data = REQUEST.replace(
        b"<xrd:issue>12345</xrd:issue>", b"<xrd:issue>first line\n\tsecond line\r\n</xrd:issue>"
    )
    req = soap.parse_soap_request(data, CT, check_body=check_body)
    assert req.issue == "first line\n\tsecond line"
    assert req.message_headers(CT).issue == req.issue


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        (b'objectType="SUBSYSTEM"', b'objectType="SERVICE"', errors.INVALID_CLIENT_IDENTIFIER),
        (b'objectType="SERVICE"', b'objectType="SUBSYSTEM"', errors.INVALID_SERVICE_IDENTIFIER),
        (b"<id:memberCode>MEMBER1</id:memberCode>", b"", errors.INVALID_CLIENT_IDENTIFIER),
        (b">MEMBER1<", b">MEM/BER1<", errors.INVALID_CLIENT_IDENTIFIER),
        (b">MEMBER2<", b">MEMBER 2<", errors.INVALID_SERVICE_IDENTIFIER),
        (  # a SERVICE without subsystemCode is a member's own (tests/test_member_level.py)
            b"<id:subsystemCode>SUBSYSTEM2</id:subsystemCode>",
            b"<id:serverCode>X</id:serverCode>",
            errors.INVALID_SERVICE_IDENTIFIER,
        ),
        (
            b"<id:memberCode>MEMBER1</id:memberCode>",
            b"<id:memberCode>MEMBER1</id:memberCode><id:memberCode>M</id:memberCode>",
            errors.INVALID_CLIENT_IDENTIFIER,
        ),
        (
            b"<id:memberCode>MEMBER1</id:memberCode>",
            b"<id:memberCode>MEMBER1</id:memberCode><id:serviceCode>x</id:serviceCode>",
            errors.INVALID_CLIENT_IDENTIFIER,
        ),
        (b"<xrd:id>", b"<xrd:id>a</xrd:id><xrd:id>", errors.DUPLICATE_HEADER_FIELD),
        (
            b"<xrd:id>4894e35d-bf0f-44a6-867a-8e51f1daa7e0</xrd:id>",
            b"<xrd:id> </xrd:id>",
            errors.MISSING_HEADER_FIELD,
        ),
        (
            b"<xrd:userId>EE12345678901</xrd:userId>",
            b"<xrd:userId>" + b"x" * 2000 + b"</xrd:userId>",
            errors.INVALID_HEADER_FIELD,
        ),
        (
            b"<xrd:userId>EE12345678901</xrd:userId>",
            b"<xrd:userId>a&#10;b</xrd:userId>",
            errors.INVALID_HEADER_FIELD,
        ),
        (
            b"<xrd:protocolVersion>",
            b"<xrd:requestHash>x</xrd:requestHash><xrd:protocolVersion>",
            errors.INVALID_HEADER_FIELD,
        ),
    ],
    ids=[
        "client-as-service",
        "service-as-subsystem",
        "client-missing-code",
        "client-bad-char",
        "service-bad-char",
        "service-with-server-code",
        "duplicate-id-part",
        "extra-id-part",
        "duplicate-field",
        "blank-id",
        "oversized-userId",
        "control-char",
        "request-carries-requestHash",
    ],
)
def test_malformed_header_fields(old: bytes, new: bytes, code: str) -> None:
    data = REQUEST.replace(old, new, 1)
    assert data != REQUEST
    expect(code, data)


def test_unknown_policy_header_refused_but_foreign_extensions_ignored() -> None:
    unknown = f'<p:spatial xmlns:p="{POLICY_NS}">1</p:spatial>'.encode()
    expect(errors.INVALID_HEADER_FIELD, REQUEST.replace(b"<xrd:id>", unknown + b"<xrd:id>"))
    foreign = b'<z:trace xmlns:z="urn:example:trace">abc</z:trace>'
    assert soap.parse_soap_request(REQUEST.replace(b"<xrd:id>", foreign + b"<xrd:id>"), CT)


def test_policy_extension_elements_are_read_and_signed() -> None:
    """agreement, consentId, dataItems, ... decide the provider's policy outcome: they are
    read into the signed MessageHeaders (a repeat is refused like any header field)."""
    p = f'xmlns:p="{POLICY_NS}"'
    ext = (
        f"<p:consentId {p}>CR-1</p:consentId><p:dataItems {p}>name,address</p:dataItems>"
        f"<p:agreement {p}>DSA-1;v=3</p:agreement>"
        f'<p:evidence {p}>{{"ref":"x"}}</p:evidence><p:recurring {p}>false</p:recurring>'
    ).encode()
    parsed = soap.parse_soap_request(REQUEST.replace(b"<xrd:id>", ext + b"<xrd:id>"), CT)
    headers = parsed.message_headers(CT)
    assert (
        headers.consent_id,
        headers.data_items,
        headers.agreement,
        headers.evidence,
        headers.recurring,
    ) == ("CR-1", "name,address", "DSA-1;v=3", '{"ref":"x"}', "false")
    assert headers.recipient_country is None and headers.data_from is None
    twice = f"<p:consentId {p}>CR-2</p:consentId>".encode()
    expect(errors.DUPLICATE_HEADER_FIELD, REQUEST.replace(b"<xrd:id>", ext + twice + b"<xrd:id>"))


@both_modes
def test_body_wrapper_mismatch(check_body: bool) -> None:
    data = REQUEST.replace(b"ns1:getRandom>", b"ns1:deletePerson>")
    assert "getRandom" in expect(errors.INCONSISTENT_HEADERS, data, check_body=check_body)
    expect(errors.INCONSISTENT_HEADERS, big(data), check_body=check_body)


@both_modes
def test_two_bodies(check_body: bool) -> None:
    data = REQUEST.replace(
        b"</SOAP-ENV:Body>", b"</SOAP-ENV:Body><SOAP-ENV:Body><ns1:getRandom/></SOAP-ENV:Body>"
    )
    assert "more than one Body" in expect(errors.INVALID_SOAP, data, check_body=check_body)


def test_two_bodies_in_a_large_message_found_by_full_check() -> None:
    data = big(REQUEST).replace(
        b"</SOAP-ENV:Body>", b"</SOAP-ENV:Body><SOAP-ENV:Body><ns1:getRandom/></SOAP-ENV:Body>"
    )
    expect(errors.INVALID_SOAP, data, check_body=True)
    # Header-only mode stops at the wrapper by design (documented), so it accepts.
    assert soap.parse_soap_request(data, CT, check_body=False).body_wrapper == "getRandom"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", errors.INVALID_BODY),
        (b"<ns1:getRandom/><ns1:getRandom/>", errors.INVALID_BODY),
    ],
    ids=["empty-body", "two-children"],
)
def test_body_must_have_exactly_one_child(body: bytes, code: str) -> None:
    data = re.sub(
        rb"<SOAP-ENV:Body>.*</SOAP-ENV:Body>",
        b"<SOAP-ENV:Body>" + body + b"</SOAP-ENV:Body>",
        REQUEST,
        flags=re.S,
    )
    expect(code, data)


@both_modes
def test_missing_body(check_body: bool) -> None:
    data = _drop(REQUEST, rb"<SOAP-ENV:Body>.*</SOAP-ENV:Body>")
    expect(errors.MISSING_BODY, data, check_body=check_body)


@pytest.mark.parametrize(
    "data",
    [b"", b"   ", b"not xml at all", b"<a><b></a>", REQUEST[:-40], b"\xff\xfe\x00garbage"],
    ids=["empty", "blank", "text", "mismatched-tags", "truncated", "bad-bytes"],
)
@both_modes
def test_not_xml(data: bytes, check_body: bool) -> None:
    with pytest.raises(XRoadError) as info:
        soap.parse_soap_request(data, CT, check_body=check_body)
    assert info.value.code in (errors.INVALID_XML, errors.INVALID_SOAP)
    assert info.value.http_status == 400


def test_not_an_envelope() -> None:
    expect(errors.INVALID_SOAP, b"<x:Envelope xmlns:x='urn:other'><x:Body/></x:Envelope>")
    soap12 = REQUEST.replace(SOAP_ENV_NS.encode(), b"http://www.w3.org/2003/05/soap-envelope")
    assert "SOAP 1.2" in expect(errors.INVALID_SOAP, soap12)


def test_request_that_is_a_fault_is_refused() -> None:
    data = re.sub(
        rb"<ns1:getRandom>.*</ns1:getRandom>",
        b"<SOAP-ENV:Fault><faultcode>x</faultcode></SOAP-ENV:Fault>",
        REQUEST,
        flags=re.S,
    )
    with pytest.raises(XRoadError):
        soap.parse_soap_request(data, CT)


# --------------------------------------------------------------------------
# Content types: MTOM / SwA are taken apart before the SOAP parser (secnode.core.soap_mime)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/related; type="application/xop+xml"; boundary=jetty771207119h3h10dty',
        "Multipart/Related; boundary=x",
        'application/xop+xml; charset=UTF-8; type="text/xml"',
        "multipart/mixed; boundary=x",
    ],
)
def test_multipart_is_not_parsed_as_a_soap_part(content_type: str) -> None:
    message = expect(errors.INVALID_CONTENT_TYPE, REQUEST, content_type)
    assert "must be taken apart before its SOAP part is parsed" in message


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/soap+xml", "", "text/plain"]
)
def test_other_content_types_refused(content_type: str) -> None:
    expect(errors.INVALID_CONTENT_TYPE, REQUEST, content_type)


def test_unknown_charset_refused() -> None:
    expect(errors.INVALID_CONTENT_TYPE, REQUEST, "text/xml; charset=no-such-charset")


# --------------------------------------------------------------------------
# XML safety: DOCTYPE refused before anything is resolved
# --------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
"""


def _with_doctype(doctype: bytes, entity_use: bytes) -> bytes:
    body = REQUEST.split(b"?>", 1)[1]
    body = body.replace(b"<seed>42</seed>", b"<seed>" + entity_use + b"</seed>")
    return doctype + body


@both_modes
def test_billion_laughs_refused(check_body: bool) -> None:
    data = _with_doctype(BILLION_LAUGHS, b"&lol9;")
    assert "DOCTYPE" in expect(errors.INVALID_XML, data, check_body=check_body)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT")
    return path


@both_modes
def test_external_entity_refused_and_file_not_read(secret_file: Path, check_body: bool) -> None:
    doctype = f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret_file}">]>'
    data = _with_doctype(doctype.encode(), b"&x;")
    message = expect(errors.INVALID_XML, data, check_body=check_body)
    assert "DOCTYPE" in message and "TOP-SECRET" not in message


@pytest.mark.parametrize("kind", ["tree", "pull"])
def test_hardened_parser_never_loads_external_entities(secret_file: Path, kind: str) -> None:
    """Even with the DOCTYPE check bypassed, the parsers load nothing: a resolver
    registered on them is never asked (libxml2 asks it before opening any file or
    URL: an external DTD subset or an external entity), and the file's content is
    not in the tree. This caught lxml's collect_ids=False silently enabling
    external-subset loading."""
    asked: list[str] = []

    class Recorder(etree.Resolver):  # type: ignore[misc]
        def resolve(self, url, pubid, context):  # type: ignore[no-untyped-def]
            asked.append(url)
            return self.resolve_string("INJECTED", context)

    doctype = (
        f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "file://{secret_file}" '
        f'[<!ENTITY x SYSTEM "file://{secret_file}"><!ENTITY y "&x;&x;">]>'
    )
    data = doctype.encode() + b"<r>&x;&y;</r>"
    parser = xmlsafe.make_parser() if kind == "tree" else xmlsafe.make_pull_parser()
    parser.resolvers.add(Recorder())
    # Deliberately skipping reject_doctype.
    if kind == "tree":
        root = etree.fromstring(data, parser)
    else:
        parser.feed(data)
        root = parser.close()
    text = etree.tostring(root)
    assert asked == []
    assert b"TOP-SECRET" not in text and b"INJECTED" not in text
    with pytest.raises(xmlsafe.XmlDoctypeError):
        xmlsafe.parse_xml(data)


@pytest.mark.parametrize(
    "data",
    [
        b"<!DOCTYPE r><r/>",
        b"\xef\xbb\xbf<!-- c --><?pi x?>\n<!doctype r><r/>",
        b'<?xml version="1.0"?><!ENTITY x "y"><r/>',
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r><r/>'.encode("utf-16"),
        "<!DOCTYPE r><r/>".encode("utf-16-be"),
    ],
    ids=["plain", "after-bom-comment-pi", "bare-entity", "utf16-bom", "utf16-no-bom"],
)
def test_doctype_scan_catches_every_spelling(data: bytes) -> None:
    with pytest.raises(xmlsafe.XmlDoctypeError):
        xmlsafe.parse_xml(data)


def test_doctype_text_inside_body_is_not_a_doctype() -> None:
    root = xmlsafe.parse_xml(b"<r><![CDATA[<!DOCTYPE x>]]><!-- <!DOCTYPE y> --></r>")
    assert root.text == "<!DOCTYPE x>"


def test_parse_xml_rejects_non_bytes_and_empty() -> None:
    with pytest.raises(xmlsafe.XmlError):
        xmlsafe.parse_xml("<r/>")  # type: ignore[arg-type]
    with pytest.raises(xmlsafe.XmlError):
        xmlsafe.parse_xml(b"  \n")


def test_deep_nesting_refused_without_huge_tree() -> None:
    data = b"<a>" * 300 + b"</a>" * 300
    with pytest.raises(xmlsafe.XmlError):
        xmlsafe.parse_xml(data)


# --------------------------------------------------------------------------
# Responses: echo check, requestHash inserted and verified
# --------------------------------------------------------------------------


def _hash_of(data: bytes) -> str:
    return base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.mark.parametrize("size", ["small", "large"])
def test_request_hash_inserted_into_response(size: str) -> None:
    request = REQUEST if size == "small" else big(REQUEST)
    response = RESPONSE if size == "small" else big(RESPONSE, 3000)
    req = soap.parse_soap_request(request, CT)
    out = soap_response.prepare_soap_response(response, req, request)
    root = etree.fromstring(out)
    header = root.find("s:Header", NS)
    hashes = header.findall("xrd:requestHash", NS)
    assert len(hashes) == 1
    assert hashes[0].text == _hash_of(request)
    assert hashes[0].get("algorithmId") == "http://www.w3.org/2001/04/xmlenc#sha512"
    assert len(base64.b64decode(hashes[0].text)) == 64
    # The provider's bytes are otherwise untouched: removing the element gives them back.
    snippet = etree.tostring(hashes[0]).split(b" xmlns")[0]
    start = out.index(snippet.split(b">")[0])
    end = out.index(b"</xrd:requestHash>") + len(b"</xrd:requestHash>")
    assert out[:start] + out[end:] == response
    # ...and the client node accepts it.
    info = soap_response.check_soap_response(out, req, request)
    assert not info.is_fault and info.request_hash == _hash_of(request)
    assert info.body_wrapper == "getRandomResponse"


def test_request_hash_is_over_exact_received_bytes() -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    assert soap.soap_request_hash(REQUEST) == _hash_of(REQUEST)
    # Same XML infoset, different bytes: a different hash (no canonicalisation).
    assert soap.soap_request_hash(REQUEST.replace(b"\n", b"\r\n")) != _hash_of(REQUEST)
    out = soap_response.prepare_soap_response(RESPONSE, req, REQUEST)
    with pytest.raises(XRoadError) as info:
        soap_response.check_soap_response(out, req, REQUEST + b" ")
    assert info.value.code == errors.INCONSISTENT_RESPONSE


def test_splice_avoids_decoy_header_end_tag_in_comment() -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    decoy = RESPONSE.replace(b"<xrd:id>", b"<!-- </SOAP-ENV:Header> --><xrd:id>")
    out = soap_response.prepare_soap_response(decoy, req, REQUEST)
    header = etree.fromstring(out).find("s:Header", NS)
    assert header.find("xrd:requestHash", NS).text == _hash_of(REQUEST)
    assert b"<!-- </SOAP-ENV:Header> -->" in out


def test_insert_with_default_namespace_and_without_xroad_prefix() -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    response = (
        f'<Envelope xmlns="{SOAP_ENV_NS}"><Header>'
        f'<client xmlns="{XROAD_NS}" xmlns:i="{ID_NS}" i:objectType="SUBSYSTEM">'
        "<i:xRoadInstance>EE</i:xRoadInstance><i:memberClass>GOV</i:memberClass>"
        "<i:memberCode>MEMBER1</i:memberCode><i:subsystemCode>SUBSYSTEM1</i:subsystemCode>"
        f'</client><service xmlns="{XROAD_NS}" xmlns:i="{ID_NS}" '
        'i:objectType="SERVICE"><i:xRoadInstance>EE</i:xRoadInstance>'
        "<i:memberClass>GOV</i:memberClass><i:memberCode>MEMBER2</i:memberCode>"
        "<i:subsystemCode>SUBSYSTEM2</i:subsystemCode><i:serviceCode>getRandom</i:serviceCode>"
        f'<i:serviceVersion>v1</i:serviceVersion></service><id xmlns="{XROAD_NS}">'
        f'4894e35d-bf0f-44a6-867a-8e51f1daa7e0</id><userId xmlns="{XROAD_NS}">'
        f'EE12345678901</userId><protocolVersion xmlns="{XROAD_NS}">4.0</protocolVersion>'
        '</Header><Body><getRandomResponse xmlns="urn:x"/></Body></Envelope>'
    ).encode()
    out = soap_response.prepare_soap_response(response, req, REQUEST)
    assert soap_response.check_soap_response(out, req, REQUEST).request_hash == _hash_of(REQUEST)


def test_utf16_response_falls_back_to_dom_rewrite() -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    response = RESPONSE.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    out = soap_response.prepare_soap_response(response, req, REQUEST)
    header = etree.fromstring(out).find("s:Header", NS)
    assert header.find("xrd:requestHash", NS).text == _hash_of(REQUEST)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (b">SUBSYSTEM1<", b">OTHER<", "client"),
        (b">getRandom</id:serviceCode>", b">getRandom2</id:serviceCode>", "service"),
        (b">4894e35d-", b">5894e35d-", "id"),
        (b">EE12345678901<", b">EE00000000000<", "userId"),
        (b"<xrd:issue>12345</xrd:issue>", b"<xrd:issue>999</xrd:issue>", "issue"),
    ],
)
def test_response_must_echo_request_headers(old: bytes, new: bytes, field: str) -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    bad = RESPONSE.replace(old, new, 1)
    with pytest.raises(XRoadError) as info:
        soap_response.prepare_soap_response(bad, req, REQUEST)
    assert info.value.code == errors.SERVICE_INCONSISTENT_HEADERS
    assert f"'{field}'" in info.value.message
    assert info.value.http_status == 500
    with pytest.raises(XRoadError) as info:
        soap_response.check_soap_response(bad, req, REQUEST)
    assert info.value.code == errors.INCONSISTENT_RESPONSE


def test_response_without_userid_when_request_had_one_is_inconsistent() -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    bad = _drop(RESPONSE, rb"<xrd:userId>.*?</xrd:userId>")
    with pytest.raises(XRoadError):
        soap_response.prepare_soap_response(bad, req, REQUEST)


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (b"not xml", errors.SERVICE_INVALID_SOAP),
        (b"<html><body>502</body></html>", errors.SERVICE_INVALID_SOAP),
        (
            _drop(RESPONSE, rb"<SOAP-ENV:Header>.*</SOAP-ENV:Header>"),
            errors.SERVICE_INCONSISTENT_HEADERS,
        ),
        (RESPONSE.replace(b"getRandomResponse>", b"otherResponse>"), errors.SERVICE_INVALID_SOAP),
        (
            _with_doctype(BILLION_LAUGHS, b"&lol9;").replace(
                b"ns1:getRandom>", b"ns1:getRandomResponse>"
            ),
            errors.SERVICE_INVALID_SOAP,
        ),
    ],
    ids=["not-xml", "html", "no-header", "wrong-wrapper", "doctype"],
)
def test_bad_provider_responses(response: bytes, code: str) -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    with pytest.raises(XRoadError) as info:
        soap_response.prepare_soap_response(response, req, REQUEST)
    assert info.value.code == code


def test_provider_supplied_request_hash() -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    right = soap_response.insert_request_hash(RESPONSE, _hash_of(REQUEST))
    assert soap_response.prepare_soap_response(right, req, REQUEST) == right
    wrong = soap_response.insert_request_hash(RESPONSE, _hash_of(b"other"))
    # X-Road replaces a provider's own requestHash; the client node then accepts it.
    fixed = soap_response.prepare_soap_response(wrong, req, REQUEST)
    hashes = etree.fromstring(fixed).findall("s:Header/xrd:requestHash", NS)
    assert [h.text for h in hashes] == [_hash_of(REQUEST)]
    assert soap_response.check_soap_response(fixed, req, REQUEST).request_hash == _hash_of(REQUEST)


def test_client_node_requires_request_hash() -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    with pytest.raises(XRoadError) as info:
        soap_response.check_soap_response(RESPONSE, req, REQUEST)
    assert "no requestHash" in info.value.message


def test_provider_fault_passes_unchanged() -> None:
    req = soap.parse_soap_request(REQUEST, CT)
    fault = faults.build_fault("Server.Provider.Broken", "database down", "abc")
    assert soap_response.prepare_soap_response(fault, req, REQUEST) == fault
    info = soap_response.check_soap_response(fault, req, REQUEST)
    assert info.is_fault
    assert (info.fault_code, info.fault_string) == ("Server.Provider.Broken", "database down")


# --------------------------------------------------------------------------
# Faults and the error renderer
# --------------------------------------------------------------------------


def test_build_fault_layout() -> None:
    xml = faults.build_fault("Client.BadRequest", 'a <b> & "c" \x01', "f31e7451")
    root = etree.fromstring(xml)
    fault = root.find("s:Body/s:Fault", NS)
    assert fault.findtext("faultcode") == "Client.BadRequest"
    assert fault.findtext("faultstring") == 'a <b> & "c" \ufffd'
    assert fault.find("detail/faultDetail").text == "f31e7451"
    assert fault.find("detail/faultDetail").tag == "faultDetail"  # unqualified, as X-Road
    assert fault.find("faultactor") is None
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    with_actor = etree.fromstring(faults.build_fault("Client.X", "m", None, "urn:actor"))
    assert with_actor.find("s:Body/s:Fault/faultactor", NS).text == "urn:actor"
    assert with_actor.find("s:Body/s:Fault/detail", NS) is None


def test_xroad_error_soap_rendering_uses_http_200() -> None:
    err = XRoadError(errors.ACCESS_DENIED, "not allowed", detail="d-1")
    status, headers, body = faults.soap_response(err)
    assert status == 200 == errors.SOAP_FAULT_HTTP_STATUS
    assert headers["Content-Type"].startswith("text/xml")
    fault = etree.fromstring(body).find("s:Body/s:Fault", NS)
    assert fault.findtext("faultcode") == "Server.ServerProxy.AccessDenied"
    assert fault.findtext("detail/faultDetail") == "d-1"


def test_soap_request_errors_render_as_faults() -> None:
    with pytest.raises(XRoadError) as info:
        soap.parse_soap_request(b"<bad", CT)
    fault = etree.fromstring(faults.soap_body(info.value)).find("s:Body/s:Fault", NS)
    assert fault.findtext("faultcode") == "Client.InvalidXml"
    assert len(fault.findtext("detail/faultDetail")) == 36  # a UUID for the logs
