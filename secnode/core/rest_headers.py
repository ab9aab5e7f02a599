"""The REST headers: X-Road's header names, which headers travel on, and the request hash.

Which headers a node forwards, re-issues or drops is where a client or
provider could forge the identity a node vouches for, and
``X-Road-Request-Hash`` must be byte-exact with X-Road's client proxy
(``RestRequest.toByteArray``); both are rules about header lists alone, so
they sit here, apart from request parsing (:mod:`secnode.core.rest`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Final

from secnode.core import errors
from secnode.core.message import POLICY_EXTENSIONS, MessageHeaders

# X-Road REST headers (pr-rest §4.3) and secnode's policy extension headers.
HEADER_CLIENT: Final = "X-Road-Client"
HEADER_SERVICE: Final = "X-Road-Service"
HEADER_ID: Final = "X-Road-Id"
HEADER_USER_ID: Final = "X-Road-UserId"
HEADER_ISSUE: Final = "X-Road-Issue"
HEADER_REQUEST_ID: Final = "X-Road-Request-Id"
HEADER_REQUEST_HASH: Final = "X-Road-Request-Hash"
HEADER_ERROR: Final = errors.ERROR_HEADER
HEADER_SECURITY_SERVER: Final = "X-Road-Security-Server"
HEADER_REPRESENTED_PARTY: Final = "X-Road-Represented-Party"
HEADER_PURPOSE: Final = "X-Road-Purpose"
HEADER_LEGAL_BASIS: Final = "X-Road-Legal-Basis"
HEADER_DATA_SUBJECT: Final = "X-Road-Data-Subject"
#: The other policy headers (X-Road-Agreement, -Consent-Id, -Data-Items, ...): attribute
#: of MessageHeaders -> header name. Signed, re-issued to the provider like the three above.
POLICY_EXTENSION_HEADERS: Final = tuple((attr, header) for attr, header, _ in POLICY_EXTENSIONS)

# Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded in either direction.
HOP_BY_HOP_HEADERS: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# X-Road's RestMessage.SKIPPED_HEADERS, verbatim: removed before forwarding
# (pr-rest §4.4: hop-by-hop plus Host, User-Agent, Server; the length and
# Expect are re-done per hop) and left out of the request hash.
XROAD_SKIPPED_HEADERS: Final = frozenset(
    {
        "transfer-encoding",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "connection",
        "user-agent",
        "host",
        "content-length",
        "server",
        "expect",
    }
)
STRIPPED_HEADERS: Final = HOP_BY_HOP_HEADERS | XROAD_SKIPPED_HEADERS
# X-Road headers a node sets itself; copies from a client or provider are dropped.
NODE_HEADERS: Final = frozenset(
    h.lower()
    for h in (
        HEADER_CLIENT,
        HEADER_SERVICE,
        HEADER_ID,
        HEADER_USER_ID,
        HEADER_ISSUE,
        HEADER_REQUEST_ID,
        HEADER_REQUEST_HASH,
        HEADER_ERROR,
        HEADER_SECURITY_SERVER,
        HEADER_PURPOSE,
        HEADER_LEGAL_BASIS,
        HEADER_DATA_SUBJECT,
        *(header for _, header in POLICY_EXTENSION_HEADERS),
    )
)

Header = tuple[str, str]


# --------------------------------------------------------------------------
# Header filtering
# --------------------------------------------------------------------------


def filter_headers(headers: Iterable[Header]) -> list[Header]:
    """Drop hop-by-hop and X-Road-skipped headers, headers the ``Connection``
    header names (RFC 9110 §7.6.1), and the X-Road headers a node owns.

    Used both for a client's request headers going to the provider and for a
    provider's response headers going back to the client: neither side may
    forge ``X-Road-Request-Hash``, ``X-Road-Error`` or the identifiers.
    """
    pairs = list(headers)
    named: set[str] = set()
    for name, value in pairs:
        if name.lower() == "connection":
            named.update(tok.strip().lower() for tok in value.split(",") if tok.strip())
    return [
        (name, value)
        for name, value in pairs
        if (low := name.lower()) not in STRIPPED_HEADERS
        and low not in NODE_HEADERS
        and low not in named
    ]


def request_passthrough(headers: Iterable[Header]) -> list[Header]:
    """A client's headers that may reach the provider system: :func:`filter_headers`,
    minus every header whose name contains ``_``.

    CGI, WSGI, PHP and many gateways map header names to ``HTTP_X_ROAD_CLIENT``, so
    ``X_Road_Client`` reads there exactly as ``X-Road-Client``: a client could forge
    the identity the node vouches for, or smuggle a hop-by-hop header. Legitimate
    header names do not use ``_`` (nginx drops them by default), so all go.
    """
    return [(name, value) for name, value in filter_headers(headers) if "_" not in name]


def provider_headers(
    headers: MessageHeaders, passthrough: Iterable[Header], request_id: str
) -> list[Header]:
    """Headers for the request to the provider system: the client's passthrough
    headers (:func:`request_passthrough`, applied again here because they come
    unsigned from the peer node) plus the X-Road headers re-issued from the
    validated message (``X-Road-Client``, ``-Service``, ``-Id``, ``-UserId``,
    ``-Issue``, ``-Request-Id`` and the policy headers when present)."""
    out = request_passthrough(passthrough)
    out.append((HEADER_CLIENT, str(headers.client)))
    out.append((HEADER_SERVICE, str(headers.service)))
    out.append((HEADER_ID, headers.message_id))
    out.append((HEADER_REQUEST_ID, request_id))
    for name, value in (
        (HEADER_USER_ID, headers.user_id),
        (HEADER_ISSUE, headers.issue),
        (HEADER_PURPOSE, headers.purpose),
        (HEADER_LEGAL_BASIS, headers.legal_basis),
        (HEADER_DATA_SUBJECT, headers.data_subject),
        *((header, getattr(headers, attr)) for attr, header in POLICY_EXTENSION_HEADERS),
    ):
        if value is not None:
            out.append((name, value))
    return out


def client_response_headers(
    provider_response_headers: Iterable[Header],
    headers: MessageHeaders,
    request_id: str,
    request_hash: str,
) -> list[Header]:
    """Headers of the response delivered to the client system: the provider's
    headers (filtered) plus ``X-Road-Id``, ``X-Road-Client``, ``X-Road-Service``,
    ``X-Road-Request-Id`` and ``X-Road-Request-Hash`` (pr-rest §4.3)."""
    out = filter_headers(provider_response_headers)
    out.extend(
        [
            (HEADER_ID, headers.message_id),
            (HEADER_CLIENT, str(headers.client)),
            (HEADER_SERVICE, str(headers.service)),
            (HEADER_REQUEST_ID, request_id),
            (HEADER_REQUEST_HASH, request_hash),
        ]
    )
    return out


# --------------------------------------------------------------------------
# Request hash
# --------------------------------------------------------------------------


def rest_header_part(
    method: str,
    path: str,
    query: str | None,
    headers: Iterable[Header],
    request_id: str,
    generated_message_id: str | None = None,
) -> bytes:
    """X-Road's "REST header part" of a request, the first input of the request hash.

    Byte layout (UTF-8), as ``RestRequest.toByteArray`` in X-Road 7::

        METHOD CRLF
        raw-path [ "?" raw-query ] CRLF
        { name ":" value CRLF }      for each received header, in order, except
                                     X-Road's SKIPPED_HEADERS, X-Road-Request-Id
                                     and X-Road-Request-Hash (names matched
                                     case-insensitively, written as received)
        "X-Road-Request-Id:" request-id CRLF
        [ "X-Road-Id:" generated-id CRLF ]   only if the client sent no X-Road-Id

    No space after the colon; repeated headers appear once per occurrence.
    """
    skip = XROAD_SKIPPED_HEADERS | {HEADER_REQUEST_ID.lower(), HEADER_REQUEST_HASH.lower()}
    lines = [method, path if query is None else f"{path}?{query}"]
    lines.extend(f"{name}:{value}" for name, value in headers if name.lower() not in skip)
    lines.append(f"{HEADER_REQUEST_ID}:{request_id}")
    if generated_message_id is not None:
        lines.append(f"{HEADER_ID}:{generated_message_id}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def rest_request_hash(header_part: bytes, body_sha512: bytes | None) -> str:
    """``X-Road-Request-Hash``: base64(SHA-512(SHA-512(header part) || SHA-512(body))),
    or base64(SHA-512(header part)) when the request had no body bytes.

    ``body_sha512`` is the SHA-512 of the body, computed while streaming it.
    """
    header_digest = hashlib.sha512(header_part).digest()
    if body_sha512 is None:
        digest = header_digest
    else:
        if len(body_sha512) != 64:
            raise ValueError("body_sha512 must be a 64-byte SHA-512 digest")
        digest = hashlib.sha512(header_digest + body_sha512).digest()
    return base64.b64encode(digest).decode("ascii")
