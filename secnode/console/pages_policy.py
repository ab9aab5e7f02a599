"""Policy: agreements, consents (withdrawal), stop requests, residents' requests and the
transparency report for a fiscal year (HTML and CSV), through :mod:`secnode.policy.admin`
and :mod:`secnode.policy.report` as the CLI does."""

from __future__ import annotations

import asyncio
import datetime as dt

from aiohttp import web

from secnode.console import disclosure
from secnode.console.actions import change, done, done_message
from secnode.console.render import download, html
from secnode.console.security import BASE, context, form_of, page, user_of
from secnode.core.policy import render_report
from secnode.home import NodeHome
from secnode.policy import admin as policy_admin
from secnode.policy.report import transparency_report

PATH = f"{BASE}/policy"


class ReportRequestError(policy_admin.PolicyAdminError):
    """The fiscal year asked for is not a year."""


def current_fiscal_year(today: dt.date | None = None) -> int:
    """Japanese fiscal year: April to March."""
    today = today or dt.date.today()
    return today.year if today.month >= 4 else today.year - 1


def _fiscal_year(request: web.Request) -> int:
    text = request.query.get("fy", "").strip()
    if not text:
        return current_fiscal_year()
    if not text.isdigit() or not 2000 <= int(text) <= 2100:
        raise ReportRequestError(f"fiscal year {text!r}: give a year such as 2026")
    return int(text)


async def policy_page(request: web.Request) -> web.Response:
    node = context(request).node
    agreements = await asyncio.to_thread(policy_admin.agreements, node, False)
    consents = await asyncio.to_thread(policy_admin.consents, node, None)
    stops = await asyncio.to_thread(policy_admin.stop_requests, node, None)
    asked = await asyncio.to_thread(disclosure.requests, node.engine, None)
    return html(
        "policy.html",
        **page(
            request,
            agreements=agreements,
            consents=consents,
            stops=stops,
            asked=asked,
            fiscal_year=current_fiscal_year(),
            done=done_message(request),
        ),
    )


async def withdraw(request: web.Request) -> web.StreamResponse:
    form, node = form_of(request), context(request).node
    consent_id = form.get("consent_id", "")
    by = user_of(request).username
    await change(
        request,
        "consent.withdraw",
        consent_id,
        policy_admin.withdraw_consent,
        node,
        consent_id,
        dt.datetime.now(dt.UTC),
        by,
    )
    raise done(PATH, "withdrawn")


def _report(node: NodeHome, fiscal_year: int, fmt: str) -> str:
    threshold = node.dir.config.policy.report_suppression_threshold
    return render_report(transparency_report(node.engine, fiscal_year, threshold), fmt)


async def report_page(request: web.Request) -> web.Response:
    node, fy = context(request).node, _fiscal_year(request)
    threshold = node.dir.config.policy.report_suppression_threshold
    report = await asyncio.to_thread(transparency_report, node.engine, fy, threshold)
    return html("report.html", **page(request, report=report, fiscal_year=fy))


async def report_csv(request: web.Request) -> web.Response:
    node, fy = context(request).node, _fiscal_year(request)
    text = await asyncio.to_thread(_report, node, fy, "csv")
    return download(text.encode("utf-8"), f"transparency-FY{fy}.csv", "text/csv")


async def report_html(request: web.Request) -> web.Response:
    """The printable, self-contained page a city publishes."""
    node, fy = context(request).node, _fiscal_year(request)
    text = await asyncio.to_thread(_report, node, fy, "html")
    return download(text.encode("utf-8"), f"transparency-FY{fy}.html", "text/html")
