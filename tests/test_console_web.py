"""The web console served by ``secnode serve`` over HTTPS on the admin listener: login and
sessions, CSRF on every form, the auditor's read-only role on every mutating route, the
login rate limit, and pages that change the node through the CLI's operations (the next
exchange honours an access right changed in the console)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from secnode import services
from secnode.console import audit
from secnode.console.app import build_console_app
from secnode.console.context import ConsoleContext
from secnode.console.security import PUBLIC, READ_ONLY_POSTS
from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.demo.calls import CallResult, call_rest
from secnode.home import NodeHome
from tests.support.common import wait_until
from tests.support.console import PASSWORDS, Browser, ConsoleFederation, build

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleFederation]:
    made = build(tmp_path_factory.mktemp("console"))
    yield made
    made.close()


def residents_call(cf: ConsoleFederation) -> CallResult:
    taka, aizu = cf.takamatsu.handle, cf.aizu.handle
    return call_rest(
        taka.client_url,
        SubsystemId.parse(f"{taka.member}/portal"),
        ServiceId.parse(f"{aizu.member}/residents/residents"),
        "/1001",
    )


def browser(cf: ConsoleFederation, who: str | None = None) -> Browser:
    b = Browser(cf.aizu.console_url, cf.aizu.ssl_context())
    if who:
        status, where = b.login(who)
        assert status == 303 and where == "/console/", where
    return b


def post_routes() -> list[tuple[str, str]]:
    """(route name, path) of every POST route of the console application."""
    app = build_console_app(ConsoleContext(node=None, passphrase=b""))  # type: ignore[arg-type]
    return sorted(
        (r.name or "", r.resource.canonical)
        for r in app.router.routes()
        if r.method == "POST" and r.resource is not None
    )


def rights(node_dir: Path) -> list[tuple[str, str]]:
    node = NodeHome.open(node_dir)
    try:
        return sorted((r["service"], r["client"]) for r in services.list_rights(node))
    finally:
        node.close()


def test_the_console_is_https_only_with_hardened_cookies(cf: ConsoleFederation) -> None:
    # plain HTTP to the TLS listener: the connection is closed or reset, never answered
    with pytest.raises((urllib.error.URLError, ConnectionError), match=r"(?i)connection"):
        urllib.request.urlopen(f"http://127.0.0.1:{cf.aizu.handle.admin_port}/console/login")
    b = browser(cf, "olivia")
    session = [c for c in b.set_cookies if c.startswith("__Host-secnode-console=")]
    assert session, b.set_cookies
    flags = {part.strip().lower() for part in session[0].split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
    status, headers, text = b.get("/")
    assert status == 200 and "Dashboard" in text
    assert headers["cache-control"] == "no-store" and headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in headers["content-security-policy"]


def test_pages_need_a_session(cf: ConsoleFederation) -> None:
    b = browser(cf)
    for path in ("/", "/services", "/log", "/policy", "/audit", "/policy/report.csv"):
        status, headers, _ = b.get(path)
        assert status == 303 and headers["location"] == "/console/login", path
    status, _, _ = b.post("/services/grant", {"service": "residents/residents", "client": "x"})
    assert status == 401


def test_unknown_user_and_wrong_password_get_the_same_answer(cf: ConsoleFederation) -> None:
    answers = []
    for user, password in (("nobody", "whatever password"), ("olivia", "wrong password!!")):
        b = browser(cf)
        token = b.csrf("/login")
        status, _, text = b.post("/login", {"csrf": token, "username": user, "password": password})
        answers.append((status, text.replace(b.cookies.get("__Host-secnode-login", ""), "")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401 and "Wrong user name or password." in answers[0][1]


def test_every_form_refuses_a_missing_or_wrong_csrf_token(cf: ConsoleFederation) -> None:
    routes = post_routes()
    assert len(routes) >= 10, routes
    b = browser(cf, "olivia")
    before = rights(cf.aizu.handle.dir)
    for name, path in routes:
        if name == "login-post":
            continue
        for form in ({}, {"csrf": "forged-token"}):
            status, _, text = b.post(path, {**form, "service": "residents/residents"})
            assert status == 403, (name, form, status)
            assert "security token is missing or wrong" in text
    assert rights(cf.aizu.handle.dir) == before
    anonymous = browser(cf)
    anonymous.csrf("/login")  # the login cookie is set, but the form does not carry it
    for form in ({}, {"csrf": "forged-token"}):
        status, _, _ = anonymous.post(
            "/login", {**form, "username": "olivia", "password": PASSWORDS["olivia"]}
        )
        assert status == 403
    # ... and the session still works afterwards: the refusals did not log anyone in or out
    assert b.get("/")[0] == 200


def test_an_auditor_cannot_change_anything(cf: ConsoleFederation) -> None:
    mutating = [(n, p) for n, p in post_routes() if n not in READ_ONLY_POSTS | PUBLIC]
    assert {"acl-grant", "acl-revoke", "service-add", "service-edit-post", "consent-withdraw"} <= {
        n for n, _ in mutating
    }
    b = browser(cf, "arthur")
    csrf = b.csrf("/services")
    before = rights(cf.aizu.handle.dir)
    node = NodeHome.open(cf.aizu.handle.dir)
    try:
        services_before = services.list_services(node)
        for name, path in mutating:
            form = {
                "csrf": csrf,
                "service": "residents/residents",
                "client": "JP/GOV/999/x",
                "subsystem": "portal",
                "url": "http://127.0.0.1:1/",
                "address": "10.0.0.1",
                "consent_id": "CR-1",
                "kind": "rest",
            }
            status, _, text = b.post(path, form)
            assert status == 403, (name, status, text[:200])
            assert "The auditor role cannot change the node." in text
        assert services.list_services(node) == services_before
        refused = [e for e in audit.entries(node.engine) if e["outcome"] == "refused"]
        assert {e["actor"] for e in refused} >= {"arthur"}
        assert len([e for e in refused if e["actor"] == "arthur"]) >= len(mutating)
    finally:
        node.close()
    assert rights(cf.aizu.handle.dir) == before
    # read-only pages stay open to the auditor, without change forms
    status, _, text = b.get("/services")
    assert status == 200 and 'id="grant-form"' not in text and "Revoke" not in text


def test_an_access_right_changed_in_the_console_is_honoured_by_the_next_exchange(
    cf: ConsoleFederation,
) -> None:
    taka_portal = f"{cf.takamatsu.handle.member}/portal"
    assert residents_call(cf).status == 200
    b = browser(cf, "olivia")
    csrf = b.csrf("/services")
    status, headers, _ = b.post(
        "/services/revoke", {"csrf": csrf, "service": "residents/residents", "client": taka_portal}
    )
    assert status == 303 and headers["location"] == "/console/services?done=revoked"
    assert ("JP/GOV/072028/residents/residents", taka_portal) not in rights(cf.aizu.handle.dir)
    denied = residents_call(cf)
    assert denied.status >= 400 and b"AccessDenied" in denied.body
    _, _, dashboard = b.get("/")  # the provider logged the refusal; the dashboard counts it
    refused = re.search(r'<table id="refused">(.*?)</table>', dashboard, re.S)
    assert refused and "AccessDenied" in refused.group(1), dashboard
    status, _, _ = b.post(
        "/services/grant", {"csrf": csrf, "service": "residents/residents", "client": taka_portal}
    )
    assert status == 303
    assert residents_call(cf).status == 200
    status, _, text = b.get("/audit")
    assert status == 200
    assert re.search(r"olivia</td><td>operator</td><td>acl.revoke</td>", text)
    assert re.search(r"olivia</td><td>operator</td><td>acl.grant</td>", text)
    # a refused change is one clear message and is recorded too
    status, _, text = b.post(
        "/services/grant", {"csrf": csrf, "service": "residents/residents", "client": taka_portal}
    )
    assert status == 400 and "already has access" in text and "Traceback" not in text


def test_service_add_and_edit_go_through_the_library(cf: ConsoleFederation) -> None:
    b = browser(cf, "olivia")
    csrf = b.csrf("/services")
    status, _, _ = b.post(
        "/services/add",
        {
            "csrf": csrf,
            "subsystem": "residents",
            "service": "added",
            "url": "http://127.0.0.1:9/",
            "kind": "rest",
            "timeout": "5",
        },
    )
    assert status == 303
    status, _, text = b.post(
        "/services/edit",
        {"csrf": csrf, "service": "residents/added", "url": "ftp://nowhere", "timeout": ""},
    )
    assert status == 400 and "http:// or https://" in text
    # https towards the provider needs a TLS setting first (deny by default: docs/operations.md
    # "TLS at the internal edges"), which only the CLI sets.
    status, _, text = b.post(
        "/services/edit",
        {"csrf": csrf, "service": "residents/added", "url": "https://127.0.0.1:9/v2"},
    )
    assert status == 400 and "needs a TLS setting first" in text
    status, _, _ = b.post(
        "/services/edit",
        {
            "csrf": csrf,
            "service": "residents/added",
            "url": "http://127.0.0.1:9/v2",
            "timeout": "7",
            "openapi": "openapi: 3.0.0",
        },
    )
    assert status == 303
    node = NodeHome.open(cf.aizu.handle.dir)
    try:
        row = next(s for s in services.list_services(node) if s["id"].endswith("/added"))
    finally:
        node.close()
    assert (row["url"], row["timeout"], row["openapi"], row["granted"]) == (
        "http://127.0.0.1:9/v2",
        7.0,
        True,
        [],
    )


def test_log_search_record_verify_and_export(cf: ConsoleFederation) -> None:
    result = residents_call(cf)
    assert result.status == 200
    message_id = result.headers["X-Road-Id"]
    b = browser(cf, "arthur")  # the auditor reads the log
    status, _, text = b.get(f"/log?search=1&message_id={message_id}")
    assert status == 200 and message_id in text
    links = re.findall(r'href="(/console/log/record/[^"]+)"', text)
    assert links, text
    status, _, record = b.get(links[0].removeprefix("/console"))
    assert status == 200 and message_id in record and "record_hash" in record
    status, _, text = b.get("/log?search=1&client=JP/GOV/000000")
    assert status == 200 and "0 record(s)" in text
    status, _, text = b.get("/log?search=1&since=yesterday")
    assert status == 400 and "not a date and time" in text
    csrf = b.csrf("/log")
    status, headers, _ = b.post("/log/verify", {"csrf": csrf})
    assert status == 303 and headers["location"] == "/console/log/verify"

    def result() -> str | None:
        page = b.get("/log/verify")[2]
        return page if 'id="verdict"' in page else None

    text = wait_until(result, 60, "the verification result")
    assert "Started by arthur" in text
    status, headers, _ = b.post("/log/export", {"csrf": csrf, "message_id": message_id})
    assert status == 200 and headers["content-type"] == "application/zip"
    assert "attachment" in headers["content-disposition"]
    status, _, text = b.post("/log/export", {"csrf": csrf, "message_id": "no-such-id"})
    assert status == 400 and "no record with message id" in text


def test_reflected_input_is_escaped(cf: ConsoleFederation) -> None:
    b = browser(cf, "arthur")
    status, _, text = b.get("/log?search=1&client=%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 200
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_policy_pages_and_the_report_downloads(cf: ConsoleFederation) -> None:
    b = browser(cf, "arthur")
    status, _, text = b.get("/policy")
    assert status == 200 and "Agreements" in text and "Requests from residents" in text
    status, _, text = b.get("/policy/report?fy=2026")
    assert status == 200 and "FY2026" in text and 'id="report-csv"' in text
    status, headers, text = b.get("/policy/report.csv?fy=2026")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert 'filename="transparency-FY2026.csv"' in headers["content-disposition"]
    assert text.splitlines()[0].count(",") >= 4
    status, headers, text = b.get("/policy/report.html?fy=2026")
    assert status == 200 and "<table>" in text
    status, _, text = b.get("/policy/report?fy=nineteen")
    assert status == 400 and "give a year" in text


def test_a_disabled_account_loses_its_session(cf: ConsoleFederation) -> None:
    from tests.support.console import add_user

    add_user(cf.aizu.handle, "temp", "auditor", "temporary password")
    b = browser(cf)
    assert b.login("temp", "temporary password")[0] == 303
    assert b.get("/")[0] == 200
    cf.aizu.handle.cli("admin", "user", "disable", "temp")
    status, headers, _ = b.get("/")
    assert status == 303 and headers["location"] == "/console/login"


def test_logout_ends_the_session(cf: ConsoleFederation) -> None:
    b = browser(cf, "arthur")
    token = b.cookies["__Host-secnode-console"]
    csrf = b.csrf("/")
    assert b.post("/logout", {"csrf": csrf})[0] == 303
    b.cookies["__Host-secnode-console"] = token  # a replayed cookie is dead too
    assert b.get("/")[0] == 303


def test_login_is_rate_limited(cf: ConsoleFederation) -> None:
    """On the other node's console: the limit also holds per address, for five minutes."""
    b = Browser(cf.takamatsu.console_url, cf.takamatsu.ssl_context())
    for _ in range(5):
        assert b.login("olivia", "not the password")[0] == 401
    status, text = b.login("olivia")  # the right password, too late
    assert status == 429 and "Too many failed logins" in text
    status, text = Browser(cf.takamatsu.console_url, cf.takamatsu.ssl_context()).login("arthur")
    assert status == 429  # same address
