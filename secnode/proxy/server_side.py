"""Provider side: accept a signed request from another node, check it, call the service.

The exchange is a list of named steps (:func:`_exchange`); the first failure answers:
configuration current, the service is our member's and the peer's TLS certificate is
registered for the client member, message well formed, signature valid and signer
trusted (chain, identity, stapled OCSP), this node's own sign certificate status
usable (:mod:`secnode.trust.own_status`), not a replay, client known, service known,
access right granted, policy decision. Only then is the provider system called; its
response is signed and logged. Every refusal is logged with its reason.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from secnode.core import errors, rest_headers, rest_path, soap_mime
from secnode.core.errors import XRoadError
from secnode.core.message import request_digest, response_digest
from secnode.core.msgsig import SignatureError, SignerCodec
from secnode.core.soap import SoapRequest, parse_soap_request
from secnode.core.soap_response import prepare_soap_response
from secnode.core.witness import LogPosition, RequestWitness, request_witness_digest
from secnode.proxy import metaservices, monitoring, wire
from secnode.proxy.access import client_granted
from secnode.proxy.boundary import Surface, error_boundary, note_message
from secnode.proxy.budget import budget_middleware, lease_of
from secnode.proxy.exchange import RUNTIME, Exchange, decide, sign, spool_dir
from secnode.proxy.hooks import Signed
from secnode.proxy.io import (
    admit_parse,
    body_pieces,
    parse_bytes,
    read_limited,
    read_response,
    respool,
    send_response,
    sha256_of,
)
from secnode.proxy.spool import Payload, Spool
from secnode.trust.own_status import require_own_sign_status
from secnode.trust.provider_tls import ProviderTlsError
from secnode.trust.signers import TrustError
from secnode.trust.tls import peer_cert_sha256

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime, ServiceEntry

log = logging.getLogger("secnode.server")


@dataclass(frozen=True)
class ServiceAnswer:
    """What the provider system (or this node, for a metaservice) answered."""

    status: int
    content_type: str | None
    body: Payload
    passthrough: tuple[tuple[str, str], ...] = ()
    """The service's own response headers, passed to the client unsigned (REST)."""


@dataclass
class ProviderExchange(Exchange):
    """A signed request from a client node, on its way to one of our services."""

    extra: wire.Extra = field(default_factory=wire.Extra)
    soap_request: SoapRequest | None = None
    soap_message: soap_mime.SoapMessage | None = None
    """Where the SOAP part is (the whole body, or the root part of a multipart message)."""
    entry: ServiceEntry | None = None
    metaservice: str | None = None
    """The metaservice this node answers itself (listMethods, ...), if it is one."""
    answer: ServiceAnswer | None = None
    client_witness: RequestWitness | None = None
    """The client node's signed ``request_out`` position (kept in our ``request_in``)."""
    position: LogPosition | None = None
    """Our ``request_in`` position, witnessed to the client in the signed response."""


async def handle_exchange(request: web.Request) -> web.StreamResponse:
    """Refusals raise: the error boundary (secnode.proxy.boundary) answers and records them."""
    rt = request.app[RUNTIME]
    started = time.perf_counter()
    try:
        wire.check_version(request.headers.get(wire.H_VERSION))
    except wire.WireError as exc:
        raise XRoadError(errors.INVALID_PROTOCOL_VERSION, str(exc)) from exc
    try:
        headers = wire.decode_headers(request.headers.get(wire.H_MESSAGE))
    except wire.WireError as exc:
        raise XRoadError(errors.BAD_REQUEST, str(exc)) from exc
    note_message(request, headers)
    ex = ProviderExchange(rt, request, headers, started=started)
    response = await _exchange(ex)
    return response


async def _exchange(ex: ProviderExchange) -> web.StreamResponse:
    """The provider node's steps, in order; the first refusal ends the exchange."""
    _check_configuration(ex)
    _check_caller(ex)
    await _read_message(ex)
    _verify_signature(ex)
    await _check_message(ex)
    _resolve_service(ex)
    await decide(ex, "provider")
    await _log_request(ex)
    await _call_service(ex)
    await _sign_and_log(ex)
    return await _answer(ex)


def _check_configuration(ex: ProviderExchange) -> None:
    """No exchange without a current global configuration (it says whom to trust)."""
    conf = ex.rt.conf
    if conf is None or conf.is_expired():
        raise XRoadError(
            errors.SERVER_PROXY_OUTDATED_GLOBALCONF,
            "the provider node's global configuration is missing or expired",
        )
    ex.global_conf = conf


