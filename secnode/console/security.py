"""The console's guard: a session for every page but the login, a CSRF token on every
POST, operator role for every POST that changes something, and one error page.

Deny by default: a POST route is a change (operator only) unless it is named in
:data:`READ_ONLY_POSTS`; a route is behind login unless named in :data:`PUBLIC`.
Refusals are recorded in the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from certs.errors import SecnodeError
from secnode.console import accounts, audit, sessions
from secnode.console.context import CONTEXT, ConsoleContext
from secnode.console.render import html

log = logging.getLogger("secnode.console")

BASE = "/console"
COOKIE = "__Host-secnode-console"
LOGIN_COOKIE = "__Host-secnode-login"
PUBLIC = frozenset({"login", "login-post", "css"})
READ_ONLY_POSTS = frozenset({"logout", "log-verify", "log-export"})
USER, SESSION, FORM = "console.user", "console.session", "console.form"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def context(request: web.Request) -> ConsoleContext:
    return request.app[CONTEXT]


def user_of(request: web.Request) -> accounts.User:
    user: accounts.User = request[USER]
    return user


def form_of(request: web.Request) -> dict[str, str]:
    """The POSTed form fields (text only; a file field is refused as absent)."""
    form: dict[str, str] = request[FORM]
    return form


def page(request: web.Request, **values: Any) -> dict[str, Any]:
    """What every console template gets: who is logged in, the CSRF token, the node."""
    session: sessions.Session | None = request.get(SESSION)
    user: accounts.User | None = request.get(USER)
    return {
        "base": BASE,
        "user": user,
        "csrf": session.csrf if session else "",
        "node_id": str(context(request).node.node_id),
        **values,
    }


def set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Strict"
    )


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    return html("error.html", status, **page(request, code=status, message=message))


async def _record(request: web.Request, action: str, outcome: str, detail: str) -> None:
    ctx, user = context(request), request.get(USER)
    await asyncio.to_thread(
        audit.record,
        ctx.node.engine,
        user.username if user else "-",
        user.role if user else "-",
        action,
        request.path,
        outcome,
        {"reason": detail, "address": request.remote or ""},
    )


async def _form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = context(request)
    route = request.match_info.route.name
    try:
        if request.method == "POST":
            request[FORM] = await _form(request)
        if route in PUBLIC:
            return await handler(request)
        token = request.cookies.get(COOKIE)
        session = await asyncio.to_thread(sessions.lookup, ctx.node.engine, "console", token)
        user = (
            await asyncio.to_thread(accounts.get_user, ctx.node.engine, session.principal)
            if session
            else None
        )
        if session is None or user is None or user.disabled:
            if request.method in ("GET", "HEAD"):
                raise web.HTTPSeeOther(f"{BASE}/login")
            return refuse(request, 401, "Not logged in (or the session has ended).")
        request[USER], request[SESSION] = user, session
        if request.method == "POST":
            if not sessions.csrf_ok(session.csrf, request[FORM].get("csrf")):
                await _record(request, f"refused {route}", "refused", "missing or wrong CSRF")
                return refuse(request, 403, "The form's security token is missing or wrong.")
            if route not in READ_ONLY_POSTS and not user.can_change:
                await _record(request, f"refused {route}", "refused", f"role {user.role}")
                return refuse(request, 403, f"The {user.role} role cannot change the node.")
        return await handler(request)
    except web.HTTPException:
        raise
    except SecnodeError as exc:
        log.warning("console %s %s refused: %s", request.method, request.path, exc)
        return refuse(request, 400, str(exc))
    except Exception:
        log.exception("console %s %s failed", request.method, request.path)
        return refuse(request, 500, "Internal error; the node's log has the details.")
