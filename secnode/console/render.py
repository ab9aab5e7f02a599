"""Jinja2 rendering for the console and the disclosure page: autoescape always on, and the
security headers every page carries (no caching, no framing, no scripts from anywhere)."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("secnode.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000",
}


def html(name: str, status: int = 200, **context: Any) -> web.Response:
    """Render ``templates/name`` to a response with the security headers."""
    body = _env.get_template(name).render(**context)
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def download(body: bytes, filename: str, content_type: str) -> web.Response:
    headers = dict(SECURITY_HEADERS)
    headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return web.Response(body=body, content_type=content_type, headers=headers)