def _check_caller(ex: ProviderExchange) -> None:
    """The service is our member's, and the peer's TLS certificate is registered for a node
    of the client's member."""
    headers, request = ex.headers, ex.http
    if headers.service.member != ex.rt.member:
        raise XRoadError(
            errors.UNKNOWN_SERVICE,
            f"service {headers.service} is not provided by member {ex.rt.member}",
        )
    peer_hash = peer_cert_sha256(
        request.transport.get_extra_info("ssl_object") if request.transport else None
    )
    if peer_hash is None or not ex.conf.is_auth_cert_registered(peer_hash, headers.client):
        raise XRoadError(
            errors.SERVER_PROXY_SSL_AUTH_FAILED,
            f"peer's TLS certificate is not registered for a node of {headers.client.member}",
        )


async def _read_message(ex: ProviderExchange) -> None:
    """The unsigned extras and the REST path are checked before the body is read."""
    ex.extra = _extra(ex.http)
    headers = ex.headers
    if headers.protocol == "rest":  # refused before anything is logged or called (protocol.md)
        rest_path.check_service_path(headers.rest_path or "", headers.rest_query)
    body = await read_limited(ex.http, ex.rt.config.client.max_body_bytes, spool_dir(ex.rt))
    ex.body = body
    note_message(ex.http, headers, body)
    ex.body_sha256 = body.sha256


def _extra(request: web.Request) -> wire.Extra:
    """The unsigned ``Secnode-Extra``, validated before anything is logged or called."""
    try:
        return wire.Extra.decode(request.headers.get(wire.H_EXTRA))
    except wire.WireError as exc:
        raise XRoadError(errors.BAD_REQUEST, str(exc)) from exc


def _verify_signature(ex: ProviderExchange) -> None:
    """The request's signature verifies over its digest, and the signer is trusted for the
    client member (chain to an approved CA, identity, stapled OCSP)."""
    rt, conf = ex.rt, ex.conf
    digest = request_digest(ex.headers, ex.body_sha256)
    try:
        signature = wire.unb64(ex.http.headers.get(wire.H_SIGNATURE), wire.H_SIGNATURE)
        ocsp_der = wire.unb64(ex.http.headers.get(wire.H_OCSP), wire.H_OCSP)
    except wire.WireError as exc:
        raise XRoadError(errors.INVALID_SIGNATURE, str(exc)) from exc
    rt.trust.reset_if_changed(conf)
    try:
        codec = rt.verifier.verify_signer(signature, digest)
    except SignatureError as exc:
        raise XRoadError(errors.INVALID_SIGNATURE, f"request signature: {exc}") from exc
    try:
        trusted = rt.trust.check(
            codec.cert,
            codec.cert_der,
            ocsp_der,
            ex.client.member,
            conf.ca_certs,
            conf.settings.get("ocsp_freshness_seconds", 3600),
        )
    except TrustError as exc:
        raise XRoadError(errors.INVALID_SIGNATURE, f"request signer: {exc}") from exc
    ex.request = Signed(digest, signature, codec.cert_der, trusted.cert_sha256, ocsp_der)
    ex.client_witness = _client_witness(ex, codec, digest)


def _client_witness(
    ex: ProviderExchange, codec: SignerCodec, digest: bytes
) -> RequestWitness | None:
    """The client node's ``request_out`` position, signed by the request's signer. A node
    that logs requires it (both sides speak this protocol: docs/protocol.md §4.1)."""
    try:
        witness = wire.decode_witness(ex.http.headers.get(wire.H_WITNESS))
    except wire.WireError as exc:
        raise XRoadError(errors.INVALID_SIGNATURE, str(exc)) from exc
    if witness is None:
        if ex.rt.config.messagelog.enabled:
            raise XRoadError(
                errors.INVALID_SIGNATURE,
                f"the request carries no signed log position ({wire.H_WITNESS}): the client "
                "node keeps no message log or predates log witnessing; this node requires it",
            )
        return None
    try:
        codec.verify_raw(witness.signature, request_witness_digest(digest, witness.position))
    except SignatureError as exc:
        raise XRoadError(errors.INVALID_SIGNATURE, f"{wire.H_WITNESS}: {exc}") from exc
    return witness


