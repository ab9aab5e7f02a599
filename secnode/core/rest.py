"""X-Road message protocol for REST (pr-rest v1, ``/r1/``) as secnode's client interface speaks it.

A REST client system calls
``{METHOD} /r1/{INSTANCE}/{CLASS}/{CODE}/{SUBSYSTEM}/{SERVICE}[/path][?query]``
with an ``X-Road-Client`` header; everything else (method, path, query,
headers, body) is the provider's API and passes through intact. This module
turns that into identifiers and the canonical :class:`MessageHeaders`,
decides which headers travel on, and computes ``X-Road-Request-Hash``
exactly as X-Road's client proxy does (``RestRequest.toByteArray`` and
``ClientRestMessageProcessor.checkConsistency``), so a client system that
checks it gets the value it expects.

Bodies are never seen here: the caller streams them and passes digests.
Pure: no aiohttp.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qs, unquote

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
    MAX_MESSAGE_ID_LENGTH,
    POLICY_EXTENSIONS,
    REST_METHODS,
    MessageError,
    MessageHeaders,
    check_text,
)

PROTOCOL_PREFIX: Final = "/r1/"

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

# Metaservices (pr-mrest): provider-subsystem paths and the federation-wide listClients.
REST_METASERVICES: Final = frozenset({"listMethods", "allowedMethods", "getOpenAPI"})
LIST_CLIENTS_PATH: Final = "/listClients"

Header = tuple[str, str]


_PATH_FORBIDDEN: Final = re.compile("[\x00-\x20\x7f]")
_QUERY_FORBIDDEN: Final = re.compile("[\x00-\x1f\x7f]")


def _bad(message: str) -> XRoadError:
    return XRoadError(errors.BAD_REQUEST, message)


def _decode_segment(segment: str, what: str) -> str:
    """Percent-decode one path segment (X-Road decodes each part separately,
    so an encoded ``/`` can never split or join identifier parts)."""
    try:
        return unquote(segment, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _bad(f"{what} is not valid percent-encoded UTF-8") from None


_SHAPE: Final = "/r1/INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/path]"


def parse_service_path(path: str) -> tuple[ServiceId, str]:
    """Split a raw request path into the service identifier and the service path.

    ``/r1/JP/GOV/072028/tax/income/v1/x%20y`` ->
    (``JP/GOV/072028/tax/income``, ``/v1/x%20y``). The service path stays raw
    (percent-encoded) because it goes to the provider as it came. Raises
    ``Client.BadRequest`` for another protocol version or too few parts and
    ``Client.InvalidServiceIdentifier`` for an illegal identifier part.
    """
    parts = path.split("/", 7)
    if len(parts) < 2 or parts[0] != "" or not parts[1].startswith("r"):
        raise _bad(f"invalid request URI {path!r}: expected {_SHAPE}")
    if parts[1] != "r1":
        raise _bad(f"unsupported REST protocol version {parts[1]!r}; this node speaks r1")
    if len(parts) < 7 or "" in parts[2:7]:
        raise _bad(f"invalid request URI {path!r}: expected {_SHAPE}")
    names = ("instance", "member class", "member code", "subsystem code", "service code")
    decoded = [_decode_segment(seg, name) for seg, name in zip(parts[2:7], names, strict=True)]
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
        raise _bad(f"service path {path!r} must be empty or start with '/'")
    for what, text in (("path", path), ("query", query)):
        if text is not None and _TARGET_FORBIDDEN.search(text):
            raise _bad(
                f"service {what} {text!r} contains a character that must be "
                "percent-encoded (not visible ASCII, or '#')"
            )
    for text in _decodings(path):
        if any(_is_dot_segment(seg) for seg in _SEGMENT_SEPARATORS.split(text)):
            raise _bad(
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


def decode_client_header(value: str) -> ClientId:
    """Parse ``X-Road-Client``: ``INSTANCE/CLASS/CODE[/SUBSYSTEM]``, each part percent-decoded."""
    parts = value.strip().split("/")
    if len(parts) not in (3, 4):
        raise XRoadError(
            errors.INVALID_CLIENT_IDENTIFIER,
            f"{HEADER_CLIENT} {value!r} must be INSTANCE/CLASS/CODE[/SUBSYSTEM]",
        )
    decoded = [_decode_segment(p, HEADER_CLIENT) for p in parts]
    try:
        return MemberId(*decoded) if len(decoded) == 3 else SubsystemId(*decoded)
    except IdentifierError as exc:
        raise XRoadError(errors.INVALID_CLIENT_IDENTIFIER, f"{HEADER_CLIENT}: {exc}") from None


def _decode_node(value: str) -> NodeId:
    parts = value.strip().split("/")
    if len(parts) != 4:
        raise _bad(f"{HEADER_SECURITY_SERVER} must be INSTANCE/CLASS/CODE/SERVERCODE")
    decoded = [_decode_segment(p, HEADER_SECURITY_SERVER) for p in parts]
    try:
        return NodeId(*decoded)
    except IdentifierError as exc:
        raise _bad(f"{HEADER_SECURITY_SERVER}: {exc}") from None


def _last(headers: Sequence[Header]) -> dict[str, str]:
    """Lower-cased name -> value of its *last* occurrence (X-Road: last one wins)."""
    return {name.lower(): value for name, value in headers}


def _text_header(name: str, value: str | None, max_length: int | None = None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    try:
        if max_length is None:
            return check_text(name, value)
        return check_text(name, value, max_length)
    except MessageError as exc:
        raise _bad(str(exc)) from None


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class RestRequest:
    """A client system's REST request, parsed and validated (body excluded).

    ``path`` and ``query`` are raw, as received (``query`` is ``None`` when
    the URL had no ``?``). ``service_path`` is the raw remainder after the
    service code (``""`` if none). ``message_id_generated`` is set when the
    client sent no ``X-Road-Id`` and the node made one. ``request_id`` is the
    node's ``X-Road-Request-Id`` for this exchange. ``headers`` are all the
    request headers as received, in order.
    """

    method: str
    path: str
    query: str | None
    service: ServiceId
    service_path: str
    client: ClientId
    message_id: str
    request_id: str
    message_id_generated: bool = False
    user_id: str | None = None
    issue: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    data_subject: str | None = None
    security_server: NodeId | None = None
    headers: tuple[Header, ...] = field(default=())
    policy_extensions: tuple[tuple[str, str], ...] = ()
    """(MessageHeaders attribute, value) of the policy extension headers present."""

    def message_headers(self, content_type: str | None = None) -> MessageHeaders:
        """The canonical model of this request, for the signed digest.

        ``content_type`` defaults to the request's own ``Content-Type``.
        """
        if content_type is None:
            content_type = _last(self.headers).get("content-type")
        return MessageHeaders(
            protocol="rest",
            client=self.client,
            service=self.service,
            message_id=self.message_id,
            user_id=self.user_id,
            issue=self.issue,
            purpose=self.purpose,
            legal_basis=self.legal_basis,
            data_subject=self.data_subject,
            **dict(self.policy_extensions),
            rest_method=self.method,
            rest_path=self.service_path,
            rest_query=self.query,
            content_type=content_type,
        )

    @property
    def provider_target(self) -> str:
        """Path and query to append to the provider's base URL."""
        return self.service_path + ("" if self.query is None else "?" + self.query)

    def header_part(self) -> bytes:
        """X-Road's serialised "header part" of this request (see :func:`rest_header_part`)."""
        return rest_header_part(
            self.method,
            self.path,
            self.query,
            self.headers,
            self.request_id,
            self.message_id if self.message_id_generated else None,
        )

    def request_hash(self, body_sha512: bytes | None) -> str:
        """``X-Road-Request-Hash`` for this request; ``body_sha512`` is ``None``
        when the request had no body bytes."""
        return rest_request_hash(self.header_part(), body_sha512)

    def passthrough_headers(self) -> list[Header]:
        """The client's own headers that travel on to the provider: everything
        except hop-by-hop / X-Road-skipped headers and the X-Road headers a
        node sets itself (those are re-issued from the validated values by
        :func:`provider_headers`), and any header with ``_`` in its name
        (see :func:`request_passthrough`)."""
        return request_passthrough(self.headers)


