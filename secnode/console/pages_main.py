"""Login, logout, the dashboard and the audit trail page."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

from aiohttp import web

from secnode.console import accounts, audit, sessions
from secnode.console.render import html
from secnode.console.security import (
    BASE,
    COOKIE,
    LOGIN_COOKIE,
    context,
    form_of,
    new_login_token,
    page,
    refuse,
    set_cookie,
    user_of,
)
from secnode.home import NodeHome
from secnode.messagelog import evidence
from secnode.messagelog.store import SearchFilter
from secnode.policy import admin as policy_admin

WRONG_LOGIN = "Wrong user name or password."


async def login_page(request: web.Request) -> web.Response:
    token = new_login_token()
    response = html("login.html", **page(request, login_csrf=token, message=None))
    set_cookie(response, LOGIN_COOKIE, token, 600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    ctx, form = context(request), form_of(request)
    if not sessions.csrf_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        return refuse(request, 403, "The form's security token is missing or wrong.")
    username, password = form.get("username", "").strip()[:64], form.get("password", "")[:1024]
    address = request.remote or "-"
    keys = (f"user:{username}", f"addr:{address}")
    engine = ctx.node.engine
    if ctx.logins.blocked(*keys):
        await asyncio.to_thread(
            audit.record,
            engine,
            username or "-",
            "-",
            "login",
            BASE,
            "refused",
            {"reason": "rate limited", "address": address},
        )
        return refuse(request, 429, "Too many failed logins; wait a few minutes and try again.")
    user = await asyncio.to_thread(accounts.authenticate, engine, username, password)
    if user is None:
        ctx.logins.failed(*keys)
        await asyncio.to_thread(
            audit.record,
            engine,
            username or "-",
            "-",
            "login",
            BASE,
            "refused",
            {"reason": "wrong user name or password", "address": address},
        )
        token = new_login_token()
        response = html("login.html", 401, **page(request, login_csrf=token, message=WRONG_LOGIN))
        set_cookie(response, LOGIN_COOKIE, token, 600)
        return response
    token, _csrf = await asyncio.to_thread(
        sessions.create, engine, "console", user.username, ctx.session_lifetime
    )
    await asyncio.to_thread(
        audit.record, engine, user.username, user.role, "login", BASE, "ok", {"address": address}
    )
    response = web.HTTPSeeOther(f"{BASE}/")
    set_cookie(response, COOKIE, token, int(ctx.session_lifetime.total_seconds()))
    response.del_cookie(LOGIN_COOKIE, path="/")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    ctx, user = context(request), user_of(request)
    await asyncio.to_thread(sessions.end, ctx.node.engine, request.cookies.get(COOKIE))
    await asyncio.to_thread(audit.record, ctx.node.engine, user.username, user.role, "logout", BASE)
    response = web.HTTPSeeOther(f"{BASE}/login")
    response.del_cookie(COOKIE, path="/")
    return response


def _refusals(node: NodeHome, since: dt.datetime) -> list[tuple[str, int]]:
    """Refusals of the policy point since ``since``, by reason, most frequent first."""
    rows = policy_admin.decision_log(node, since, None, None, None, None, 10_000)
    return Counter(r["reason"] for r in rows if not r["allow"]).most_common(10)


def _log_refusals(node: NodeHome, since: dt.datetime) -> list[tuple[str, int]]:
    """Refusal records of the message log since ``since``, by X-Road error code."""
    criteria = SearchFilter(since=since, direction="refusal")
    with evidence.opened(node) as log:
        found = evidence.search(log, criteria, 10_000)
    return Counter((r.reason or "").split(" ", 1)[0] or "-" for r in found).most_common(10)


async def dashboard(request: web.Request) -> web.Response:
    ctx = context(request)
    health = await ctx.health()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    refusals = await asyncio.to_thread(_refusals, ctx.node, since)
    refused = await asyncio.to_thread(_log_refusals, ctx.node, since)
    return html(
        "dashboard.html", **page(request, health=health, refusals=refusals, refused=refused)
    )


async def audit_page(request: web.Request) -> web.Response:
    rows = await asyncio.to_thread(audit.entries, context(request).node.engine, 500)
    return html("audit.html", **page(request, rows=rows))
