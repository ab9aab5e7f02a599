"""The resident disclosure page (APPI Art. 33(5)) on the node's disclosure listener.

A resident enters the subject reference and the one-time code the city gave them and
sees the provisions of their data; they can leave a withdrawal or stop request for the
privacy office. Unknown subject, wrong, expired or spent code: one answer, byte for
byte, after the same hashing work. Attempts are limited per address and per subject.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from aiohttp import web

from certs.errors import SecnodeError
from secnode.console import disclosure, sessions
from secnode.console.ratelimit import AttemptLimiter
from secnode.console.render import html
from secnode.console.security import Handler, new_login_token, set_cookie
from secnode.console.static import stylesheet
from secnode.home import NodeHome

log = logging.getLogger("secnode.console.resident")

COOKIE = "__Host-secnode-resident"
FORM_COOKIE = "__Host-secnode-resident-form"
SESSION_LIFETIME = dt.timedelta(minutes=30)
ATTEMPTS, WINDOW = 10, 900.0
NOT_VALID = (
    "The subject reference or the access code is not valid. / "
    "参照番号またはアクセスコードが正しくありません。"
)
NODE = web.AppKey("disclosure_node", NodeHome)
LIMITER = web.AppKey("disclosure_limiter", AttemptLimiter)


def _form_page(request: web.Request, token: str, status: int, message: str | None) -> web.Response:
    response = html("resident_login.html", status, csrf=token, message=message)
    set_cookie(response, FORM_COOKIE, token, 1800)
    return response


async def start_page(request: web.Request) -> web.Response:
    return _form_page(request, new_login_token(), 200, None)


async def open_records(request: web.Request) -> web.StreamResponse:
    node, limiter = request.app[NODE], request.app[LIMITER]
    form = await request.post()
    token = request.cookies.get(FORM_COOKIE)
    if not sessions.csrf_ok(token, form.get("csrf")):
        return html("resident_error.html", 403, message="The form has expired; start again.")
    assert token is not None
    subject = str(form.get("subject", "")).strip()[:255]
    code = str(form.get("code", ""))[:64]
    keys = (f"addr:{request.remote or '-'}", f"subject:{subject}")
    if limiter.blocked(*keys):
        return _form_page(
            request,
            token,
            429,
            "Too many attempts; try again later. / しばらくしてから再度お試しください。",
        )
    if not subject or not await asyncio.to_thread(disclosure.redeem, node.engine, subject, code):
        limiter.failed(*keys)
        return _form_page(request, token, 401, NOT_VALID)
    session, _csrf = await asyncio.to_thread(
        sessions.create, node.engine, "resident", subject, SESSION_LIFETIME
    )
    response = web.HTTPSeeOther("/records")
    set_cookie(response, COOKIE, session, int(SESSION_LIFETIME.total_seconds()))
    return response


async def _session(request: web.Request) -> sessions.Session | None:
    return await asyncio.to_thread(
        sessions.lookup, request.app[NODE].engine, "resident", request.cookies.get(COOKIE)
    )


async def _view(request: web.Request, subject_ref: str) -> dict[str, Any]:
    node = request.app[NODE]

    def build() -> dict[str, Any]:
        return disclosure.resident_view(node.engine, subject_ref, disclosure.member_names(node))

    return await asyncio.to_thread(build)


async def records_page(request: web.Request) -> web.StreamResponse:
    session = await _session(request)
    if session is None:
        raise web.HTTPSeeOther("/")
    view = await _view(request, session.principal)
    asked = await asyncio.to_thread(
        disclosure.requests, request.app[NODE].engine, session.principal
    )
    return html("resident_records.html", view=view, asked=asked, csrf=session.csrf, sent=None)


async def make_request(request: web.Request) -> web.StreamResponse:
    session = await _session(request)
    if session is None:
        return html("resident_error.html", 401, message="The session has ended; start again.")
    form = await request.post()
    if not sessions.csrf_ok(session.csrf, form.get("csrf")):
        return html("resident_error.html", 403, message="The form has expired; start again.")
    engine = request.app[NODE].engine
    await asyncio.to_thread(
        disclosure.add_request,
        engine,
        session.principal,
        str(form.get("kind", "")),
        str(form.get("target", "")),
        str(form.get("note", "")),
    )
    view = await _view(request, session.principal)
    asked = await asyncio.to_thread(disclosure.requests, engine, session.principal)
    return html("resident_records.html", view=view, asked=asked, csrf=session.csrf, sent=True)


async def end_session(request: web.Request) -> web.StreamResponse:
    session = await _session(request)
    form = await request.post()
    if session is not None and not sessions.csrf_ok(session.csrf, form.get("csrf")):
        return html("resident_error.html", 403, message="The form has expired; start again.")
    await asyncio.to_thread(sessions.end, request.app[NODE].engine, request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/")
    response.del_cookie(COOKIE, path="/")
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except SecnodeError as exc:
        log.warning("disclosure page %s refused: %s", request.path, exc)
        return html("resident_error.html", 400, message=str(exc))
    except Exception:
        log.exception("disclosure page %s failed", request.path)
        return html("resident_error.html", 500, message="Internal error. / 内部エラー")


def build_disclosure_app(node: NodeHome) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=64 * 1024)
    app[NODE] = node
    app[LIMITER] = AttemptLimiter(ATTEMPTS, WINDOW)
    app.router.add_get("/", start_page)
    app.router.add_post("/", open_records)
    app.router.add_get("/records", records_page)
    app.router.add_post("/request", make_request)
    app.router.add_post("/logout", end_session)
    app.router.add_get("/static/console.css", stylesheet)
    return app