def parse_rest_request(
    method: str,
    path: str,
    query: str | None,
    headers: Sequence[Header],
    *,
    new_id: Callable[[], str] = _new_id,
) -> RestRequest:
    """Parse a client system's ``/r1/`` request.

    ``headers`` are ``(name, value)`` pairs in the order received, repeats
    included (aiohttp: ``list(request.headers.items())``); ``path`` the raw
    path and ``query`` the raw query string (``request.raw_path`` split at
    the first ``?``). ``X-Road-Client`` is mandatory and, like every X-Road
    header here, the last occurrence wins. A missing ``X-Road-Id`` is
    generated (UUID4); ``new_id`` also makes the ``X-Road-Request-Id``.
    Raises :class:`XRoadError` (HTTP 400) on any problem.
    """
    method = method.upper()
    if method not in REST_METHODS:
        raise XRoadError(errors.INVALID_HTTP_METHOD, f"unsupported HTTP method {method}")
    if _PATH_FORBIDDEN.search(path) or (
        query is not None and _QUERY_FORBIDDEN.search(query)
    ):
        raise _bad("request URI contains control characters or spaces")
    service, service_path = parse_service_path(path)
    check_service_path(service_path, query)
    values = _last(headers)
    raw_client = values.get(HEADER_CLIENT.lower())
    if raw_client is None or not raw_client.strip():
        raise _bad(f"{HEADER_CLIENT} header is missing")
    client = decode_client_header(raw_client)
    message_id = _text_header(HEADER_ID, values.get(HEADER_ID.lower()), MAX_MESSAGE_ID_LENGTH)
    generated = message_id is None
    if message_id is None:
        message_id = new_id()
    server = values.get(HEADER_SECURITY_SERVER.lower())
    return RestRequest(
        method=method,
        path=path,
        query=query,
        service=service,
        service_path=service_path,
        client=client,
        message_id=message_id,
        request_id=new_id(),
        message_id_generated=generated,
        user_id=_text_header(HEADER_USER_ID, values.get(HEADER_USER_ID.lower())),
        issue=_text_header(HEADER_ISSUE, values.get(HEADER_ISSUE.lower())),
        purpose=_text_header(HEADER_PURPOSE, values.get(HEADER_PURPOSE.lower())),
        legal_basis=_text_header(HEADER_LEGAL_BASIS, values.get(HEADER_LEGAL_BASIS.lower())),
        data_subject=_text_header(HEADER_DATA_SUBJECT, values.get(HEADER_DATA_SUBJECT.lower())),
        security_server=None if server is None else _decode_node(server),
        headers=tuple((str(n), str(v)) for n, v in headers),
        policy_extensions=tuple(
            (attr, text) for attr, header in POLICY_EXTENSION_HEADERS
            if (text := _text_header(header, values.get(header.lower()))) is not None
        ),
    )


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


