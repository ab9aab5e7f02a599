"""HTTP front of the TSA (RFC 3161 §3.4): POST a timestamp-query, get a timestamp-reply.

Any path accepts the POST, so ``http://host:port/`` and ``http://host:port/tsa``
both work as the TSA URL in the global configuration. A request the TSA
refuses still gets HTTP 200 with a ``rejection`` TimeStampResp (that is the
protocol's error channel); only a wrong content type (415) or an oversized
body (413) is answered at the HTTP level. ``GET /health`` reports liveness.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from certs.tsa import CONTENT_TYPE_QUERY, CONTENT_TYPE_REPLY, TimeStampAuthority

#: A TimeStampReq is about a hundred bytes; cap the body well above that.
MAX_REQUEST_BYTES = 16 * 1024

AUTHORITY = web.AppKey("authority", TimeStampAuthority)


def make_app(authority: TimeStampAuthority) -> web.Application:
    """An application answering with ``authority`` (embedding: tests, the demo)."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[AUTHORITY] = authority
    app.router.add_get("/health", _health)
    app.router.add_post("/{tail:.*}", _stamp)
    return app


def build_tsa_app(tsa_dir: str | Path, passphrase: bytes) -> web.Application:
    """The application for the TSA directory ``tsa_dir`` (key unlocked with ``passphrase``)."""
    return make_app(TimeStampAuthority.from_dir(tsa_dir, passphrase))


async def _stamp(request: web.Request) -> web.Response:
    if request.content_type != CONTENT_TYPE_QUERY:
        return web.Response(status=415, text=f"send the TimeStampReq as {CONTENT_TYPE_QUERY}\n")
    body = await request.read()
    authority = request.app[AUTHORITY]
    # Signing and the serial-number commit (an fsync) stay off the event loop.
    reply = await asyncio.get_running_loop().run_in_executor(None, authority.respond, body)
    return web.Response(body=reply, content_type=CONTENT_TYPE_REPLY)


async def _health(request: web.Request) -> web.Response:
    authority = request.app[AUTHORITY]
    return web.json_response(
        {
            "status": "ok",
            "tsa": authority.cert.subject.rfc4514_string(),
            "policy": authority.policy,
            "certificate_not_after": authority.cert.not_valid_after_utc.isoformat(),
        }
    )
