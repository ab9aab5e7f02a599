"""The only way secnode parses XML that came from outside.

XML from a client system, a peer node or a provider system is hostile until
proven otherwise. The classic attacks all live in the document type
declaration: entity expansion ("billion laughs"), external entities that read
local files or make the parser fetch URLs (XXE / SSRF), and external DTDs.
SOAP 1.1 forbids a DOCTYPE in a message outright (§3), so we refuse any
document that has one, before the parser sees it, and configure libxml2 so
that even if one slipped through nothing would be loaded, fetched or
expanded. ``huge_tree=False`` keeps libxml2's own limits on depth and text
size, so a pathological document fails fast instead of eating memory.
"""

from __future__ import annotations

import codecs
import threading
from typing import Any, Final

from lxml import etree

# lxml ships no type information; elements are typed as Any at this boundary.
Element = Any

_BOMS: Final = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
_WHITESPACE: Final = b" \t\r\n"


class XmlError(ValueError):
    """The input is not XML we accept: malformed, or using a forbidden construct."""


class XmlDoctypeError(XmlError):
    """The input has a document type declaration (DTD), which we never process."""


def parser_options() -> dict[str, Any]:
    """The hardened libxml2 settings, shared by the tree and the pull parser."""
    return {
        "resolve_entities": False,  # never substitute entities, internal or external
        "no_network": True,  # never fetch anything over the network
        "load_dtd": False,  # never load an external DTD
        "dtd_validation": False,
        "huge_tree": False,  # keep libxml2's depth / text-size safety limits
        # Do NOT set collect_ids=False: lxml implements it through libxml2's
        # ``loadsubset`` flag, which makes libxml2 open the external DTD subset
        # (``<!DOCTYPE r SYSTEM "file:///etc/passwd">``) despite load_dtd=False.
        # Found by tests/test_soap.py::test_hardened_parser_never_loads_external_entities.
        "strip_cdata": False,  # keep CDATA sections if a document is re-serialised
        "remove_comments": False,
        "remove_pis": False,
    }


def make_parser(encoding: str | None = None) -> Any:
    """Return a new hardened ``lxml.etree.XMLParser``.

    ``encoding`` overrides the document's own declaration; use it only for a
    charset the transport (``Content-Type``) announced.
    """
    return etree.XMLParser(encoding=encoding, **parser_options())


def make_pull_parser(
    events: tuple[str, ...] = ("start", "end"), encoding: str | None = None
) -> Any:
    """Return a new hardened ``lxml.etree.XMLPullParser`` reporting ``events``.

    The caller must run :func:`reject_doctype` on the bytes before feeding them:
    a pull parser stopped early cannot be asked whether the prolog had a DTD.
    """
    return etree.XMLPullParser(events=events, encoding=encoding, **parser_options())


_local = threading.local()


def _default_parser() -> Any:
    # lxml parser objects must not be used by two threads at once; one per thread.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = make_parser()
        _local.parser = parser
    return parser


def _ascii_view(data: bytes) -> bytes:
    """Bytes in which the prolog can be scanned with ASCII patterns.

    UTF-8 (with or without BOM) and every ASCII-compatible charset are scanned
    as they are. UTF-16/32 are transcoded first, so a DOCTYPE cannot hide
    behind a wide encoding.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            if codec == "utf-8":
                return data[len(bom) :]
            return data[len(bom) :].decode(codec, errors="replace").encode("utf-8")
    # Wide encodings without a BOM: '<' followed or preceded by NUL bytes.
    if data[:4] in (b"\x00\x00\x00<", b"<\x00\x00\x00"):
        codec = "utf-32-be" if data[0] == 0 else "utf-32-le"
        return data.decode(codec, errors="replace").encode("utf-8")
    if data[:2] in (b"\x00<", b"<\x00"):
        codec = "utf-16-be" if data[0] == 0 else "utf-16-le"
        return data.decode(codec, errors="replace").encode("utf-8")
    return data


def reject_doctype(data: bytes) -> None:
    """Raise :class:`XmlDoctypeError` if the prolog of ``data`` declares a DTD.

    Only the prolog (before the root element's start tag) can hold a DOCTYPE,
    so the scan skips the XML declaration, processing instructions, comments
    and whitespace and stops at the first other markup. It never looks at the
    body, so ``<!DOCTYPE`` inside a CDATA section of the payload is harmless
    text and is not refused. Any ``<!`` in the prolog that is not a comment is
    refused, whatever its spelling. Cost: proportional to the prolog, not to
    the document.
    """
    view = _ascii_view(data)
    i, n = 0, len(view)
    while i < n:
        if view[i] in _WHITESPACE:
            i += 1
        elif view.startswith(b"<?", i):
            end = view.find(b"?>", i + 2)
            if end < 0:
                return  # unterminated: the parser reports it
            i = end + 2
        elif view.startswith(b"<!--", i):
            end = view.find(b"-->", i + 4)
            if end < 0:
                return
            i = end + 3
        elif view.startswith(b"<!", i):
            raise XmlDoctypeError(
                "document type declarations (DOCTYPE) are not allowed; "
                "entities and DTDs are never processed"
            )
        else:
            return  # the root element (or garbage the parser will refuse)


def parse_xml(data: bytes, encoding: str | None = None) -> Element:
    """Parse ``data`` with the hardened parser and return the root element.

    Refuses, with :class:`XmlError`: non-bytes input, empty input, any DOCTYPE
    (checked before parsing, so no entity is ever declared, let alone
    resolved), and anything libxml2 finds malformed (message included so the
    client can fix its request).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise XmlError("XML input must be bytes")
    data = bytes(data)
    if not data.strip():
        raise XmlError("XML document is empty")
    reject_doctype(data)
    parser = _default_parser() if encoding is None else make_parser(encoding)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"malformed XML: {exc}") from None
    except ValueError as exc:  # e.g. unsupported encoding declaration
        raise XmlError(f"malformed XML: {exc}") from None
    if root is None:
        raise XmlError("XML document has no root element")
    # Belt and braces: the scan above should make this unreachable.
    if root.getroottree().docinfo.internalDTD is not None:
        raise XmlDoctypeError("document type declarations (DOCTYPE) are not allowed")
    return root
