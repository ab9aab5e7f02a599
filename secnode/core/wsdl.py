"""Checking a SOAP service's WSDL before the node stores it for ``getWsdl`` (pure).

The node answers X-Road's ``getWsdl`` metaservice (pr-meta §4) with the WSDL the
operator stored, so it is checked once, when stored: well-formed XML without a
DTD, a WSDL 1.1 ``definitions`` document, an operation named like the service
code (X-Road lists a WSDL's operations as its services), and every inline XML
schema compiles with lxml, X-Road's own schemas (bundled in ``xroad_xsd/``)
standing in for its imports, so nothing is ever fetched from the network.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Final

from lxml import etree

from certs.errors import SecnodeError
from secnode.core.xmlsafe import XmlError, make_parser, parse_xml

WSDL_NS: Final = "http://schemas.xmlsoap.org/wsdl/"
XSD_NS: Final = "http://www.w3.org/2001/XMLSchema"
XSD_DIR: Final = Path(__file__).parent / "xroad_xsd"
#: Namespace -> bundled schema, for imports that name no location we know.
_BY_NAMESPACE: Final = {
    "http://x-road.eu/xsd/xroad.xsd": "xroad.xsd",
    "http://x-road.eu/xsd/identifiers": "identifiers.xsd",
    "http://www.w3.org/XML/1998/namespace": "xml.xsd",
    "http://ws-i.org/profiles/basic/1.1/xsd": "swaref.xsd",
    "http://www.w3.org/2005/05/xmlmime": "xmlmime.xsd",
}
_EMPTY_SCHEMA: Final = f'<xs:schema xmlns:xs="{XSD_NS}"/>'


class WsdlError(SecnodeError):
    """A document that cannot be stored as a service's WSDL; the message says why."""


class _Bundled(etree.Resolver):  # type: ignore[misc]  # lxml's resolver base is untyped
    """Schema locations resolve to X-Road's bundled schemas, anything else to nothing."""

    def resolve(self, url: str | None, _pubid: str | None, context: Any) -> Any:
        name = (url or "").rsplit("/", 1)[-1]
        if name and (XSD_DIR / name).is_file() and name.endswith(".xsd"):
            return self.resolve_filename(str(XSD_DIR / name), context)
        return self.resolve_string(_EMPTY_SCHEMA, context)


def _schema_parser() -> Any:
    parser = make_parser()
    parser.resolvers.add(_Bundled())
    return parser


def _compile(schema: Any) -> None:
    """Compile one inline ``xs:schema`` (with the namespaces in scope where it stood)."""
    alone = etree.Element(schema.tag, nsmap=dict(schema.nsmap))
    for name, value in schema.attrib.items():
        alone.set(name, value)
    alone.text = schema.text
    for child in schema:
        alone.append(_with_location(child))
    doc = etree.fromstring(etree.tostring(alone), _schema_parser(), base_url=str(XSD_DIR) + "/")
    try:
        etree.XMLSchema(doc)
    except etree.XMLSchemaParseError as exc:
        raise WsdlError(f"the WSDL's XML schema does not compile: {exc}") from None


def _with_location(child: Any) -> Any:
    """An ``xs:import`` without a known location gets the bundled schema of its namespace."""
    out = copy.deepcopy(child)
    if out.tag == f"{{{XSD_NS}}}import":
        bundled = _BY_NAMESPACE.get(out.get("namespace", ""))
        if bundled is not None:
            out.set("schemaLocation", bundled)
    return out


def check_wsdl(data: bytes, service_code: str) -> str:
    """The WSDL as text (UTF-8), if it can serve ``getWsdl`` for ``service_code``."""
    try:
        root = parse_xml(data)
    except XmlError as exc:
        raise WsdlError(f"the WSDL is not acceptable XML: {exc}") from None
    if root.tag != f"{{{WSDL_NS}}}definitions":
        raise WsdlError("the document is not a WSDL 1.1 description (no wsdl:definitions)")
    operations = {
        op.get("name") for op in root.iterfind(f"{{{WSDL_NS}}}portType/{{{WSDL_NS}}}operation")
    }
    if service_code not in operations:
        listed = ", ".join(sorted(o for o in operations if o)) or "none"
        raise WsdlError(f"the WSDL has no operation {service_code!r} (it has: {listed})")
    for schema in root.iterfind(f"{{{WSDL_NS}}}types/{{{XSD_NS}}}schema"):
        _compile(schema)
    encoding = (root.getroottree().docinfo.encoding or "utf-8").lower()
    if encoding not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise WsdlError(f"store the WSDL as UTF-8 (it is {encoding})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WsdlError(f"the WSDL is not UTF-8: {exc}") from None
