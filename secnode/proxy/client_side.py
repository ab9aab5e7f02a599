"""Client side: accept a request from the member's information system and carry it across.

Flow: parse (SOAP header or REST path/headers) -> configuration current ->
the client subsystem is ours and this caller may act as it -> provider's node
resolved from the global configuration -> early policy check -> sign ->
log -> mutual TLS to the provider node (pinned auth certificate) -> verify the
signed response (binds our request digest) -> log -> answer with X-Road's
response headers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from secnode.app.runtime import NodeRuntime
from secnode.core import errors, rest, rest_headers, soap, soap_response
from secnode.core.errors import XRoadError
from secnode.core.globalconf import ConfNode
from secnode.core.message import MessageHeaders, request_digest, response_digest
from secnode.core.msgsig import SignatureError
from secnode.proxy import metaservices, wire
from secnode.proxy.boundary import Surface, error_boundary, note_message
from secnode.proxy.hooks import ExchangeEvent
from secnode.proxy.io import read_limited, read_response
from secnode.trust.own_status import require_own_sign_status
from secnode.trust.signers import TrustError
from secnode.trust.tls import peer_cert_sha256

log = logging.getLogger("secnode.client")


class Prepared:
    """A parsed client request plus what its response needs."""

    __slots__ = ("body", "headers", "rest_request", "soap_request")

    def __init__(self, headers: MessageHeaders, body: bytes,
                 soap_request: soap.SoapRequest | None = None,
                 rest_request: rest.RestRequest | None = None) -> None:
        self.headers = headers
        self.body = body
        self.soap_request = soap_request
        self.rest_request = rest_request


# ----- entry points ----------------------------------------------------------------------
async def handle_soap(request: web.Request) -> web.StreamResponse:
    rt: NodeRuntime = request.app["runtime"]
    body = await read_limited(request, rt.config.client.max_body_bytes)
    parsed = soap.parse_soap_request(body, request.headers.get("Content-Type"))
    prepared = Prepared(parsed.message_headers(request.headers.get("Content-Type")), body,
                        soap_request=parsed)
    return await _run(rt, request, prepared)


async def handle_rest(request: web.Request) -> web.StreamResponse:
    rt: NodeRuntime = request.app["runtime"]
    path, sep, query = request.raw_path.partition("?")
    parsed = rest.parse_rest_request(request.method, path, query if sep else None,
                                     list(request.headers.items()))
    body = await read_limited(request, rt.config.client.max_body_bytes)
    prepared = Prepared(parsed.message_headers(), body, rest_request=parsed)
    return await _run(rt, request, prepared)


async def handle_list_clients(request: web.Request) -> web.Response:
    rt: NodeRuntime = request.app["runtime"]
    if rt.conf is None or rt.conf.is_expired():
        raise XRoadError(errors.OUTDATED_GLOBALCONF, "global configuration is missing or expired")
    return web.json_response(metaservices.list_clients(rt.conf))


# ----- the exchange ---------------------------------------------------------------------
async def _run(rt: NodeRuntime, request: web.Request, prepared: Prepared) -> web.StreamResponse:
    """Refusals raise: the error boundary (secnode.proxy.boundary) answers and records them."""
    started = time.perf_counter()
    note_message(request, prepared.headers, prepared.body, rt.config.messagelog.bodies)
    response = await _exchange(rt, request, prepared)
    rt.count("client_requests_total")
    rt.count("client_seconds_total", time.perf_counter() - started)
    return response


def _check_caller(rt: NodeRuntime, request: web.Request, headers: MessageHeaders) -> None:
    """The client must be one of our member's subsystems, and this caller allowed to use it."""
    client = headers.client
    if client.member != rt.member:
        raise XRoadError(errors.INVALID_CLIENT_IDENTIFIER,
                         f"client {client} is not a member or subsystem served by this node "
                         f"({rt.member})", http_status=403)
    conf = rt.conf
    assert conf is not None
    if not conf.has_client(client):
        raise XRoadError(errors.UNKNOWN_MEMBER, f"client {client} is not registered in the "
                         "global configuration")
    code = getattr(client, "subsystem", "")
    rules = rt.services.whitelist.get(code, [])
    remote = request.remote or ""
    peer = peer_cert_sha256(request.transport.get_extra_info("ssl_object")
                            if request.transport else None)
    for kind, value in rules:
        if kind == "any" or (kind == "address" and value == remote) or (
            kind == "cert" and peer is not None and value == peer
        ):
            return
    raise XRoadError(errors.ACCESS_DENIED,
                     f"this information system ({remote}) may not act as {client}; "
                     "see 'secnode client allow'", http_status=403)


