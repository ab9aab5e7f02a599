"""The ``/r1/`` request path: the service identifier in it, and confinement of the rest.

A REST request's path names the service (``/r1/INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE``)
and the remainder goes to the provider system byte for byte. That remainder
is the one place a client could reach a resource it was never granted (``..``
in some encoding), so its checks are a module of their own, used by the
client node on its client's request and by the provider node on the peer's
signed path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final
from urllib.parse import unquote

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.identifiers import IdentifierError, ServiceId

PROTOCOL_PREFIX: Final = "/r1/"


def bad_request(message: str) -> XRoadError:
    return XRoadError(errors.BAD_REQUEST, message)


def decode_segment(segment: str, what: str) -> str:
    """Percent-decode one path segment (X-Road decodes each part separately,
    so an encoded ``/`` can never split or join identifier parts)."""
    try:
        return unquote(segment, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise bad_request(f"{what} is not valid percent-encoded UTF-8") from None


_SHAPE: Final = "/r1/INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/path]"


def parse_service_path(path: str) -> tuple[ServiceId, str]:
    """Split a raw request path into the service identifier and the service path.

    ``/r1/JP/GOV/072028/tax/income/v1/x%20y`` ->
    (``JP/GOV/072028/tax/income``, ``/v1/x%20y``). The service path stays raw
    (percent-encoded) because it goes to the provider as it came. Raises
    ``Client.BadRequest`` for another protocol version or too few parts and
    ``Client.InvalidServiceIdentifier`` for an illegal identifier part.

    As in X-Road (its ``RestRequest`` takes exactly five parts), the parts after ``/r1/``
    are always INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE: ``/r1/A/B/C/X/Y`` is service ``Y`` of
    subsystem ``X``, never the member's own service ``X`` with the path ``/Y``.
    """
    parts = path.split("/", 7)
    if len(parts) < 2 or parts[0] != "" or not parts[1].startswith("r"):
        raise bad_request(f"invalid request URI {path!r}: expected {_SHAPE}")
    if parts[1] != "r1":
        raise bad_request(f"unsupported REST protocol version {parts[1]!r}; this node speaks r1")
    if len(parts) < 7 or "" in parts[2:7]:
        hint = ""
        if len(parts) == 6 and "" not in parts[2:6]:  # X-Road reads no member-level REST path
            hint = (
                "; a REST service always belongs to a subsystem (as in X-Road, the fourth part"
                " is the subsystem code), a member's own service is called over SOAP"
            )
        raise bad_request(f"invalid request URI {path!r}: expected {_SHAPE}{hint}")
    names = ("instance", "member class", "member code", "subsystem code", "service code")
    decoded = [decode_segment(seg, name) for seg, name in zip(parts[2:7], names, strict=True)]
    try:
        service = ServiceId(*decoded)
    except IdentifierError as exc:
        raise XRoadError(errors.INVALID_SERVICE_IDENTIFIER, str(exc)) from None
    service_path = "/" + parts[7] if len(parts) == 8 else ""
    return service, service_path


# --------------------------------------------------------------------------
# Path confinement
# --------------------------------------------------------------------------

#: Characters that end a path segment for some provider stack: ``/``, and ``\\``
#: (IIS, Windows back ends, some Node/Python routers treat it as ``/``).
_SEGMENT_SEPARATORS: Final = re.compile(r"[/\\]")
#: Where a segment ends for the stacks that cut it short: ``;`` (Tomcat/Spring drop
#: path parameters, so ``..;x`` is ``..``) and NUL (C back ends stop there).
_SEGMENT_CUT: Final = re.compile("[;\x00]")
#: What a service path or query may not contain raw: anything but visible ASCII
#: (RFC 3986; it would change the request line) and ``#``, which the HTTP client
#: reads as a fragment and drops, so the provider would get less than was signed.
_TARGET_FORBIDDEN: Final = re.compile("[^\x21-\x7e]|#")


def _is_dot_segment(segment: str) -> bool:
    """``.`` or ``..``, also cut short at ``;``/NUL or with trailing spaces (Windows drops them)."""
    return _SEGMENT_CUT.split(segment, maxsplit=1)[0].rstrip(" ") in (".", "..")


def _decodings(raw: str) -> Iterator[str]:
    """``raw`` and each further percent-decoding of it, until nothing changes.

    Latin-1 maps every byte to one character, so ``%2e``/``%2E`` become ``.``
    whatever the rest of the path's encoding is, and decoding never fails.
    Each round that changes something is shorter, so this ends. Decoding more
    than once catches ``%252e``: a provider or proxy that decodes twice sees ``.``.
    """
    current = raw
    while True:
        yield current
        decoded = unquote(current, encoding="latin-1")
        if decoded == current:
            return
        current = decoded


def check_service_path(path: str, query: str | None = None) -> None:
    """Refuse a service path that could leave the registered service URL's path.

    The provider system is called at ``registered URL + path [? query]``, the
    path and query byte for byte as the client sent them. A ``.`` or ``..``
    segment there (or one that a decoder on the way would make) moves the call
    to another resource on the provider host, which the client was never
    granted. Refused whatever the encoding: raw, ``%2e``/``%2E`` in any mix,
    encoded more than once (``%252e``), separated by ``/`` or ``\\`` raw or
    encoded (``%2f``, ``%5c``), and as ``..;x``, ``..%00`` or ``..%20``. Also
    refused: a path not starting with ``/`` (it would extend the URL's last
    segment or its host), and anything but visible ASCII or a ``#`` in path or
    query. Used by the client node on its client's request and by the provider
    node on the peer's signed path. Raises ``Client.BadRequest``.
    """
    if path and not path.startswith("/"):
        raise bad_request(f"service path {path!r} must be empty or start with '/'")
    for what, text in (("path", path), ("query", query)):
        if text is not None and _TARGET_FORBIDDEN.search(text):
            raise bad_request(
                f"service {what} {text!r} contains a character that must be "
                "percent-encoded (not visible ASCII, or '#')"
            )
    for text in _decodings(path):
        if any(_is_dot_segment(seg) for seg in _SEGMENT_SEPARATORS.split(text)):
            raise bad_request(
                f"service path {path!r} contains a '.' or '..' segment (in some encoding): "
                "it could leave the service's registered path"
            )


def service_target(base_url: str, path: str | None, query: str | None) -> str:
    """The URL the provider system is called at: the registered ``base_url`` (its
    trailing ``/`` dropped) + ``path`` + ``?query``, path and query unmodified.

    Checks :func:`check_service_path` first. The result is already
    percent-encoded and must be sent as it is (yarl: ``URL(..., encoded=True)``):
    re-quoting would turn ``%2F`` into ``/`` and normalising would apply ``..``.
    """
    path = path or ""
    check_service_path(path, query)
    return base_url.rstrip("/") + path + ("" if query is None else "?" + query)
