"""Evidence download on the client interface: X-Road's ``GET /asic?queryId=...``.

An information system that made an exchange fetches the proof of it from its own node,
as X-Road's ``/asic`` lets it (UG-SIGDOC): the query names the message (``queryId``) and
the client (``xRoadInstance``, ``memberClass``, ``memberCode``, ``subsystemCode``). The
answer is not an ASiC container but secnode's evidence bundle (``docs/protocol.md`` §7):
one file with the signed log records of that message, their hash-chain links, Merkle
proofs, time-stamps and OCSP responses, signed by the node; ``secnode log verify FILE``
checks it offline.

Only the client that made the exchange may fetch it: the caller must be allowed to act as
that client exactly as for an exchange (``secnode client allow``: address, or registered
IS certificate over HTTPS), and the records must be that client's. Anything else is
refused with an X-Road error, logged by the client interface's error boundary.

The bundle is written to a file in the node's spool directory (its bodies streamed from
their body files or archives), read back the same way, and sent from that file a piece at
a time; the file is removed as soon as it is open, so a 100 MiB-body exchange costs a few
MiB of memory to download, and no file is left behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from aiohttp import web

from secnode.core import errors, faults
from secnode.core.errors import XRoadError
from secnode.core.identifiers import ClientId, IdentifierError, MemberId, SubsystemId
from secnode.core.messagelog import LogRecord
from secnode.messagelog import evidence
from secnode.messagelog.sink import MessageLog
from secnode.proxy import client_side
from secnode.proxy.access import caller_allowed
from secnode.proxy.exchange import RUNTIME, spool_dir
from secnode.proxy.spool import READ_PIECE
from secnode.trust.tls import peer_cert_sha256

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime

log = logging.getLogger("secnode.asic")
PATH = "/asic"
BUNDLE_TYPE = "application/vnd.secnode.evidence-bundle"
#: Which of the client node's records ``type`` (or X-Road's requestOnly / responseOnly) keeps.
_DIRECTIONS = {"request": {"request_out"}, "response": {"response_in"}}


def _flag(request: web.Request, name: str) -> bool:
    """X-Road's flags are bare (``&unique``) or valued (``&unique=true``)."""
    value = request.query.get(name)
    return value is not None and value.lower() not in ("false", "0", "no")


def _client_of(request: web.Request) -> ClientId:
    q = request.query
    parts = [q.get(k, "") for k in ("xRoadInstance", "memberClass", "memberCode")]
    if not all(parts):
        raise XRoadError(
            errors.BAD_REQUEST,
            "the client is named by xRoadInstance, memberClass, memberCode [, subsystemCode]",
        )
    try:
        member = MemberId(*parts)
        sub = q.get("subsystemCode")
        return SubsystemId.of(member, sub) if sub else member
    except IdentifierError as exc:
        raise XRoadError(errors.INVALID_CLIENT_IDENTIFIER, str(exc)) from None


def _kind(request: web.Request) -> str | None:
    kind = request.query.get("type")
    if kind is None:
        only = [k for k in ("request", "response") if _flag(request, f"{k}Only")]
        if len(only) > 1:
            raise XRoadError(errors.BAD_REQUEST, "requestOnly and responseOnly exclude each other")
        return only[0] if only else None
    if kind not in _DIRECTIONS:
        raise XRoadError(errors.BAD_REQUEST, f"type must be request or response, not {kind!r}")
    return kind


def _check_caller(rt: NodeRuntime, request: web.Request, client: ClientId) -> None:
    """The same rule as an exchange: our member's client, and this caller may act as it."""
    if client.member != rt.member:
        raise XRoadError(
            errors.INVALID_CLIENT_IDENTIFIER,
            f"client {client} is not served by this node ({rt.member})",
            http_status=403,
        )
    rules = rt.services.whitelist.get(getattr(client, "subsystem", ""), [])
    remote = request.remote or ""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    peer = peer_cert_sha256(ssl_object)
    if caller_allowed(rules, remote, peer):
        return
    if any(kind == "cert" for kind, _ in rules):  # as the client interface: X-Road's IS check
        shown = "no TLS client certificate" if peer is None else f"TLS certificate {peer}"
        raise XRoadError(
            errors.CLIENT_PROXY_SSL_AUTH_FAILED,
            f"this information system ({remote}, {shown}) may not act as {client}: "
            "its certificate is not registered for it (see 'secnode client allow --cert')",
            http_status=403,
        )
    raise XRoadError(
        errors.ACCESS_DENIED,
        f"this information system ({remote}) may not act as {client}; see 'secnode client allow'",
        http_status=403,
    )


