"""``central serve``: the global configuration over HTTP, the registration endpoint, re-signing.

Routes:
    GET  /globalconf[?version=N]      the document (``application/json``)
    GET  /globalconf.sig[?version=N]  its detached CMS signature (DER)
    POST /register                    a node's signed registration request
    GET  /health                      liveness and the served version
    GET  /metrics                     Prometheus metrics (central.metrics)

A client fetches ``/globalconf``, reads ``X-Globalconf-Version`` and then asks
for ``/globalconf.sig?version=N``, so a re-signing between the two requests can
never pair a document with another version's signature. Database work runs in a
thread so the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from central import publish, registration
from central.config import CentralConfig
from central.errors import RegistryError
from central.metrics import PROBLEM_CODE, RegistryMetrics
from central.models import ConfVersion
from central.store import Store, now
from certs import logs, metrics
from secnode.core.globalconf import VERSION_HEADER
from secnode.core.jsonfmt import format_time
from secnode.core.registration import MAX_REQUEST_BYTES

log = logging.getLogger("central.server")

STORE = web.AppKey("store", Store)
CONFIG = web.AppKey("config", CentralConfig)
PASSPHRASE = web.AppKey("passphrase", bytes)
OPERATOR = web.AppKey("operator", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, code: str, detail: str) -> web.Response:
    """RFC 9457 problem details with our stable ``code``."""
    return web.json_response(
        {"type": "about:blank", "title": code, "status": status, "detail": detail, "code": code},
        status=status,
        content_type="application/problem+json",
    )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    with logs.scope(client=request.remote):
        try:
            return await handler(request)
        except RegistryError as exc:
            request[PROBLEM_CODE] = exc.code
            log.info(
                "refused %s %s: %s",
                request.method,
                request.path,
                exc,
                extra={"error_code": exc.code},
            )
            return problem(exc.status, exc.code, str(exc))
        except web.HTTPRequestEntityTooLarge:
            request[PROBLEM_CODE] = "RequestTooLarge"
            return problem(
                413, "RequestTooLarge", f"request body exceeds {MAX_REQUEST_BYTES} bytes"
            )


def _version_param(request: web.Request) -> int | None:
    raw = request.query.get("version")
    if raw is None:
        return None
    if not raw.isdigit():
        raise RegistryError(f"version {raw!r} is not a number")
    return int(raw)


async def _row(request: web.Request) -> ConfVersion:
    version = _version_param(request)
    row = await asyncio.to_thread(publish.get_version, request.app[STORE], version)
    if row is None:
        what = "nothing published yet" if version is None else f"version {version} not found"
        raise RegistryError(what, code="NotFound", status=404)
    return row


def _conf_response(
    request: web.Request, row: ConfVersion, body: bytes, content_type: str, etag: str
) -> web.StreamResponse:
    pinned = "version" in request.query
    remaining = max(0, int((row.expires_at - now()).total_seconds()))
    headers = {
        "ETag": etag,
        VERSION_HEADER: str(row.version),
        "Last-Modified": row.generated_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Expires": row.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        # A pinned version never changes; "latest" must be revalidated on every poll.
        "Cache-Control": f"public, max-age={remaining}, immutable" if pinned else "no-cache",
    }
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)


async def get_conf(request: web.Request) -> web.StreamResponse:
    row = await _row(request)
    return _conf_response(request, row, row.document, "application/json", f'"{row.version}"')


async def get_sig(request: web.Request) -> web.StreamResponse:
    row = await _row(request)
    return _conf_response(
        request, row, row.signature, "application/pkcs7-signature", f'"{row.version}.sig"'
    )


async def post_register(request: web.Request) -> web.StreamResponse:
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        raise RegistryError(
            f"request body exceeds {MAX_REQUEST_BYTES} bytes", code="RequestTooLarge", status=413
        )
    data = await request.read()
    config = request.app[CONFIG]
    result = await asyncio.to_thread(
        registration.receive, request.app[STORE], config.instance, data, request.remote
    )
    log.info("registration request %s stored as pending", result["id"])
    return web.json_response(result, status=202)


async def health(request: web.Request) -> web.StreamResponse:
    row = await asyncio.to_thread(publish.get_version, request.app[STORE], None)
    if row is None:
        return web.json_response({"status": "unpublished"}, status=503)
    expired = row.expires_at < now()
    return web.json_response(
        {
            "status": "expired" if expired else "ok",
            "version": row.version,
            "expires_at": format_time(row.expires_at),
        },
        status=503 if expired else 200,
    )


#: Longest sleep of the re-signer. Versions are published by other processes (``central conf
#: publish``, another ``serve``), so the newest one's schedule is re-read this often: a new
#: validity governs the next re-signing at once, never after a sleep computed from the old one.
RESIGN_POLL_SECONDS = 1.0


async def resign_loop(app: web.Application) -> None:
    """Re-sign the latest content when a third of its validity has passed."""
    while True:
        wait = RESIGN_POLL_SECONDS
        try:
            wait = await asyncio.to_thread(resign_step, app)
        except RegistryError as exc:  # e.g. another server allocated the same version
            log.warning("re-signing failed, will retry: %s", exc)
        except Exception:  # keep serving the current version; the log says why
            log.exception("re-signing failed, will retry")
        await asyncio.sleep(max(0.05, min(wait, RESIGN_POLL_SECONDS)))


def resign_step(app: web.Application) -> float:
    """Re-sign the newest version if it is due; seconds until it (or its successor) is due."""
    store = app[STORE]
    newest = publish.head(store)
    if newest is None:  # nothing published yet: nothing to re-sign
        return RESIGN_POLL_SECONDS
    wait = (newest.resign_at - now()).total_seconds()
    if wait > 0:
        return wait
    result = publish.resign(store, app[CONFIG], app[OPERATOR], app[PASSPHRASE])
    log.info(
        "re-signed version %d as version %s, expires %s",
        newest.version,
        result["version"],
        format_time(result["expires_at"]),
    )
    return 0.0


def build_app(
    store: Store, config: CentralConfig, passphrase: bytes, operator: str, resign: bool = True
) -> web.Application:
    counted = RegistryMetrics(store)
    app = web.Application(
        middlewares=[counted.middleware(), errors], client_max_size=MAX_REQUEST_BYTES
    )
    app[STORE], app[CONFIG], app[PASSPHRASE], app[OPERATOR] = store, config, passphrase, operator
    app.router.add_get("/globalconf", get_conf)
    app.router.add_get("/globalconf.sig", get_sig)
    app.router.add_post("/register", post_register)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics.metrics_handler(counted.registry))

    async def resigner(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(resign_loop(app))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    if resign:
        app.cleanup_ctx.append(resigner)
    return app
