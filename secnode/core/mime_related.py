"""``multipart/related`` messages (SOAP with attachments, MTOM/XOP, getWsdl answers), pure.

X-Road carries attachments as a MIME ``multipart/related`` message (pr-mess §2.4: SwA,
Annex F; MTOM/XOP, Annex G); getWsdl answers in the same form (pr-meta §4). A node never
re-encodes such a message: it finds the parts as byte ranges of the body exactly as
received (:func:`parse`), so the SOAP part can be checked and hashed, and the provider's
response can get its ``requestHash`` spliced into the root part (:func:`replace_root`),
every other byte, boundary and part header left as they came.

Delimiters follow RFC 2046 §5.1.1: a line ``--boundary`` (the line break before it
belongs to the delimiter), the last one ``--boundary--``. CRLF is the rule; bare LF line
ends are accepted too (X-Road's own test queries use them).
"""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass
from typing import Final

from certs.errors import SecnodeError

MULTIPART_RELATED: Final = "multipart/related"
_PARAM: Final = re.compile(r';\s*([A-Za-z0-9_.\-]+)\s*=\s*(?:"([^"]*)"|([^;\s]*))')
#: RFC 2046: 1 to 70 characters; we allow a little more, never an empty one.
MAX_BOUNDARY: Final = 200
MAX_PART_HEADERS: Final = 16 * 1024


class MimeError(SecnodeError):
    """A multipart message that cannot be taken apart (no boundary, no root part, ...)."""


def is_related(content_type: str | None) -> bool:
    return bool(content_type) and str(content_type).split(";", 1)[0].strip().lower() == (
        MULTIPART_RELATED
    )


def params(content_type: str) -> dict[str, str]:
    """The parameters of a ``Content-Type`` value (names lower-case, quotes removed)."""
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(content_type)
    }


def media_type(content_type: str | None) -> str:
    """``type/subtype`` of a ``Content-Type`` value, lower-case (``""`` if none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def content_id(value: str | None) -> str | None:
    """A ``Content-ID`` or ``start`` value without its angle brackets (``None`` if absent)."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value or None


@dataclass(frozen=True, slots=True)
class Part:
    """One part: its headers (lower-case names) and where its content lies in the body."""

    headers: dict[str, str]
    start: int
    end: int

    @property
    def content_id(self) -> str | None:
        return content_id(self.headers.get("content-id"))

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def content(self, body: bytes | bytearray) -> bytes:
        return bytes(body[self.start : self.end])


@dataclass(frozen=True, slots=True)
class Related:
    """A parsed ``multipart/related`` message: its parts in order and which is the root."""

    boundary: str
    parts: tuple[Part, ...]
    root_index: int
    type: str | None
    """The ``type`` parameter (the root's media type: text/xml, application/xop+xml)."""
    start_info: str | None

    @property
    def root(self) -> Part:
        return self.parts[self.root_index]

    @property
    def attachments(self) -> tuple[Part, ...]:
        return tuple(p for i, p in enumerate(self.parts) if i != self.root_index)


def _boundary(content_type: str) -> str:
    value = params(content_type).get("boundary")
    if not value:
        raise MimeError("multipart message has no boundary parameter in its Content-Type")
    if len(value) > MAX_BOUNDARY or any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        raise MimeError("multipart boundary is too long or holds control characters")
    return value


