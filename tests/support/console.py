"""Support for the console and disclosure tests: a federation whose nodes serve the console
(HTTPS on the admin listener) and the disclosure page, a provider REST service, accounts
made with ``secnode admin user add``, seeded policy records, and a small HTTPS client that
keeps cookies like a browser (real TLS to the node, verified against its certificate)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import ssl
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from secnode.cli import main as secnode_main
from secnode.demo.federation import Federation
from secnode.demo.node import NodeHandle
from secnode.demo.two_cities import CITIES
from secnode.home import NodeHome
from secnode.policy import records as policy_records
from secnode.policy.common import canonical, sha256_hex
from tests.support.common import PASSPHRASE, wait_for_port, wait_until
from tests.support.federation import create

PASSWORDS = {"olivia": "operator-password-1", "arthur": "auditor-password-1"}
CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def add_user(node: NodeHandle, username: str, role: str, password: str) -> str:
    result = CliRunner().invoke(
        secnode_main,
        [
            "admin",
            "user",
            "add",
            username,
            "--role",
            role,
            "--password-stdin",
            "--dir",
            str(node.dir),
        ],
        input=password + "\n",
        env={"SECNODE_PASSPHRASE": PASSPHRASE.decode(), "SECNODE_DIR": None},
    )
    assert result.exit_code == 0, result.output
    return result.output


@dataclass
class ConsoleNode:
    """A node with the console and the disclosure page enabled (URLs without the slash
    the tests append their paths to)."""

    handle: NodeHandle

    @property
    def disclosure_port(self) -> int:
        return self.handle.disclosure_port

    @property
    def console_url(self) -> str:
        return self.handle.console_url.rstrip("/")

    @property
    def disclosure_url(self) -> str:
        return self.handle.disclosure_url.rstrip("/")

    @property
    def tls_cert(self) -> Path:
        return self.handle.tls_cert

    def ssl_context(self) -> ssl.SSLContext:
        context = self.handle.admin_context()
        assert context is not None, f"{self.handle.name}: the console is not enabled"
        return context


def enable_console(fed: Federation, node: NodeHandle) -> ConsoleNode:
    fed.enable_console(node)
    return ConsoleNode(node)


@dataclass
class ConsoleFederation:
    fed: Federation
    aizu: ConsoleNode
    takamatsu: ConsoleNode
    service_port: int

    def start(self) -> None:
        for cn in (self.aizu, self.takamatsu):
            self.fed.start_node(cn.handle.name, wait_healthy=False)
            wait_for_port(cn.disclosure_port)
            wait_until(
                lambda cn=cn: Browser(cn.console_url, cn.ssl_context()).get("/login")[0] == 200,
                20,
                f"{cn.handle.name} console",
            )

    def close(self) -> None:
        self.fed.close()


def build(base: Path) -> ConsoleFederation:
    """Aizu provides ``residents/residents`` (granted to Takamatsu's portal); both consoles."""
    fed = create(base)
    try:
        service_port = fed.backend("service")
        for name, member, member_name in CITIES[:2]:
            fed.add_node(name, member, member_name, subsystems=("portal", "residents"))
        fed.register()
        aizu_h, taka_h = fed.nodes["aizu"], fed.nodes["takamatsu"]
        for h in (aizu_h, taka_h):
            fed.allow_client(h)
        residents = f"http://127.0.0.1:{service_port}/residents"
        fed.add_service(aizu_h, "residents", "rest", residents, subsystem="residents", by="test")
        aizu_h.cli("acl", "grant", "residents/residents", f"{taka_h.member}/portal")
        consoles = [enable_console(fed, h) for h in (aizu_h, taka_h)]
        for cn in consoles:
            add_user(cn.handle, "olivia", "operator", PASSWORDS["olivia"])
            add_user(cn.handle, "arthur", "auditor", PASSWORDS["arthur"])
        cf = ConsoleFederation(fed, consoles[0], consoles[1], service_port)
        cf.start()
        return cf
    except BaseException:
        fed.close()
        raise


# ----- seeded policy records (the tables the policy point writes) -------------------------------
def seed_provision(
    node_dir: Path,
    subject_ref: str,
    recipient: str,
    items: list[str],
    basis: str = "CONSENT",
    purpose: str = "CHILD-WATCH",
    at: dt.datetime | None = None,
) -> None:
    """One allowed decision and its Art. 29 provision record, as the policy point writes them."""
    at = at or dt.datetime.now(dt.UTC)
    node = NodeHome.open(node_dir)
    try:
        entry = {
            "side": "server",
            "message_id": f"m-{subject_ref}-{at.timestamp()}",
            "client": recipient,
            "recipient": recipient,
            "service": "JP/GOV/072028/residents/x",
            "purpose": purpose,
            "basis": basis,
            "subject_ref": subject_ref,
            "allow": True,
            "reason": "ALLOW",
            "at": at.isoformat(),
        }
        digest = sha256_hex(canonical(entry))
        record = {
            "record_type": "CONSENT",
            "recipient": recipient,
            "subject_ref": subject_ref,
            "service": entry["service"],
            "data_items": items,
            "basis": basis,
            "consent_id": None,
        }
        with node.engine.begin() as conn:
            policy_records.insert_decision(conn, entry, digest, at, 3)
            policy_records.insert_provision(conn, at, entry["message_id"], digest, record, 3)
    finally:
        node.close()


# ----- a cookie-keeping HTTPS client ------------------------------------------------------------
@dataclass
class Browser:
    """GET and POST forms with cookies kept per name (the attributes are returned too)."""

    base: str
    context: ssl.SSLContext
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        url = urllib.parse.urlsplit(self.base + path)
        conn = http.client.HTTPSConnection(url.hostname, url.port, context=self.context, timeout=30)
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        target = url.path + (f"?{url.query}" if url.query else "")
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        for raw in resp.headers.get_all("Set-Cookie") or []:
            self.set_cookies.append(raw)
            for name, morsel in SimpleCookie(raw).items():
                if morsel.value == "" or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        conn.close()
        text = data.decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, form)

    def csrf(self, path: str) -> str:
        status, _, text = self.get(path)
        assert status == 200, text
        found = CSRF.search(text)
        assert found, text
        return found.group(1)

    def login(self, username: str, password: str | None = None) -> tuple[int, str]:
        token = self.csrf("/login")
        status, headers, text = self.post(
            "/login",
            {"csrf": token, "username": username, "password": password or PASSWORDS[username]},
        )
        return status, headers.get("location", text)


def body_json(text: str) -> Any:
    return json.loads(text)
