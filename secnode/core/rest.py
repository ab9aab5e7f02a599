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
Pure: no aiohttp. The path rules are in :mod:`secnode.core.rest_path`, the
header rules and the request hash in :mod:`secnode.core.rest_headers`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qs

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
    REST_METHODS,
    MessageError,
    MessageHeaders,
    check_text,
)
from secnode.core.rest_headers import (
    HEADER_CLIENT,
    HEADER_DATA_SUBJECT,
    HEADER_ID,
    HEADER_ISSUE,
    HEADER_LEGAL_BASIS,
    HEADER_PURPOSE,
    HEADER_SECURITY_SERVER,
    HEADER_USER_ID,
    POLICY_EXTENSION_HEADERS,
    Header,
    request_passthrough,
    rest_header_part,
    rest_request_hash,
)
from secnode.core.rest_path import (
    PROTOCOL_PREFIX,
    bad_request,
    check_service_path,
    decode_segment,
    parse_service_path,
)

# Metaservices (pr-mrest): provider-subsystem paths and the federation-wide listClients.
REST_METASERVICES: Final = frozenset({"listMethods", "allowedMethods", "getOpenAPI"})
LIST_CLIENTS_PATH: Final = "/listClients"

_PATH_FORBIDDEN: Final = re.compile("[\x00-\x20\x7f]")
_QUERY_FORBIDDEN: Final = re.compile("[\x00-\x1f\x7f]")


def decode_client_header(value: str) -> ClientId:
    """Parse ``X-Road-Client``: ``INSTANCE/CLASS/CODE[/SUBSYSTEM]``, each part percent-decoded."""
    parts = value.strip().split("/")
    if len(parts) not in (3, 4):
        raise XRoadError(
            errors.INVALID_CLIENT_IDENTIFIER,
            f"{HEADER_CLIENT} {value!r} must be INSTANCE/CLASS/CODE[/SUBSYSTEM]",
        )
    decoded = [decode_segment(p, HEADER_CLIENT) for p in parts]
    try:
        return MemberId(*decoded) if len(decoded) == 3 else SubsystemId(*decoded)
    except IdentifierError as exc:
        raise XRoadError(errors.INVALID_CLIENT_IDENTIFIER, f"{HEADER_CLIENT}: {exc}") from None


def _decode_node(value: str) -> NodeId:
    parts = value.strip().split("/")
    if len(parts) != 4:
        raise bad_request(f"{HEADER_SECURITY_SERVER} must be INSTANCE/CLASS/CODE/SERVERCODE")
    decoded = [decode_segment(p, HEADER_SECURITY_SERVER) for p in parts]
    try:
        return NodeId(*decoded)
    except IdentifierError as exc:
        raise bad_request(f"{HEADER_SECURITY_SERVER}: {exc}") from None


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
        raise bad_request(str(exc)) from None


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
    if _PATH_FORBIDDEN.search(path) or (query is not None and _QUERY_FORBIDDEN.search(query)):
        raise bad_request("request URI contains control characters or spaces")
    service, service_path = parse_service_path(path)
    check_service_path(service_path, query)
    values = _last(headers)
    raw_client = values.get(HEADER_CLIENT.lower())
    if raw_client is None or not raw_client.strip():
        raise bad_request(f"{HEADER_CLIENT} header is missing")
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
            (attr, text)
            for attr, header in POLICY_EXTENSION_HEADERS
            if (text := _text_header(header, values.get(header.lower()))) is not None
        ),
    )


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
            raise bad_request("getOpenAPI needs the query parameter serviceCode")
        try:
            ServiceId(
                service.instance,
                service.member_class,
                service.code,
                service.subsystem,
                service_code,
            )
        except IdentifierError as exc:
            raise XRoadError(errors.INVALID_SERVICE_IDENTIFIER, f"serviceCode: {exc}") from None
    return MetaRequest(kind=kind, provider=service.subsystem_id, service_code=service_code)
