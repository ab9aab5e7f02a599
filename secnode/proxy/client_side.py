"""Client side: accept a request from the member's information system and carry it across.

The exchange is a list of named steps (:func:`_exchange`), each raising its refusal:
parse (SOAP header or REST path/headers) -> configuration current -> the client
subsystem is ours and this caller may act as it -> provider's node resolved from
the global configuration -> early policy check -> sign and log -> mutual TLS to the
provider node (pinned auth certificate) -> verify the signed response (binds our
request digest) and log it -> answer with X-Road's response headers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from secnode.core import errors, faults, rest, rest_headers, soap, soap_mime, soap_response
from secnode.core.errors import XRoadError
from secnode.core.globalconf import ConfNode
from secnode.core.identifiers import NodeId
from secnode.core.message import Body, MessageHeaders, request_digest, response_digest
from secnode.core.msgsig import SignatureError, SignerCodec
from secnode.core.witness import RequestWitness, request_witness_digest
from secnode.proxy import metaservices, wire
from secnode.proxy.access import caller_allowed
from secnode.proxy.boundary import Surface, error_boundary, note_message
from secnode.proxy.budget import budget_middleware, lease_of
from secnode.proxy.exchange import RUNTIME, Exchange, decide, sign, spool_dir
from secnode.proxy.hooks import Signed
from secnode.proxy.io import (
    admit_parse,
    parse_bytes,
    read_limited,
    read_response_chunks,
    send_response,
    sha256_of,
)
from secnode.proxy.peer_client import (
    MalformedResponse,
    PeerConnectionError,
    PeerError,
    PeerResponse,
    PeerTLSError,
)
from secnode.proxy.spool import Payload, Spool
from secnode.trust.signers import TrustError
from secnode.trust.tls import peer_cert_sha256

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime

log = logging.getLogger("secnode.client")


@dataclass
class ClientExchange(Exchange):
    """A request of one of our member's information systems, on its way to a provider."""

    soap_request: soap.SoapRequest | None = None
    soap_message: soap_mime.SoapMessage | None = None
    """Where the SOAP part is (the whole body, or the root part of a multipart message)."""
    rest_request: rest.RestRequest | None = None
    nodes: list[ConfNode] = field(default_factory=list)
    """The provider's nodes, in the order to try them (set by :func:`_resolve_provider`)."""
    witness: RequestWitness | None = None
    """Our ``request_out`` position, signed, for the provider node's log (None: no log)."""


@dataclass(frozen=True)
class ProviderReply:
    """A provider node's signed response: body, metadata (status and content type are in
    ``meta``), signature, the signer's OCSP staple, the unsigned extras."""

    body: Spool
    meta: wire.ResponseMeta
    signature: bytes
    ocsp_der: bytes
    extra: wire.Extra


@dataclass(frozen=True)
class ProviderRefusal:
    """A provider node's refusal: an unsigned X-Road error, handed to the client as it came."""

    status: int
    body: Body