async def _check_message(ex: ProviderExchange) -> None:
    """What an authentic message must also pass before the service acts: our own sign
    status, the replay window, a registered client, a SOAP header matching the metadata."""
    headers = ex.headers
    # Our own signature on the response must be acceptable before the service acts.
    require_own_sign_status(ex.rt, errors.SERVER_PROXY_INTERNAL_ERROR)
    # Only authentic messages consume their id, so nobody can burn another member's ids.
    await ex.rt.replay.remember(headers.client, headers.message_id, ex.conf)  # protocol.md §6.7
    if not ex.conf.has_client(headers.client):
        raise XRoadError(
            "Server.ServerProxy.UnknownMember",
            f"client {headers.client} is not registered in the global configuration",
        )
    if headers.protocol == "soap":
        # The provider system reads the SOAP header, not our metadata: they must agree, or a
        # client node could sign one client identity and show the service another.
        # lxml's SOAP parser takes bytes (SOAP only, bounded; a multipart message is split
        # in memory with its attachments)
        limit = ex.rt.config.client.max_parse_bytes
        whole = await admit_parse(ex.http, ex.body, limit, "SOAP message")
        ex.soap_message = message = soap_mime.split(whole, headers.content_type)
        del whole
        ex.soap_request = parse_soap_request(message.soap, None, check_body=False)
        if ex.soap_request.message_headers(headers.content_type) != headers:
            raise XRoadError(
                errors.INCONSISTENT_HEADERS,
                "the SOAP header does not match the signed message metadata",
            )


def _resolve_service(ex: ProviderExchange) -> None:
    """The service (or a metaservice this node answers), and the client's access right."""
    ex.entry = ex.rt.services.find(ex.service)
    ex.metaservice = metaservices.provider_metaservice(ex.service)
    if ex.entry is None and ex.metaservice is None:
        raise XRoadError(errors.UNKNOWN_SERVICE, f"unknown service {ex.service}")
    if ex.metaservice == metaservices.METRICS_SERVICE:  # the owner's or the monitoring client's
        monitoring.check_request(ex.rt, ex.conf, ex.soap_request)
    if ex.entry is not None and not client_granted(ex.entry, ex.client, ex.conf):
        raise XRoadError(errors.ACCESS_DENIED, f"{ex.client} has no access right to {ex.service}")
    if ex.entry is not None and ex.entry.log_bodies is not None:
        ex.log_body = ex.entry.log_bodies
    else:
        ex.log_body = ex.rt.config.messagelog.bodies


async def _log_request(ex: ProviderExchange) -> None:
    """The verified request and the decision, logged before the service is called."""
    verdict = ex.decision
    witness = ex.client_witness
    ex.position = await ex.log(
        "request_in",
        ex.body,
        ex.signed_request,
        body_sha256=ex.body_sha256,
        reason=verdict.record or verdict.reason,
        extra={"policy": verdict.details},
        witness=None if witness is None else witness.encode(),
    )


async def _call_service(ex: ProviderExchange) -> None:
    """Call the provider system, or answer the metaservice here."""
    if ex.metaservice is not None:
        if ex.soap_message is not None:
            request_body: bytes = ex.soap_message.soap
        else:
            limit = ex.rt.config.client.max_parse_bytes
            request_body = await admit_parse(ex.http, ex.body, limit, "request")
        status, content_type, out = metaservices.answer_provider(
            ex.rt, ex.headers, ex.metaservice, request_body, ex.soap_request
        )
        ex.answer = ServiceAnswer(status, content_type, out)
    else:
        assert ex.entry is not None
        ex.answer = await _request_service(ex, ex.entry)


async def _sign_and_log(ex: ProviderExchange) -> None:
    """Filter the response to what the policy permits, sign it over the request digest
    (with the policy statement) and log it."""
    answer, verdict = ex.answer, ex.decision
    assert answer is not None
    out = await _prepared(ex, answer)
    ex.answer = answer = ServiceAnswer(answer.status, answer.content_type, out, answer.passthrough)
    out_sha = sha256_of(out)
    digest = response_digest(
        ex.headers,
        ex.signed_request.digest,
        answer.status,
        answer.content_type,
        out_sha,
        verdict.statement,
        ex.position,
    )
    # Our own status may have lapsed since the request was checked.
    ex.response = sign(ex, digest, errors.SERVER_PROXY_INTERNAL_ERROR)
    await ex.log(
        "response_out",
        out,
        ex.response,
        body_sha256=out_sha,
        status=answer.status,
        extra={"request_digest": ex.signed_request.digest.hex()},
    )


