"""Provider side: accept a signed request from another node, check it, call the service.

Order of checks (the first failure answers): configuration current, peer's
TLS certificate registered for the client member, message well formed, not a
replay, signature valid and signer trusted (chain, identity, stapled OCSP),
this node's own sign certificate status usable (:mod:`secnode.trust.own_status`),
service known, access right granted, policy decision. Only then is the
provider system called. Every refusal is logged with its reason.
"""

from __future__ import annotations

import hashlib
import logging
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from secnode.app.runtime import NodeRuntime, ServiceEntry
from secnode.core import errors, rest_headers, rest_path
from secnode.core.errors import XRoadError
from secnode.core.identifiers import MemberId, SubsystemId
from secnode.core.message import MessageHeaders, request_digest, response_digest
from secnode.core.msgsig import SignatureError
from secnode.core.soap import parse_soap_request
from secnode.core.soap_response import prepare_soap_response
from secnode.proxy import metaservices, wire
from secnode.proxy.boundary import Surface, error_boundary, note_message
from secnode.proxy.hooks import ExchangeEvent
from secnode.proxy.io import read_limited, read_response
from secnode.trust.own_status import require_own_sign_status
from secnode.trust.signers import TrustError
from secnode.trust.tls import peer_cert_sha256

log = logging.getLogger("secnode.server")

FORWARDED_HEADERS = ("Accept", "Accept-Language")


def _client_granted(rt: NodeRuntime, entry: ServiceEntry, client: MemberId | SubsystemId) -> bool:
    if str(client) in entry.grants:
        return True
    conf = rt.conf
    if conf is None:
        return False
    return any(f"group:{code}" in entry.grants for code in conf.groups_of(client))


async def handle_exchange(request: web.Request) -> web.StreamResponse:
    """Refusals raise: the error boundary (secnode.proxy.boundary) answers and records them."""
    rt: NodeRuntime = request.app["runtime"]
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
    response = await _exchange(rt, request, headers)
    rt.count("provider_requests_total")
    rt.count("provider_seconds_total", time.perf_counter() - started)
    return response


def _extra(request: web.Request) -> wire.Extra:
    """The unsigned ``Secnode-Extra``, validated before anything is logged or called."""
    try:
        return wire.Extra.decode(request.headers.get(wire.H_EXTRA))
    except wire.WireError as exc:
        raise XRoadError(errors.BAD_REQUEST, str(exc)) from exc


async def _exchange(rt: NodeRuntime, request: web.Request,
                    headers: MessageHeaders) -> web.StreamResponse:
    conf = rt.conf
    if conf is None or conf.is_expired():
        raise XRoadError(errors.SERVER_PROXY_OUTDATED_GLOBALCONF,
                         "the provider node's global configuration is missing or expired")
    if headers.service.member != rt.member:
        raise XRoadError(errors.UNKNOWN_SERVICE,
                         f"service {headers.service} is not provided by member {rt.member}")
    peer_hash = peer_cert_sha256(request.transport.get_extra_info("ssl_object")
                                 if request.transport else None)
    if peer_hash is None or not conf.is_auth_cert_registered(peer_hash, headers.client):
        raise XRoadError(
            errors.SERVER_PROXY_SSL_AUTH_FAILED,
            f"peer's TLS certificate is not registered for a node of {headers.client.member}",
        )
    extra = _extra(request)
    if headers.protocol == "rest":  # refused before anything is logged or called (protocol.md)
        rest_path.check_service_path(headers.rest_path or "", headers.rest_query)
    body = await read_limited(request, rt.config.client.max_body_bytes)
    note_message(request, headers, body)
    body_sha256 = hashlib.sha256(body).digest()
    digest = request_digest(headers, body_sha256)
    try:
        signature = wire.unb64(request.headers.get(wire.H_SIGNATURE), wire.H_SIGNATURE)
        ocsp_der = wire.unb64(request.headers.get(wire.H_OCSP), wire.H_OCSP)
    except wire.WireError as exc:
        raise XRoadError(errors.INVALID_SIGNATURE, str(exc)) from exc
    signer_sha, signer_der = _verify_signed(rt, signature, ocsp_der, digest,
                                            headers.client.member)
    # Our own signature on the response must be acceptable before the service acts.
    require_own_sign_status(rt, errors.SERVER_PROXY_INTERNAL_ERROR)
    # Only authentic messages consume their id, so nobody can burn another member's ids.
    await rt.replay.remember(headers.client, headers.message_id, conf)  # docs/protocol.md §6.7
    if not conf.has_client(headers.client):
        raise XRoadError("Server.ServerProxy.UnknownMember",
                         f"client {headers.client} is not registered in the global configuration")
    soap_req = None
    if headers.protocol == "soap":
        # The provider system reads the SOAP header, not our metadata: they must agree, or a
        # client node could sign one client identity and show the service another.
        soap_req = parse_soap_request(body, None, check_body=False)
        if soap_req.message_headers(headers.content_type) != headers:
            raise XRoadError(errors.INCONSISTENT_HEADERS,
                             "the SOAP header does not match the signed message metadata")
    entry = rt.services.find(headers.service)
    meta = metaservices.provider_metaservice(headers.service)
    if entry is None and meta is None:
        raise XRoadError(errors.UNKNOWN_SERVICE, f"unknown service {headers.service}")
    if entry is not None and not _client_granted(rt, entry, headers.client):
        raise XRoadError(errors.ACCESS_DENIED,
                         f"{headers.client} has no access right to {headers.service}")
    verdict = await rt.decision.decide(headers, "provider")
    if not verdict.allow:
        raise XRoadError(errors.ACCESS_DENIED, f"policy: {verdict.reason}: {verdict.message}",
                         detail=verdict.reason)
    log_bodies = rt.config.messagelog.bodies if entry is None or entry.log_bodies is None \
        else entry.log_bodies
    await rt.sink.record(ExchangeEvent(
        "request_in", headers, body_sha256, digest, signature, signer_sha,
        hashlib.sha256(ocsp_der).hexdigest(), "allow", verdict.record or verdict.reason,
        body=body,
        log_body=log_bodies, extra={"policy": verdict.details},
        signer_cert_der=signer_der, ocsp_der=ocsp_der,
    ))
    passthrough: list[tuple[str, str]] = []
    if meta is not None:
        status, content_type, out = metaservices.answer_provider(rt, headers, meta, body)
    else:
        assert entry is not None
        status, content_type, out, passthrough = await _call_service(rt, entry, headers, body,
                                                                     extra)
    if soap_req is not None and meta is None:
        out = prepare_soap_response(out, soap_req, body)
    out = await rt.decision.after_response(headers, verdict, out, content_type or "")
    out_sha = hashlib.sha256(out).digest()
    resp_digest = response_digest(headers, digest, status, content_type, out_sha,
                                  verdict.statement)
    require_own_sign_status(rt, errors.SERVER_PROXY_INTERNAL_ERROR)  # it may have lapsed since
    assert rt.signer is not None and rt.sign_cert is not None and rt.sign_cert.ocsp_der
    resp_sig = rt.signer.sign(resp_digest)
    await rt.sink.record(ExchangeEvent(
        "response_out", headers, out_sha, resp_digest, resp_sig,
        rt.signer.codec.cert_sha256, hashlib.sha256(rt.sign_cert.ocsp_der).hexdigest(),
        "allow", status=status, body=out, log_body=log_bodies,
        extra={"request_digest": digest.hex()},
        signer_cert_der=rt.signer.codec.cert_der, ocsp_der=rt.sign_cert.ocsp_der,
    ))
    resp_headers = {
        wire.H_RESPONSE: wire.ResponseMeta(status, content_type, verdict.statement).encode(),
        wire.H_SIGNATURE: wire.b64(resp_sig),
        wire.H_OCSP: wire.b64(rt.sign_cert.ocsp_der),
    }
    if passthrough:
        resp_headers[wire.H_EXTRA] = wire.Extra(None, tuple(passthrough)).encode()
    if content_type:
        resp_headers["Content-Type"] = content_type
    return web.Response(status=200, body=out, headers=resp_headers)