async def _exchange(rt: NodeRuntime, request: web.Request,
                    prepared: Prepared) -> web.StreamResponse:
    headers = prepared.headers
    conf = rt.conf
    if conf is None or conf.is_expired():
        raise XRoadError(errors.OUTDATED_GLOBALCONF,
                         "global configuration is missing or expired "
                         f"({rt.conf_error or 'stale'}); exchange is stopped until it is "
                         "refreshed")
    _check_caller(rt, request, headers)
    nodes = conf.node_for_member(headers.service.member)
    if not nodes:
        raise XRoadError(errors.UNKNOWN_MEMBER,
                         f"no node serves member {headers.service.member}")
    if not conf.has_client(headers.service.subsystem_id):
        raise XRoadError(errors.UNKNOWN_MEMBER,
                         f"subsystem {headers.service.subsystem_id} is not registered")
    verdict = await rt.decision.decide(headers, "client")
    if not verdict.allow:
        raise XRoadError(errors.ACCESS_DENIED,
                         f"policy: {verdict.reason}: {verdict.message}", http_status=403,
                         detail=verdict.reason)
    require_own_sign_status(rt, errors.CLIENT_PROXY_INTERNAL_ERROR)  # before signing
    assert rt.signer is not None and rt.sign_cert is not None and rt.sign_cert.ocsp_der
    body_sha = hashlib.sha256(prepared.body).digest()
    digest = request_digest(headers, body_sha)
    signature = rt.signer.sign(digest)
    ocsp_der = rt.sign_cert.ocsp_der
    await rt.sink.record(ExchangeEvent(
        "request_out", headers, body_sha, digest, signature, rt.signer.codec.cert_sha256,
        hashlib.sha256(ocsp_der).hexdigest(), "allow", verdict.reason, body=prepared.body,
        log_body=rt.config.messagelog.bodies,
        signer_cert_der=rt.signer.codec.cert_der, ocsp_der=ocsp_der,
    ))
    extra = wire.Extra.for_request(prepared.rest_request)
    status, meta, out, resp_sig, resp_ocsp, resp_extra = await _send(
        rt, nodes, headers, prepared.body, signature, ocsp_der, extra)
    if resp_sig is None:  # an error the provider node answered (unsigned X-Road error)
        await rt.sink.record(ExchangeEvent(
            "refusal", headers, hashlib.sha256(out).digest(), decision="deny",
            reason=f"provider node: {out[:300].decode('utf-8', 'replace')}", status=status,
            body=out, log_body=rt.config.messagelog.bodies,
        ))
        return _passthrough_error(status, meta, out, headers)
    assert meta is not None and resp_ocsp is not None
    out_sha = hashlib.sha256(out).digest()
    resp_digest = response_digest(headers, digest, meta.status, meta.content_type, out_sha,
                                  meta.policy)
    try:
        codec = rt.verifier.verify_signer(resp_sig, resp_digest)
        rt.trust.reset_if_changed(conf)
        rt.trust.check(codec.cert, codec.cert_der, resp_ocsp, headers.service.member,
                       conf.ca_certs, conf.settings.get("ocsp_freshness_seconds", 3600))
    except (SignatureError, TrustError) as exc:
        raise XRoadError(errors.INVALID_SIGNATURE,
                         f"response signature from the provider node: {exc}", http_status=502
                         ) from exc
    if prepared.soap_request is not None:
        soap_response.check_soap_response(out, prepared.soap_request, prepared.body)
    await rt.sink.record(ExchangeEvent(
        "response_in", headers, out_sha, resp_digest, resp_sig, codec.cert_sha256,
        hashlib.sha256(resp_ocsp).hexdigest(), "allow", _statement_ref(meta.policy),
        status=meta.status, body=out,
        log_body=rt.config.messagelog.bodies, extra={"request_digest": digest.hex()},
        signer_cert_der=codec.cert_der, ocsp_der=resp_ocsp,
    ))
    await rt.decision.on_response(headers, verdict, meta.status, out, meta.policy)
    resp_headers = CIMultiDict()
    if meta.content_type:
        resp_headers["Content-Type"] = meta.content_type
    if prepared.rest_request is not None:
        req = prepared.rest_request
        request_hash = req.request_hash(hashlib.sha512(prepared.body).digest()
                                        if prepared.body else None)
        for name, value in rest_headers.client_response_headers(resp_extra.headers, headers,
                                                        req.request_id, request_hash):
            resp_headers.add(name, value)
    return web.Response(status=meta.status, body=out, headers=resp_headers)