async def _prepared(ex: ProviderExchange, answer: ServiceAnswer) -> Payload:
    """The response as it may be released: SOAP checked and given its ``requestHash``,
    and cut to the permitted fields by the policy point. Either needs the body in memory
    (bounded by ``[client] max_parse_bytes``); a REST response nobody filters stays
    spooled."""
    out, verdict = answer.body, ex.decision
    limit = ex.rt.config.client.max_parse_bytes
    if ex.soap_request is not None and ex.metaservice is None:
        whole = parse_bytes(out, limit, "SOAP response", lease_of(ex.http))
        out = _with_request_hash(ex, whole, answer.content_type)
    filters = verdict.permitted_fields is not None and bool(verdict.details.get("filter"))
    if isinstance(out, Spool) and not out.in_memory and not filters:
        # nothing to filter: the policy point sees no body (it records the provision only)
        await ex.rt.decision.after_response(ex.headers, verdict, b"", answer.content_type or "")
        return out
    lease = lease_of(ex.http)
    given = (
        parse_bytes(out, limit, "response to be filtered", lease) if isinstance(out, Spool) else out
    )
    kept = await ex.rt.decision.after_response(
        ex.headers, verdict, given, answer.content_type or ""
    )
    if kept is given and isinstance(out, Spool):
        return out
    return respool(ex.http, spool_dir(ex.rt), kept)


def _with_request_hash(ex: ProviderExchange, out: bytes, content_type: str | None) -> bytes:
    """The service's SOAP response with ``requestHash`` (over the request's SOAP part) in
    its header; a multipart response keeps its other parts byte for byte."""
    assert ex.soap_request is not None and ex.soap_message is not None
    response = soap_mime.split(out, content_type, errors.SERVICE_INVALID_SOAP)
    # lxml's SOAP checks take bytes: one transient copy, for SOAP only
    soap = prepare_soap_response(response.soap, ex.soap_request, ex.soap_message.soap)
    return soap_mime.join(response, out, soap)


async def _answer(ex: ProviderExchange) -> web.StreamResponse:
    """The signed response: metadata, signature and OCSP staple in headers, body as is;
    written while the exchange holds its in-flight bytes."""
    answer, signed = ex.answer, ex.response
    assert answer is not None and signed is not None
    resp_headers: dict[str, str] = {
        wire.H_RESPONSE: wire.ResponseMeta(
            answer.status, answer.content_type, ex.decision.statement, ex.position
        ).encode(),
        wire.H_SIGNATURE: wire.b64(signed.signature),
        wire.H_OCSP: wire.b64(signed.ocsp_der),
    }
    if answer.passthrough:
        resp_headers[wire.H_EXTRA] = wire.Extra(None, answer.passthrough).encode()
    if answer.content_type:
        resp_headers["Content-Type"] = answer.content_type
    return await send_response(ex.http, 200, answer.body, resp_headers)


async def _request_service(ex: ProviderExchange, entry: ServiceEntry) -> ServiceAnswer:
    """One HTTP request to the provider system, with the client's passthrough headers."""
    rt, headers = ex.rt, ex.headers
    session, request_ssl = _session_for(rt, entry)
    if entry.type == "rest":
        url: str | URL = URL(
            rest_path.service_target(entry.url, headers.rest_path, headers.rest_query), encoded=True
        )
        method = headers.rest_method or "GET"
    else:
        url, method = entry.url, "POST"
    out_headers = CIMultiDict(_service_headers(ex))
    if headers.content_type and "Content-Type" not in out_headers:
        out_headers["Content-Type"] = headers.content_type
    # A REST body sent without a Content-Type reaches the service without one (aiohttp
    # would otherwise add application/octet-stream).
    skip = () if "Content-Type" in out_headers else ("Content-Type",)
    body = ex.body
    sends_body = bool(body) or method not in ("GET", "HEAD")
    if sends_body:
        out_headers["Content-Length"] = str(len(body))  # the pieces are not sent chunked
    try:
        async with session.request(
            method,
            url,
            data=body_pieces(body) if sends_body else None,
            headers=out_headers,
            allow_redirects=False,
            skip_auto_headers=skip,
            ssl=request_ssl,
            timeout=aiohttp.ClientTimeout(total=entry.timeout),
        ) as resp:
            limit = rt.config.client.max_body_bytes
            out = await read_response(
                ex.http, resp.content, limit, spool_dir(rt), resp.content_length
            )
            if len(out) > rt.config.client.max_body_bytes:
                raise XRoadError(errors.SERVICE_FAILED, "provider response exceeds the size limit")
            passthrough = tuple(
                (k, v)
                for k, v in rest_headers.filter_headers(resp.headers.items())
                if k.lower() not in ("content-type", "content-length")
            )
            return ServiceAnswer(resp.status, resp.headers.get("Content-Type"), out, passthrough)
    except TimeoutError as exc:
        raise XRoadError(
            errors.SERVICE_FAILED, f"service did not answer within {entry.timeout:g} s"
        ) from exc
    except aiohttp.ClientError as exc:
        raise _call_failed(exc, entry) from exc


