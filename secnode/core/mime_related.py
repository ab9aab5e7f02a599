"""``multipart/related`` messages as X-Road's getWsdl answers them (pr-meta §4), pure.

The answer is the SOAP response (root part, ``text/xml``) followed by the WSDL
document. Only what the metaservice needs: build one, and find the root part of
one so the client node can check the SOAP response's ``requestHash`` inside it.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from certs.errors import SecnodeError

MULTIPART_RELATED: Final = "multipart/related"
_BOUNDARY: Final = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


class MimeError(SecnodeError):
    """A multipart message without a usable boundary or root part."""


def is_related(content_type: str | None) -> bool:
    return bool(content_type) and str(content_type).split(";", 1)[0].strip().lower() == (
        MULTIPART_RELATED
    )


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
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise MimeError("multipart message has no boundary")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("ascii", "replace")
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise MimeError("multipart message has no parts")
    out: list[tuple[dict[str, str], bytes]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise MimeError("multipart part has no header/body separator")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        out.append((headers, content[:-2] if content.endswith(b"\r\n") else content))
    if not out:
        raise MimeError("multipart message has no parts")
    return out


def root_part(body: bytes, content_type: str) -> bytes:
    """The SOAP part: the first part (the ``start`` parameter is not needed: X-Road puts the
    SOAP message first)."""
    return parts(body, content_type)[0][1]