# ----- entry points ----------------------------------------------------------------------
async def handle_soap(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    body = await read_limited(request, rt.config.client.max_body_bytes, spool_dir(rt))
    # lxml's SOAP parser takes bytes: one transient copy, for SOAP only, bounded (with its
    # attachments: the multipart message is split in memory)
    whole = await admit_parse(request, body, rt.config.client.max_parse_bytes, "SOAP message")
    content_type = request.headers.get("Content-Type")
    message = soap_mime.split(whole, content_type)  # SwA / MTOM: the root part (pr-mess §2.4)
    del whole
    parsed = soap.parse_soap_request(message.soap, message.soap_content_type)
    headers = parsed.message_headers(content_type)
    return await _run(rt, request, headers, body, soap_request=parsed, soap_message=message)


async def handle_soap_get(request: web.Request) -> web.StreamResponse:
    """X-Road answers anything but POST on its SOAP endpoint with a fault (the
    WrongHttpMethod case); so do we, instead of aiohttp's 405 page."""
    raise XRoadError(
        errors.INVALID_HTTP_METHOD, f"Must use POST request method instead of {request.method}"
    )


async def handle_rest(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    path, sep, query = request.raw_path.partition("?")
    parsed = rest.parse_rest_request(
        request.method, path, query if sep else None, list(request.headers.items())
    )
    headers = parsed.message_headers()
    note_message(request, headers)  # a Busy refusal while the body waits is recorded
    body = await read_limited(request, rt.config.client.max_body_bytes, spool_dir(rt), sha512=True)
    return await _run(rt, request, headers, body, rest_request=parsed)


async def handle_list_clients(request: web.Request) -> web.Response:
    """X-Road answers ``text/xml`` (clientList) unless the client accepts JSON only."""
    rt = request.app[RUNTIME]
    if rt.conf is None or rt.conf.is_expired():
        raise XRoadError(errors.OUTDATED_GLOBALCONF, "global configuration is missing or expired")
    instance = request.query.get("xRoadInstance") or None
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(metaservices.list_clients(rt.conf, instance))
    return web.Response(
        body=metaservices.list_clients_xml(rt.conf, instance),
        headers={"Content-Type": "text/xml; charset=utf-8"},
    )


# ----- the exchange ---------------------------------------------------------------------
async def _run(
    rt: NodeRuntime,
    request: web.Request,
    headers: MessageHeaders,
    body: Spool,
    *,
    soap_request: soap.SoapRequest | None = None,
    soap_message: soap_mime.SoapMessage | None = None,
    rest_request: rest.RestRequest | None = None,
) -> web.StreamResponse:
    """Refusals raise: the error boundary (secnode.proxy.boundary) answers and records them."""
    ex = ClientExchange(
        rt,
        request,
        headers,
        body,
        log_body=rt.config.messagelog.bodies,
        soap_request=soap_request,
        soap_message=soap_message,
        rest_request=rest_request,
    )
    note_message(request, headers, body, ex.log_body)
    response = await _exchange(ex)
    return response


async def _exchange(ex: ClientExchange) -> web.StreamResponse:
    """The client node's steps, in order; the first refusal ends the exchange."""
    _check_configuration(ex)
    _check_caller(ex)
    _resolve_provider(ex)
    await decide(ex, "client", http_status=403)
    await _sign_and_log(ex)
    reply = await _send(ex)
    if isinstance(reply, ProviderRefusal):
        return await _pass_refusal(ex, reply)
    await _verify_response(ex, reply)
    return await _answer(ex, reply)


def _check_configuration(ex: ClientExchange) -> None:
    """No exchange without a current global configuration (it says whom to trust)."""
    conf = ex.rt.conf
    if conf is None or conf.is_expired():
        raise XRoadError(
            errors.OUTDATED_GLOBALCONF,
            "global configuration is missing or expired "
            f"({ex.rt.conf_error or 'stale'}); exchange is stopped until it is "
            "refreshed",
        )
    ex.global_conf = conf


def _check_caller(ex: ClientExchange) -> None:
    """The client must be one of our member's subsystems, and this caller allowed to use it."""
    rt, client, request = ex.rt, ex.client, ex.http
    if not ex.conf.has_client(client):  # X-Road's UnknownMember case, before "is it ours"
        raise XRoadError(
            errors.UNKNOWN_MEMBER, f"client {client} is not registered in the global configuration"
        )
    if client.member != rt.member:
        raise XRoadError(
            errors.INVALID_CLIENT_IDENTIFIER,
            f"client {client} is not a member or subsystem served by this node ({rt.member})",
            http_status=403,
        )
    rules = rt.services.whitelist.get(getattr(client, "subsystem", ""), [])
    remote = request.remote or ""
    peer = peer_cert_sha256(
        request.transport.get_extra_info("ssl_object") if request.transport else None
    )
    if caller_allowed(rules, remote, peer):
        return
    if any(kind == "cert" for kind, _ in rules):  # X-Road: the IS certificate check failed
        shown = "no TLS client certificate" if peer is None else f"TLS certificate {peer}"
        raise XRoadError(
            errors.CLIENT_PROXY_SSL_AUTH_FAILED,
            f"this information system ({remote}, {shown}) may not act as {client}: "
            "its certificate is not registered for it (see 'secnode client allow --cert')",
        )
    raise XRoadError(
        errors.ACCESS_DENIED,
        f"this information system ({remote}) may not act as {client}; see 'secnode client allow'",
        http_status=403,
    )


def _resolve_provider(ex: ClientExchange) -> None:
    """The provider's nodes from the global configuration; its subsystem (or, for a member's
    own service, the member) must be registered."""
    service = ex.service
    nodes = ex.conf.node_for_member(service.member)
    if not nodes:
        raise XRoadError(errors.UNKNOWN_MEMBER, f"no node serves member {service.member}")
    if not ex.conf.has_client(service.provider):
        what = "member" if service.is_member_level else "subsystem"
        raise XRoadError(errors.UNKNOWN_MEMBER, f"{what} {service.provider} is not registered")
    target = _target_server(ex)
    if target is not None:  # the client named the provider's node (securityServer header)
        nodes = [n for n in nodes if n.id == target]
        if not nodes:
            raise XRoadError(
                errors.INVALID_SECURITY_SERVER,
                f"security server {target} is not a node of {service.member} "
                "in the global configuration",
            )
    ex.nodes = nodes


def _target_server(ex: ClientExchange) -> NodeId | None:
    """The node named by SOAP ``securityServer`` or REST ``X-Road-Security-Server``."""
    if ex.soap_request is not None:
        return ex.soap_request.security_server
    if ex.rest_request is not None:
        return ex.rest_request.security_server
    return None


async def _sign_and_log(ex: ClientExchange) -> None:
    """Sign the request digest (headers and body) and log it before it leaves the node."""
    ex.body_sha256 = sha256_of(ex.body)
    ex.request = sign(
        ex, request_digest(ex.headers, ex.body_sha256), errors.CLIENT_PROXY_INTERNAL_ERROR
    )
    position = await ex.log(
        "request_out", ex.body, ex.request, body_sha256=ex.body_sha256, reason=ex.decision.reason
    )
    if position is not None:  # its hash exists only now: signed on its own (protocol.md §4.1)
        assert ex.signer is not None  # the request's signer: the key may be renewed meanwhile
        witness_digest = request_witness_digest(ex.request.digest, position)
        ex.witness = RequestWitness(position, ex.signer.sign_raw(witness_digest))


async def _pass_refusal(ex: ClientExchange, reply: ProviderRefusal) -> web.Response:
    """Log the provider node's refusal, and hand its X-Road error to the client as it came."""
    await ex.log(
        "refusal",
        reply.body,
        reason=f"provider node: {reply.body[:300].decode('utf-8', 'replace')}",
        status=reply.status,
    )
    return _passthrough_error(reply.status, reply.body, ex.headers, ex.http.headers.get("Accept"))


async def _verify_response(ex: ClientExchange, reply: ProviderReply) -> None:
    """The response must be signed by the provider member over our request digest; log it,
    and let the policy point record the receipt."""
    meta, out = reply.meta, reply.body
    if meta.witness is None and ex.rt.config.messagelog.enabled:
        raise XRoadError(
            errors.INVALID_SIGNATURE,
            "the provider node's response carries no log position (witness): it keeps no "
            "message log or predates log witnessing; this node requires it",
            http_status=502,
        )
    out_sha = out.sha256
    request = ex.signed_request
    digest = response_digest(
        ex.headers,
        request.digest,
        meta.status,
        meta.content_type,
        out_sha,
        meta.policy,
        meta.witness,
    )
    codec = _verify_provider_signature(ex, reply, digest)
    ex.response = Signed(digest, reply.signature, codec.cert_der, codec.cert_sha256, reply.ocsp_der)
    if ex.soap_request is not None:
        assert ex.soap_message is not None
        # lxml's SOAP checks take bytes: one transient copy, for SOAP only, bounded. requestHash
        # is over the SOAP part the client sent (the root part of a multipart request).
        limit = ex.rt.config.client.max_parse_bytes
        response = soap_mime.split(
            parse_bytes(out, limit, "SOAP response", lease_of(ex.http)),
            meta.content_type,
            errors.INCONSISTENT_RESPONSE,
        )
        soap_response.check_soap_response(response.soap, ex.soap_request, ex.soap_message.soap)
    await ex.log(
        "response_in",
        out,
        ex.response,
        body_sha256=out_sha,
        reason=_statement_ref(meta.policy),
        status=meta.status,
        extra={"request_digest": request.digest.hex()},
        witness=None if meta.witness is None else meta.witness.encode(),
    )
    # The receipt is about the provider's statement; a spooled body is not read for it.
    seen = out.data() if out.in_memory else b""
    await ex.rt.decision.on_response(ex.headers, ex.decision, meta.status, seen, meta.policy)


def _verify_provider_signature(
    ex: ClientExchange, reply: ProviderReply, digest: bytes
) -> SignerCodec:
    """The signature verifies, and its signer is trusted for the provider member."""
    rt, conf = ex.rt, ex.conf
    try:
        codec = rt.verifier.verify_signer(reply.signature, digest)
        rt.trust.reset_if_changed(conf)
        rt.trust.check(
            codec.cert,
            codec.cert_der,
            reply.ocsp_der,
            ex.service.member,
            conf.ca_certs,
            conf.settings.get("ocsp_freshness_seconds", 3600),
        )
    except (SignatureError, TrustError) as exc:
        raise XRoadError(
            errors.INVALID_SIGNATURE,
            f"response signature from the provider node: {exc}",
            http_status=502,
        ) from exc
    return codec


async def _answer(ex: ClientExchange, reply: ProviderReply) -> web.StreamResponse:
    """The provider's response with X-Road's response headers (REST: request id and hash),
    written while the exchange holds its in-flight bytes."""
    resp_headers: CIMultiDict[str] = CIMultiDict()
    if reply.meta.content_type:
        resp_headers["Content-Type"] = reply.meta.content_type
    req = ex.rest_request
    if req is not None:
        request_hash = req.request_hash(_sha512(ex.body) if len(ex.body) else None)
        for name, value in rest_headers.client_response_headers(
            reply.extra.headers, ex.headers, req.request_id, request_hash
        ):
            resp_headers.add(name, value)
    return await send_response(ex.http, reply.meta.status, reply.body, resp_headers)


def _sha512(body: Payload) -> bytes:
    """SHA-512 of the request body (X-Road's request hash): computed while it streamed."""
    if isinstance(body, Spool) and body.sha512 is not None:
        return body.sha512
    return hashlib.sha512(parse_bytes(body, len(body), "request body")).digest()


def _statement_ref(statement: str | None) -> str:
    """The provider's policy statement as the log record names it (its SHA-256)."""
    if statement is None:
        return ""
    return "policy statement sha256:" + hashlib.sha256(statement.encode("utf-8")).hexdigest()


def _passthrough_error(
    status: int, out: Body, headers: MessageHeaders, accept: str | None = None
) -> web.Response:
    """The provider node refused: hand its X-Road error to the client as it came (as XML
    when the REST client asked for XML)."""
    if headers.protocol == "rest" and faults.wants_xml(accept):
        try:
            doc = json.loads(out)
            err = XRoadError(str(doc["type"]), str(doc["message"]), detail=str(doc["detail"]))
        except (ValueError, KeyError, TypeError):
            err = XRoadError(errors.SERVICE_FAILED, "the provider node's error is malformed")
        status, xml_headers, body = faults.rest_response(err, xml=True)
        return web.Response(status=status, body=body, headers=xml_headers)
    ctype = (
        "text/xml; charset=utf-8"
        if headers.protocol == "soap"
        else "application/json; charset=utf-8"
    )
    code = ""
    if headers.protocol == "rest":
        try:
            code = str(json.loads(out).get("type", ""))
        except (ValueError, AttributeError):
            code = errors.SERVICE_FAILED
    resp = web.Response(status=status, body=out, content_type=None, headers={"Content-Type": ctype})
    if code:
        resp.headers[errors.ERROR_HEADER] = code
    return resp


# ----- to the provider node ---------------------------------------------------------------
async def _send(ex: ClientExchange) -> ProviderReply | ProviderRefusal:
    """POST to the first reachable provider node; check its pinned auth certificate."""
    rt = ex.rt
    client = rt.peer_client
    if client is None:
        raise XRoadError(
            errors.CLIENT_PROXY_INTERNAL_ERROR,
            "node-to-node TLS is not configured (no auth certificate)",
        )
    out_headers = _wire_headers(ex)
    limit = rt.config.client.max_body_bytes
    last_error = "no provider node"
    for node in ex.nodes:
        try:
            host, port = _host_port(node.address)
            async with client.post(
                host,
                port,
                rt.peer_ssl(node),
                wire.EXCHANGE_PATH,
                out_headers.items(),
                ex.body,
                body_limit=limit,
            ) as resp:
                return await _read_reply(ex, resp)
        except XRoadError:
            raise
        except (wire.WireError, MalformedResponse) as exc:
            raise XRoadError(
                errors.INVALID_SIGNATURE,
                f"malformed response from {node.address}: {exc}",
                http_status=502,
            ) from exc
        except PeerTLSError as exc:
            last_error = (
                f"{node.address}: TLS handshake failed; the node did not present "
                f"the auth certificate registered for {node.id} ({exc})"
            )
            log.warning("provider node %s: %s", node.id, last_error)
            continue
        except (TimeoutError, PeerError, OSError) as exc:
            last_error = f"{node.address}: {exc.__class__.__name__}: {exc}"
            log.warning("provider node %s unreachable: %s", node.id, last_error)
            continue
    raise XRoadError(
        errors.CLIENT_PROXY_NETWORK_ERROR,
        f"could not reach a node of {ex.service.member} ({last_error})",
        http_status=502,
    )


def _host_port(address: str) -> tuple[str, int]:
    """A node's ``address`` from the global configuration (``host[:port]``, 443 by default)."""
    url = URL(f"https://{address}")
    if url.host is None or url.port is None or url.path not in ("", "/"):
        raise PeerConnectionError(f"not a host[:port] address: {address!r}")
    return url.host, url.port


def _wire_headers(ex: ClientExchange) -> dict[str, str]:
    """The signed request's metadata as node-to-node headers (docs/protocol.md)."""
    request = ex.signed_request
    headers = {
        wire.H_VERSION: wire.WIRE_VERSION,
        wire.H_MESSAGE: wire.encode_headers(ex.headers),
        wire.H_SIGNATURE: wire.b64(request.signature),
        wire.H_OCSP: wire.b64(request.ocsp_der),
        wire.H_EXTRA: _extra(ex).encode(),
        "Content-Type": ex.headers.content_type or "application/octet-stream",
        "Content-Length": str(len(ex.body)),
    }
    if ex.witness is not None:
        headers[wire.H_WITNESS] = wire.encode_witness(ex.witness)
    return headers


def _extra(ex: ClientExchange) -> wire.Extra:
    """REST: the passthrough headers; SOAP: the client's ``SOAPAction`` (X-Road forwards it)."""
    if ex.rest_request is not None:
        return wire.Extra.for_request(ex.rest_request)
    action = ex.http.headers.get("SOAPAction")
    if action is None or not wire.header_value_ok(action):
        return wire.Extra()
    return wire.Extra(None, (("SOAPAction", action),))


async def _read_reply(ex: ClientExchange, resp: PeerResponse) -> ProviderReply | ProviderRefusal:
    """The provider node's answer; malformed metadata is a :class:`wire.WireError`."""
    limit = ex.rt.config.client.max_body_bytes
    out = await read_response_chunks(
        ex.http, resp.chunks(), limit, spool_dir(ex.rt), resp.content_length
    )
    if len(out) > limit:
        raise XRoadError(
            errors.MESSAGE_TOO_LARGE, "provider response exceeds the size limit", http_status=502
        )
    if errors.ERROR_HEADER in resp.headers and wire.H_SIGNATURE not in resp.headers:
        # an X-Road error is small; a huge one is refused rather than read in
        limit = ex.rt.config.client.max_parse_bytes
        error = parse_bytes(out, limit, "provider node's error", lease_of(ex.http))
        return ProviderRefusal(resp.status, error)
    return ProviderReply(
        out,
        wire.ResponseMeta.decode(resp.headers.get(wire.H_RESPONSE)),
        wire.unb64(resp.headers.get(wire.H_SIGNATURE), wire.H_SIGNATURE),
        wire.unb64(resp.headers.get(wire.H_OCSP), wire.H_OCSP),
        wire.Extra.decode(resp.headers.get(wire.H_EXTRA)),
    )


def _protocol_by_path(request: web.Request) -> str:
    """Before the message is parsed: SOAP is POSTed to ``/``, everything else is REST."""
    return "soap" if request.path == "/" else "rest"


def build_client_app(rt: NodeRuntime) -> web.Application:
    surface = Surface(errors.SERVER_CLIENT_PROXY, log, _protocol_by_path, rt)
    app = web.Application(
        client_max_size=rt.config.client.max_body_bytes + 1024,
        middlewares=[error_boundary(surface), budget_middleware(rt.budget, rt.spool_budget)],
    )
    app[RUNTIME] = rt
    app.router.add_get("/listClients", handle_list_clients)
    app.router.add_route("*", "/r1/{tail:.*}", handle_rest)
    app.router.add_post("/", handle_soap)
    app.router.add_route("*", "/", handle_soap_get)
    return app