def _call_failed(exc: aiohttp.ClientError, entry: ServiceEntry) -> XRoadError:
    """The X-Road error for a failed call to the provider system; a TLS failure says that
    the request was not sent, and why."""
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return XRoadError(
            errors.SERVICE_SSL_AUTH_FAILED,
            f"the provider system at {exc.host}:{exc.port} presented a TLS certificate with "
            f"SHA-256 {exc.got.hex()}, not the pinned {exc.expected.hex()}; request not sent",
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return XRoadError(
            errors.SERVICE_SSL_AUTH_FAILED,
            f"the provider system's TLS certificate is not trusted for {entry.service} "
            f"({exc.certificate_error}); request not sent",
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return XRoadError(
            errors.SERVICE_SSL_AUTH_FAILED,
            f"TLS with the provider system failed ({exc}); request not sent",
        )
    hint = ""
    if (
        entry.tls is not None
        and isinstance(exc, aiohttp.ClientConnectionError)
        and not isinstance(exc, aiohttp.ClientConnectorError)  # connected, then closed
    ):
        # TLS 1.3: a provider refusing our client certificate (or its absence) closes the
        # connection only after the handshake, when the request is read
        hint = " (an https provider that refuses the node's TLS client certificate, or "
        hint += "wants one, closes like this: see 'secnode service tls')"
    return XRoadError(errors.SERVICE_FAILED, f"service call failed: {exc}{hint}")


def _session_for(
    rt: NodeRuntime, entry: ServiceEntry
) -> tuple[aiohttp.ClientSession, ssl.SSLContext | bool]:
    """The pooled session for the provider system, and the ``ssl`` its requests pass: the
    shared one for http://, one per TLS setting for https:// (never an unchosen default)."""
    if entry.tls is None:
        assert rt.service_session is not None
        if entry.url.startswith("https://"):  # a row written around the CLI's checks
            raise XRoadError(
                errors.SERVICE_SSL_AUTH_FAILED,
                f"{entry.service} is at an https:// URL without a TLS setting "
                "('secnode service tls'); request not sent",
            )
        return rt.service_session, True
    try:
        return rt.provider_session(entry.tls)
    except (ProviderTlsError, ssl.SSLError, OSError) as exc:
        raise XRoadError(
            errors.SERVER_PROXY_INTERNAL_ERROR,
            f"cannot set up TLS towards the provider of {entry.service}: {exc}",
        ) from exc


def _service_headers(ex: ProviderExchange) -> list[tuple[str, str]]:
    """REST: the client's passthrough and the re-issued X-Road headers. SOAP: the X-Road
    headers and the client's ``SOAPAction`` (X-Road forwards it); a multi-line SOAP issue
    stays in the SOAP header only (it cannot be an HTTP header)."""
    headers, extra = ex.headers, ex.extra
    request_id = extra.request_id or headers.message_id
    if headers.protocol == "rest":
        return rest_headers.provider_headers(headers, extra.headers, request_id)
    out = [
        (k, v)
        for k, v in rest_headers.provider_headers(headers, (), request_id)
        if wire.header_value_ok(v)
    ]
    return out + [(k, v) for k, v in extra.headers if k.lower() == "soapaction"][:1]


def build_server_app(rt: NodeRuntime) -> web.Application:
    surface = Surface(errors.SERVER_SERVER_PROXY, log, lambda _request: "rest", rt)
    app = web.Application(
        client_max_size=rt.config.client.max_body_bytes + 1024,
        middlewares=[error_boundary(surface), budget_middleware(rt.budget, rt.spool_budget)],
    )
    app[RUNTIME] = rt
    app.router.add_post(wire.EXCHANGE_PATH, handle_exchange)
    return app