# --------------------------------------------------------------------------
# Metaservices
# --------------------------------------------------------------------------

MetaKind = Literal["listClients", "listMethods", "allowedMethods", "getOpenAPI"]


@dataclass(frozen=True, slots=True)
class MetaRequest:
    """A REST metaservice call the node answers itself (pr-mrest).

    ``provider`` is the subsystem asked about (``None`` for listClients),
    ``service_code`` the ``serviceCode`` of getOpenAPI, ``instance`` the
    optional ``xRoadInstance`` filter of listClients.
    """

    kind: MetaKind
    provider: SubsystemId | None = None
    service_code: str | None = None
    instance: str | None = None


def _query_param(query: str | None, name: str) -> str | None:
    if not query:
        return None
    values = parse_qs(query, keep_blank_values=True).get(name)
    return values[-1] if values else None


def detect_metaservice(method: str, path: str, query: str | None) -> MetaRequest | None:
    """Return the metaservice ``path`` calls, or ``None`` for an ordinary request.

    ``GET /listClients[?xRoadInstance=I]``, and ``GET /r1/I/C/M/S/listMethods``,
    ``.../allowedMethods``, ``.../getOpenAPI?serviceCode=CODE``. These service
    codes are reserved: a provider cannot publish a REST service named so.
    Only GET is allowed on them; ``getOpenAPI`` without ``serviceCode`` is a
    ``Client.BadRequest``.
    """
    if path == LIST_CLIENTS_PATH or path == LIST_CLIENTS_PATH + "/":
        if method.upper() != "GET":
            raise XRoadError(errors.INVALID_HTTP_METHOD, "listClients must be called with GET")
        instance = _query_param(query, "xRoadInstance")
        return MetaRequest(kind="listClients", instance=instance or None)
    if not path.startswith(PROTOCOL_PREFIX):
        return None
    service, service_path = parse_service_path(path)
    code = service.service
    if code not in REST_METASERVICES or service_path not in ("", "/"):
        return None
    if method.upper() != "GET":
        raise XRoadError(errors.INVALID_HTTP_METHOD, f"{code} must be called with GET")
    kind: MetaKind = "listMethods"
    if code == "allowedMethods":
        kind = "allowedMethods"
    elif code == "getOpenAPI":
        kind = "getOpenAPI"
    service_code = None
    if kind == "getOpenAPI":
        service_code = _query_param(query, "serviceCode")
        if not service_code:
            raise _bad("getOpenAPI needs the query parameter serviceCode")
        try:
            ServiceId(
                service.instance, service.member_class, service.code, service.subsystem,
                service_code,
            )
        except IdentifierError as exc:
            raise XRoadError(errors.INVALID_SERVICE_IDENTIFIER, f"serviceCode: {exc}") from None
    return MetaRequest(kind=kind, provider=service.subsystem_id, service_code=service_code)