def _select(
    records: list[LogRecord], query_id: str, client: ClientId, kind: str | None, unique: bool
) -> list[LogRecord]:
    """The client's own records of ``query_id``; refusals name what is wrong."""
    if not records:
        raise XRoadError(
            errors.BAD_REQUEST, f"no message with queryId {query_id!r} in the log", http_status=404
        )
    own = [r for r in records if r.client_id == str(client)]
    if not own:
        raise XRoadError(
            errors.ACCESS_DENIED,
            f"message {query_id!r} is not an exchange of {client}: only its client may fetch it",
            http_status=403,
        )
    if unique and sum(r.direction == "request_out" for r in own) > 1:
        raise XRoadError(
            errors.BAD_REQUEST,
            f"more than one message with queryId {query_id!r} (unique was asked)",
            http_status=409,
        )
    if kind is not None:
        own = [r for r in own if r.direction in _DIRECTIONS[kind]]
        if not own:
            raise XRoadError(
                errors.BAD_REQUEST, f"message {query_id!r} has no {kind} record", http_status=404
            )
    return own


async def handle_asic(request: web.Request) -> web.StreamResponse:
    """Refusals answer with their own status (404 unknown queryId, 403 not the caller's, 409
    not stamped yet: this is not the REST message protocol, whose errors are 400/500 only) and
    the X-Road error body; each is logged with its reason."""
    try:
        return await _asic(request)
    except XRoadError as exc:
        err = exc.at_side(errors.SERVER_CLIENT_PROXY)
        log.warning(
            "evidence download refused to %s (%s, detail %s): %s",
            request.remote, err.code, err.detail, err.message,
        )  # fmt: skip
        return web.Response(status=err.http_status, body=faults.rest_body(err),
                            headers=faults.rest_headers(err))  # fmt: skip


async def _asic(request: web.Request) -> web.StreamResponse:
    rt: NodeRuntime = request.app[RUNTIME]
    query_id = request.query.get("queryId", "").strip()
    if not query_id:
        raise XRoadError(errors.BAD_REQUEST, "queryId is missing")
    client = _client_of(request)
    kind, unique, force = _kind(request), _flag(request, "unique"), _flag(request, "force")
    _check_caller(rt, request, client)
    sink = rt.sink
    if not isinstance(sink, MessageLog):
        raise XRoadError(errors.BAD_REQUEST, "this node keeps no message log", http_status=404)
    node_log = evidence.NodeLog(rt.node, sink.engine)  # the running log's engine: not closed

    def find() -> list[LogRecord]:
        return evidence.exchange_records(node_log, query_id, str(client.member))

    records = _select(await asyncio.to_thread(find), query_id, client, kind, unique)
    directory = spool_dir(rt)  # "body-" files: a crash's leftover is swept at the next start
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"body-evidence-{secrets.token_hex(8)}.zip"
    try:
        made = await _made(node_log, records, rt, query_id, client, path)
        if made.unstamped and force:  # X-Road's force: time-stamp what is missing now
            await sink.stamper.run_round()
            made = await _made(node_log, records, rt, query_id, client, path)
        if made.unstamped:
            why = (
                "time-stamping failed (see /health)"
                if force
                else "retry after the next time-stamping round, or add &force to stamp them now"
            )
            raise XRoadError(
                errors.BAD_REQUEST,
                f"{len(made.unstamped)} record(s) of {query_id!r} are not time-stamped yet; {why}",
                http_status=409,
            )
        fh = await asyncio.to_thread(open, path, "rb")
    finally:
        path.unlink(missing_ok=True)  # an open file stays readable until it is closed
    with fh:
        log.info(
            "evidence of %s (%d records, sha256 %s) sent to %s for %s",
            query_id, len(records), made.sha256, request.remote, client,
        )  # fmt: skip
        return await _send(request, fh, made.suggested_name)


async def _made(
    node_log: evidence.NodeLog,
    records: list[LogRecord],
    rt: NodeRuntime,
    query_id: str,
    client: ClientId,
    path: Path,
) -> evidence.Bundle:
    """The bundle written to ``path`` in a worker thread (its bodies streamed, not held)."""
    return await asyncio.to_thread(
        evidence.exchange_bundle, node_log, records, rt.passphrase, query_id, str(client), path
    )


async def _send(request: web.Request, fh: BinaryIO, filename: str) -> web.StreamResponse:
    """Stream the bundle file a piece at a time (it can hold bodies of 100 MiB and more)."""
    size = os.fstat(fh.fileno()).st_size
    resp = web.StreamResponse(
        headers={
            "Content-Type": BUNDLE_TYPE,
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
    )
    resp.content_length = size
    await resp.prepare(request)
    try:
        while piece := await asyncio.to_thread(fh.read, READ_PIECE):
            await resp.write(piece)
        await resp.write_eof()
    except ConnectionError as exc:  # the caller went away
        log.info("evidence download to %s not completed: %s", request.remote, exc)
    return resp


def build_client_app(rt: NodeRuntime) -> web.Application:
    """The client interface (:func:`secnode.proxy.client_side.build_client_app`, the message
    path) with ``/asic`` added: the proxy package may not reach the message log's database."""
    app = client_side.build_client_app(rt)
    app.router.add_get(PATH, handle_asic)
    return app
