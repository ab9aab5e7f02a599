"""HTTP front of the TSA (RFC 3161 §3.4): POST a timestamp-query, get a timestamp-reply.

Any path accepts the POST, so ``http://host:port/`` and ``http://host:port/tsa``
both work as the TSA URL in the global configuration. A request the TSA
refuses still gets HTTP 200 with a ``rejection`` TimeStampResp (that is the
protocol's error channel); only a wrong content type (415) or an oversized
body (413) is answered at the HTTP level. ``GET /health`` reports liveness, ``GET /metrics``
the answers by result, their latency and the TSA certificate's remaining lifetime.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from aiohttp import web

from certs import logs, metrics
from certs.names import display_name
from certs.tsa import CONTENT_TYPE_QUERY, CONTENT_TYPE_REPLY, TimeStampAuthority, TimeStampResp

#: A TimeStampReq is about a hundred bytes; cap the body well above that.
MAX_REQUEST_BYTES = 16 * 1024

AUTHORITY = web.AppKey("authority", TimeStampAuthority)
METRICS = web.AppKey("tsa_metrics", metrics.ServerMetrics)
log = logging.getLogger("certs.tsa")


def make_app(authority: TimeStampAuthority) -> web.Application:
    """An application answering with ``authority`` (embedding: tests, the demo)."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[AUTHORITY] = authority
    registry = metrics.new_registry()
    app[METRICS] = metrics.ServerMetrics(registry, "tsa", "time-stamp requests")
    registry.register(
        metrics.CertificateExpiry(
            "tsa_certificate_expiry_seconds",
            "Seconds until the TSA certificate expires (negative: expired).",
            ["serial"],
            lambda: [((metrics.serial_label(authority.cert),), authority.cert)],
        )
    )
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", metrics.metrics_handler(registry))
    app.router.add_post("/{tail:.*}", _stamp)
    return app


def build_tsa_app(tsa_dir: str | Path, passphrase: bytes) -> web.Application:
    """The application for the TSA directory ``tsa_dir`` (key unlocked with ``passphrase``)."""
    return make_app(TimeStampAuthority.from_dir(tsa_dir, passphrase))


def result_of(reply: bytes) -> str:
    """``granted``, ``rejection``, ... (the PKIStatus of a TimeStampResp we built)."""
    try:
        return str(TimeStampResp.load(reply)["status"]["status"].native)
    except ValueError:  # never: we built it; but counting must not break the answer
        return "unparsed"


async def _stamp(request: web.Request) -> web.Response:
    started = time.perf_counter()
    if request.content_type != CONTENT_TYPE_QUERY:
        request.app[METRICS].observe("wrong_content_type", started)
        return web.Response(status=415, text=f"send the TimeStampReq as {CONTENT_TYPE_QUERY}\n")
    body = await request.read()
    authority = request.app[AUTHORITY]
    # Signing and the serial-number commit (an fsync) stay off the event loop.
    with logs.scope(client=request.remote):
        reply = await asyncio.to_thread(authority.respond, body)
    request.app[METRICS].observe(result_of(reply), started)
    return web.Response(body=reply, content_type=CONTENT_TYPE_REPLY)


async def _health(request: web.Request) -> web.Response:
    authority = request.app[AUTHORITY]
    return web.json_response(
        {
            "status": "ok",
            "tsa": display_name(authority.cert.subject),
            "policy": authority.policy,
            "certificate_not_after": authority.cert.not_valid_after_utc.isoformat(),
        }
    )
