"""X-Road's published artefacts (``../shared/xroad``) and one lxml schema built from them."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XRD = "http://x-road.eu/xsd/xroad.xsd"


def artefacts() -> Path:
    """``shared/xroad`` next to the repository (or next to a parent, for a worktree)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "xroad"
        if (candidate / "MANIFEST.json").is_file():
            return candidate
    raise AssertionError("X-Road's artefacts (shared/xroad/) are not beside the repository")


def soap_schema(tmp: Path, xsd: Path) -> etree.XMLSchema:
    """SOAP 1.1 envelope + X-Road's header and metaservice elements, one lxml schema.

    The envelope's Header and Body hold ``xs:any processContents="lax"``: every element
    with a declaration (all of X-Road's header fields, listMethodsResponse, ...) is
    validated, others (a service's own body) pass.
    """
    xroad_all = tmp / "xroad-all.xsd"
    xroad_all.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        f'targetNamespace="{XRD}" elementFormDefault="qualified">'
        f'<xs:include schemaLocation="{(xsd / "xroad.xsd").as_uri()}"/>'
        f'<xs:include schemaLocation="{(xsd / "service-metainfo.xsd").as_uri()}"/>'
        "</xs:schema>"
    )
    top = tmp / "all.xsd"
    top.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        f'<xs:import namespace="{SOAP_NS}" '
        f'schemaLocation="{(xsd / "soap-envelope.xsd").as_uri()}"/>'
        f'<xs:import namespace="{XRD}" schemaLocation="{xroad_all.as_uri()}"/>'
        "</xs:schema>"
    )
    return etree.XMLSchema(etree.parse(str(top)))
