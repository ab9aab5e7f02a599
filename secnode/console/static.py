"""The one stylesheet (package data), served by both apps."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from secnode.console.render import SECURITY_HEADERS

_CSS = resources.files("secnode.console").joinpath("static/console.css").read_bytes()


async def stylesheet(_request: web.Request) -> web.Response:
    headers = dict(SECURITY_HEADERS)
    headers["Cache-Control"] = "max-age=3600"
    return web.Response(body=_CSS, content_type="text/css", headers=headers)