def _statement_ref(statement: str | None) -> str:
    """The provider's policy statement as the log record names it (its SHA-256)."""
    if statement is None:
        return ""
    return "policy statement sha256:" + hashlib.sha256(statement.encode("utf-8")).hexdigest()


def _passthrough_error(status: int, meta: wire.ResponseMeta | None, out: bytes,
                       headers: MessageHeaders) -> web.Response:
    """The provider node refused: hand its X-Road error to the client as it came."""
    del meta
    ctype = "text/xml; charset=utf-8" if headers.protocol == "soap" else \
        "application/json; charset=utf-8"
    code = ""
    if headers.protocol == "rest":
        try:
            code = str(json.loads(out).get("type", ""))
        except (ValueError, AttributeError):
            code = errors.SERVICE_FAILED
    resp = web.Response(status=status, body=out, content_type=None,
                        headers={"Content-Type": ctype})
    if code:
        resp.headers[errors.ERROR_HEADER] = code
    return resp


async def _send(
    rt: NodeRuntime, nodes: list[ConfNode], headers: MessageHeaders, body: bytes, signature: bytes,
    ocsp_der: bytes, extra: wire.Extra,
) -> tuple[int, wire.ResponseMeta | None, bytes, bytes | None, bytes | None, wire.Extra]:
    """POST to the first reachable provider node; check its pinned auth certificate."""
    session = rt.peer_session
    if session is None:
        raise XRoadError(errors.CLIENT_PROXY_INTERNAL_ERROR,
                         "node-to-node TLS is not configured (no auth certificate)")
    out_headers = {
        wire.H_VERSION: wire.WIRE_VERSION,
        wire.H_MESSAGE: wire.encode_headers(headers),
        wire.H_SIGNATURE: wire.b64(signature),
        wire.H_OCSP: wire.b64(ocsp_der),
        wire.H_EXTRA: extra.encode(),
        "Content-Type": headers.content_type or "application/octet-stream",
    }
    last_error = "no provider node"
    limit = rt.config.client.max_body_bytes
    for node in nodes:
        url = f"https://{node.address}{wire.EXCHANGE_PATH}"
        try:
            async with session.post(url, data=body, headers=out_headers, ssl=rt.peer_ssl(node),
                                    timeout=aiohttp.ClientTimeout(total=120, connect=10)) as resp:
                out = await read_response(resp.content, limit)
                if len(out) > limit:
                    raise XRoadError(errors.MESSAGE_TOO_LARGE,
                                     "provider response exceeds the size limit", http_status=502)
                if errors.ERROR_HEADER in resp.headers and wire.H_SIGNATURE not in resp.headers:
                    return resp.status, None, out, None, None, wire.Extra()
                meta = wire.ResponseMeta.decode(resp.headers.get(wire.H_RESPONSE))
                sig = wire.unb64(resp.headers.get(wire.H_SIGNATURE), wire.H_SIGNATURE)
                ocsp_der = wire.unb64(resp.headers.get(wire.H_OCSP), wire.H_OCSP)
                resp_extra = wire.Extra.decode(resp.headers.get(wire.H_EXTRA))
                return resp.status, meta, out, sig, ocsp_der, resp_extra
        except XRoadError:
            raise
        except wire.WireError as exc:
            raise XRoadError(errors.INVALID_SIGNATURE,
                             f"malformed response from {node.address}: {exc}",
                             http_status=502) from exc
        except aiohttp.ClientSSLError as exc:
            last_error = (f"{node.address}: TLS handshake failed; the node did not present "
                          f"the auth certificate registered for {node.id} ({exc})")
            log.warning("provider node %s: %s", node.id, last_error)
            continue
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            last_error = f"{node.address}: {exc.__class__.__name__}: {exc}"
            log.warning("provider node %s unreachable: %s", node.id, last_error)
            continue
    raise XRoadError(errors.CLIENT_PROXY_NETWORK_ERROR,
                     f"could not reach a node of {headers.service.member} ({last_error})",
                     http_status=502)


def _protocol_by_path(request: web.Request) -> str:
    """Before the message is parsed: SOAP is POSTed to ``/``, everything else is REST."""
    return "soap" if request.path == "/" else "rest"


def build_client_app(rt: NodeRuntime) -> web.Application:
    surface = Surface(errors.SERVER_CLIENT_PROXY, log, _protocol_by_path, rt)
    app = web.Application(client_max_size=rt.config.client.max_body_bytes + 1024,
                          middlewares=[error_boundary(surface)])
    app["runtime"] = rt
    app.router.add_get("/listClients", handle_list_clients)
    app.router.add_route("*", "/r1/{tail:.*}", handle_rest)
    app.router.add_post("/", handle_soap)
    return app