def _verify_signed(rt: NodeRuntime, signature: bytes, ocsp_der: bytes, digest: bytes,
                   member: MemberId) -> tuple[str, bytes]:
    """Verify a peer's signature and trust in its signer; returns the signer cert hash, DER."""
    conf = rt.conf
    assert conf is not None
    rt.trust.reset_if_changed(conf)
    try:
        codec = rt.verifier.verify_signer(signature, digest)
    except SignatureError as exc:
        raise XRoadError(errors.INVALID_SIGNATURE, f"request signature: {exc}") from exc
    try:
        trusted = rt.trust.check(codec.cert, codec.cert_der, ocsp_der, member, conf.ca_certs,
                                 conf.settings.get("ocsp_freshness_seconds", 3600))
    except TrustError as exc:
        raise XRoadError(errors.INVALID_SIGNATURE, f"request signer: {exc}") from exc
    return trusted.cert_sha256, codec.cert_der


async def _call_service(
    rt: NodeRuntime, entry: ServiceEntry, headers: MessageHeaders, body: bytes,
    extra: wire.Extra,
) -> tuple[int, str | None, bytes, list[tuple[str, str]]]:
    session = rt.service_session
    assert session is not None
    if entry.type == "rest":
        url: str | URL = URL(rest_path.service_target(entry.url, headers.rest_path,
                                                 headers.rest_query), encoded=True)
        method = headers.rest_method or "GET"
    else:
        url, method = entry.url, "POST"
    out_headers = CIMultiDict(rest_headers.provider_headers(headers, extra.headers,
                                                     extra.request_id or headers.message_id))
    if headers.content_type and "Content-Type" not in out_headers:
        out_headers["Content-Type"] = headers.content_type
    try:
        async with session.request(
            method, url, data=body if body or method not in ("GET", "HEAD") else None,
            headers=out_headers, allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=entry.timeout),
        ) as resp:
            out = await read_response(resp.content, rt.config.client.max_body_bytes)
            if len(out) > rt.config.client.max_body_bytes:
                raise XRoadError(errors.SERVICE_FAILED, "provider response exceeds the size limit")
            passthrough = [(k, v) for k, v in rest_headers.filter_headers(resp.headers.items())
                           if k.lower() not in ("content-type", "content-length")]
            return resp.status, resp.headers.get("Content-Type"), out, passthrough
    except TimeoutError as exc:
        raise XRoadError(errors.SERVICE_FAILED,
                         f"service did not answer within {entry.timeout:g} s") from exc
    except aiohttp.ClientError as exc:
        raise XRoadError(errors.SERVICE_FAILED, f"service call failed: {exc}") from exc


def build_server_app(rt: NodeRuntime) -> web.Application:
    surface = Surface(errors.SERVER_SERVER_PROXY, log, lambda _request: "rest", rt)
    app = web.Application(client_max_size=rt.config.client.max_body_bytes + 1024,
                          middlewares=[error_boundary(surface)])
    app["runtime"] = rt
    app.router.add_post(wire.EXCHANGE_PATH, handle_exchange)
    return app