def _delimiters(body: bytes | bytearray, boundary: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_close) of each delimiter line; ``start`` includes the line break
    before it, ``end`` the one after it.

    The first delimiter's line end sets the message's: after a CRLF one, a delimiter
    preceded by a bare LF is content (a strict CRLF parser at the provider system must not
    see other parts than we do)."""
    dash = b"--" + boundary.encode("ascii")
    line = re.compile(rb"(\r?\n)?" + re.escape(dash) + rb"(--)?[ \t]*(\r?\n|$)")
    out: list[tuple[int, int, bool]] = []
    pos, crlf = 0, False
    while True:
        at = body.find(dash, pos)
        if at < 0:
            return out
        lead = 2 if body[at - 2 : at] == b"\r\n" else 1 if body[at - 1 : at] == b"\n" else 0
        match = line.match(body, at - lead)
        at_line_start = (lead == 2 or (lead == 1 and not crlf)) if out else (lead or at == 0)
        if match is not None and at_line_start:
            if not out:
                crlf = match.group(3) == b"\r\n"
            out.append((match.start(), match.end(), match.group(2) is not None))
            if match.group(2) is not None:
                return out
            pos = match.end()
        else:
            pos = at + len(dash)


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    name = ""
    for raw in re.split(rb"\r?\n", block):
        text = raw.decode("latin-1")
        if text[:1] in (" ", "\t") and name:  # a folded header line
            headers[name] += " " + text.strip()
            continue
        key, colon, value = text.partition(":")
        if not colon or not key.strip():
            raise MimeError(f"multipart part has a malformed header line: {text[:80]!r}")
        name = key.strip().lower()
        headers[name] = value.strip()
    return headers


def _part(body: bytes | bytearray, start: int, end: int) -> Part:
    """A part between two delimiters: headers, a blank line, the content."""
    if body[start : start + 2] == b"\r\n":  # no headers at all
        return Part({}, start + 2, end)
    if body[start : start + 1] == b"\n":
        return Part({}, start + 1, end)
    window = bytes(body[start : min(end, start + MAX_PART_HEADERS)])
    match = re.search(rb"\r?\n\r?\n", window)
    if match is None:
        raise MimeError("multipart part has no blank line between its headers and content")
    return Part(_headers(window[: match.start()]), start + match.end(), end)


def parse(body: bytes | bytearray, content_type: str) -> Related:
    """Take a ``multipart/related`` body apart (byte ranges, nothing copied but headers).

    The root part is the one whose ``Content-ID`` the ``start`` parameter names, the first
    part when there is no ``start`` (RFC 2387). Raises :class:`MimeError` when the boundary
    is missing, no part or no closing delimiter is found, two parts share a Content-ID
    (a ``cid:`` reference would be ambiguous), or ``start`` names no part.
    """
    if not is_related(content_type):
        raise MimeError(f"not a multipart/related message: {media_type(content_type)!r}")
    boundary = _boundary(content_type)
    delims = _delimiters(body, boundary)
    if not delims:
        raise MimeError(f"multipart body holds no delimiter for boundary {boundary!r}")
    if not delims[-1][2]:
        raise MimeError("multipart body has no closing delimiter (truncated message?)")
    found = tuple(_part(body, a[1], b[0]) for a, b in itertools.pairwise(delims))
    if not found:
        raise MimeError("multipart message has no parts")
    ids = [part.content_id for part in found if part.content_id is not None]
    if len(ids) != len(set(ids)):
        raise MimeError("two parts of the multipart message have the same Content-ID")
    p = params(content_type)
    start = content_id(p.get("start"))
    root_index = 0
    if start is not None:
        matches = [i for i, part in enumerate(found) if part.content_id == start]
        if not matches:
            raise MimeError(f"start parameter <{start}> names no part of the message")
        root_index = matches[0]
    return Related(boundary, found, root_index, p.get("type"), p.get("start-info"))


def replace_root(body: bytes | bytearray, related: Related, root: bytes) -> bytes:
    """``body`` with the root part's content replaced; everything else byte for byte."""
    part = related.root
    return b"".join((bytes(body[: part.start]), root, bytes(body[part.end :])))


def build(soap_part: bytes, attachment: bytes, attachment_type: str) -> tuple[str, bytes]:
    """(Content-Type, body) of a SOAP message with one attachment (SwA layout)."""
    boundary = "xroad" + uuid.uuid4().hex
    body = b"".join(
        (
            f"--{boundary}\r\n".encode(),
            b"Content-Type: text/xml; charset=UTF-8\r\n",
            b"Content-Transfer-Encoding: 8bit\r\n",
            b"Content-ID: <rootpart@secnode>\r\n\r\n",
            soap_part,
            f"\r\n--{boundary}\r\n".encode(),
            f"Content-Type: {attachment_type}\r\n".encode(),
            b"Content-Transfer-Encoding: 8bit\r\n",
            b"Content-ID: <wsdl@secnode>\r\n\r\n",
            attachment,
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
    ctype = f'multipart/related; type="text/xml"; start="<rootpart@secnode>"; boundary="{boundary}"'
    return ctype, body


def parts(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a ``multipart/related`` body: (headers with lower-case names, content)."""
    related = parse(body, content_type)
    return [(p.headers, p.content(body)) for p in related.parts]


def root_part(body: bytes, content_type: str) -> bytes:
    """The root part's content (the SOAP message)."""
    return parse(body, content_type).root.content(body)
