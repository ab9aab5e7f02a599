"""Where ``secnode serve`` attaches the web console (admin listener, HTTPS only) and the
resident disclosure page (its own listener, HTTPS only).

Kept apart from :mod:`secnode.app.serve` so the listener code stays about listeners; the
console package never imports the app package (the runtime is handed in as callables).
"""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING, Any

from aiohttp import web

from secnode.config import ConfigError
from secnode.console.app import mount
from secnode.console.context import ConsoleContext
from secnode.console.resident import build_disclosure_app

if TYPE_CHECKING:
    from secnode.app.runtime import NodeRuntime

log = logging.getLogger("secnode.app.console")


def tls_context(rt: NodeRuntime, cert: str, key: str, what: str) -> ssl.SSLContext | None:
    """A server context from files in the node directory (key under the node passphrase)."""
    if not cert:
        return None
    if not key:
        raise ConfigError(f"[{what}] tls_cert is set but tls_key is not")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(rt.node.path / cert), str(rt.node.path / key), password=rt.passphrase)
    return ctx


def admin_tls(rt: NodeRuntime, admin_app: web.Application) -> ssl.SSLContext | None:
    """The admin listener's TLS; when it has one, the console is mounted on it."""
    cfg = rt.config.admin
    ctx = tls_context(rt, cfg.tls_cert, cfg.tls_key, "admin")
    if ctx is None:
        log.info("web console off: [admin] tls_cert/tls_key not set (HTTPS only)")
        return None
    from secnode.app.admin import health_report

    async def health() -> dict[str, Any]:
        return await health_report(rt)

    mount(admin_app, ConsoleContext(rt.node, rt.passphrase, health, rt.reload_services))
    return ctx


def disclosure_site(rt: NodeRuntime) -> tuple[web.Application, ssl.SSLContext] | None:
    """The disclosure page's application and TLS, when ``[disclosure] port`` is set."""
    cfg = rt.config.disclosure
    if not cfg.port:
        return None
    ctx = tls_context(rt, cfg.tls_cert, cfg.tls_key, "disclosure")
    if ctx is None:
        raise ConfigError("[disclosure] port is set: tls_cert and tls_key are required")
    return build_disclosure_app(rt.node), ctx
