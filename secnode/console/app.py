"""The console application, mounted under ``/console/`` on the admin listener when the
listener serves HTTPS (``[admin] tls_cert``/``tls_key``).

Every POST route here is a change unless :data:`secnode.console.security.READ_ONLY_POSTS`
names it (deny by default; the tests walk this table).
"""

from __future__ import annotations

from aiohttp import web

from secnode.console import pages_log, pages_main, pages_policy, pages_services
from secnode.console.context import CONTEXT, ConsoleContext
from secnode.console.security import BASE, guard
from secnode.console.static import stylesheet


def build_console_app(ctx: ConsoleContext) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=2 * 1024 * 1024)
    app[CONTEXT] = ctx
    r = app.router
    r.add_get("/static/console.css", stylesheet, name="css")
    r.add_get("/login", pages_main.login_page, name="login")
    r.add_post("/login", pages_main.login, name="login-post")
    r.add_post("/logout", pages_main.logout, name="logout")
    r.add_get("/", pages_main.dashboard, name="dashboard")
    r.add_get("/audit", pages_main.audit_page, name="audit")
    r.add_get("/services", pages_services.services_page, name="services")
    r.add_post("/services/add", pages_services.add_service, name="service-add")
    r.add_get("/services/edit", pages_services.edit_page, name="service-edit")
    r.add_post("/services/edit", pages_services.edit_service, name="service-edit-post")
    r.add_post("/services/classify", pages_services.classify, name="service-classify")
    r.add_post("/services/grant", pages_services.grant, name="acl-grant")
    r.add_post("/services/revoke", pages_services.revoke, name="acl-revoke")
    r.add_post("/clients/allow", pages_services.allow_caller, name="client-allow")
    r.add_post("/clients/remove", pages_services.remove_caller, name="client-remove")
    r.add_get("/log", pages_log.log_page, name="log")
    r.add_get("/log/record/{id}", pages_log.record_page, name="log-record")
    r.add_post("/log/verify", pages_log.verify, name="log-verify")
    r.add_get("/log/verify", pages_log.verify_status, name="log-verify-status")
    r.add_post("/log/export", pages_log.export, name="log-export")
    r.add_get("/policy", pages_policy.policy_page, name="policy")
    r.add_post("/policy/consents/withdraw", pages_policy.withdraw, name="consent-withdraw")
    r.add_get("/policy/report", pages_policy.report_page, name="report")
    r.add_get("/policy/report.csv", pages_policy.report_csv, name="report-csv")
    r.add_get("/policy/report.html", pages_policy.report_html, name="report-html")
    return app


def mount(admin_app: web.Application, ctx: ConsoleContext) -> None:
    """Add the console to the admin listener's application."""
    admin_app.add_subapp(BASE, build_console_app(ctx))
