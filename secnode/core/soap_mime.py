"""A SOAP message with attachments (pr-mess §2.4): the SOAP part and what travels with it.

X-Road accepts a SOAP message as plain ``text/xml``, as SOAP with attachments (SwA:
``multipart/related; type="text/xml"``, Annex F) or as MTOM/XOP (``multipart/related;
type="application/xop+xml"``, root part ``application/xop+xml; type="text/xml"``, Annex G).
The nodes check, hash and sign without re-encoding anything:

- the SOAP part (the root part) is what the header checks read and what ``requestHash``
  is computed over (X-Road hashes the SOAP part's bytes, not the MIME message);
- the signed body digest (:mod:`secnode.core.message`) is over the whole message as
  received, so every part, its headers and the part order are covered by the signature;
- the provider's multipart response gets ``requestHash`` spliced into its root part, the
  other parts left byte for byte.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from secnode.core import errors, mime_related
from secnode.core.errors import XRoadError
from secnode.core.message import Body

#: Media types a multipart message's root may have, and what X-Road calls them.
_SWA = "text/xml"
_XOP = "application/xop+xml"
_PLAIN_ENCODINGS = ("", "7bit", "8bit", "binary")


@dataclass(frozen=True, slots=True)
class SoapMessage:
    """Where the SOAP envelope of a message is.

    ``soap`` is the envelope's bytes; ``soap_content_type`` is the ``text/xml`` type the
    envelope would have on its own (its charset kept), for the SOAP parser; ``related`` is
    the parsed multipart message (``None`` for a plain ``text/xml`` one).
    """

    soap: bytes
    soap_content_type: str | None
    related: mime_related.Related | None = None

    @property
    def form(self) -> str:
        """``soap`` (plain), ``swa`` or ``mtom``: how the message carried its SOAP part."""
        if self.related is None:
            return "soap"
        return "mtom" if mime_related.media_type(self.related.root.content_type) == _XOP else "swa"


def _root_type(related: mime_related.Related, code: str) -> str:
    """The root part's media type: its own Content-Type, else the multipart ``type``."""
    root = related.root
    declared = root.content_type or related.type
    if declared is None:
        raise XRoadError(code, "the multipart message's root part has no Content-Type")
    media = mime_related.media_type(declared)
    if media == _XOP:
        inner = mime_related.params(declared).get("type") or related.start_info or _SWA
        if mime_related.media_type(inner) != _SWA:
            raise XRoadError(
                code,
                f"MTOM root part carries {inner!r}; X-Road v4.0 is SOAP 1.1 (text/xml) only",
            )
    elif media != _SWA:
        raise XRoadError(
            code,
            f"the multipart message's root part is {media!r}, not a SOAP message "
            "(text/xml or application/xop+xml)",
        )
    encoding = root.headers.get("content-transfer-encoding", "").strip().lower()
    if encoding not in _PLAIN_ENCODINGS:
        raise XRoadError(
            code, f"the SOAP part must not be {encoding}-encoded (8bit or binary expected)"
        )
    return declared


def split(body: Body, content_type: str | None, code: str = errors.INVALID_SOAP) -> SoapMessage:
    """The SOAP part of a message with ``content_type``; ``code`` for a malformed multipart.

    A plain message is returned whole (its content type is checked by the SOAP parser).
    For ``multipart/related``: the boundary, the parts, ``start`` and the root's type are
    checked here; the root's XML is checked by the SOAP parser like a plain message.
    """
    if not mime_related.is_related(content_type):
        return SoapMessage(bytes(body), content_type)
    assert content_type is not None
    try:
        related = mime_related.parse(body, content_type)
    except mime_related.MimeError as exc:
        raise XRoadError(code, f"malformed multipart/related message: {exc}") from None
    declared = _root_type(related, code)
    charset = mime_related.params(declared).get("charset")
    soap_type = "text/xml" + (f"; charset={charset}" if charset else "")
    return SoapMessage(related.root.content(body), soap_type, related)


def join(message: SoapMessage, body: Body, soap: bytes) -> bytes:
    """``body`` with its SOAP part replaced by ``soap`` (a plain message: ``soap`` itself)."""
    if message.related is None:
        return soap
    return mime_related.replace_root(body, message.related, soap)
