"""TLS at the node's two internal edges (issue 18 item 8), end to end.

Towards provider systems (X-Road REST protocol §4.7): Aizu's services are real HTTPS
servers on 127.0.0.1 (aiohttp, certificates made here with ``openssl``), trusted by a
SHA-256 pin or a CA file, one of them requiring the node's internal TLS client
certificate. A provider presenting another certificate gets no request.

The client interface over HTTPS: Takamatsu serves its information systems over HTTPS
with client certificates (made with our certs toolkit), and the real ``curl`` calls it:
only a certificate registered for the calling subsystem passes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import PASSPHRASE, make_ca
from tests.nodefixtures import Federation, NodeHandle, invoke, wait_until

pytestmark = pytest.mark.slow


# ----- certificates -----------------------------------------------------------------------------
def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def sha256_of(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def colon_fingerprint(cert_file: Path) -> str:
    """The pin as ``openssl x509 -fingerprint -sha256`` prints it (what an operator pastes)."""
    done = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().split("=", 1)[1]


@dataclass(frozen=True)
class ProviderCerts:
    ca: Path
    good: tuple[Path, Path]  # issued by the provider CA, SAN IP:127.0.0.1
    rogue: tuple[Path, Path]  # self-signed, same name, another key


def make_provider_certs(base: Path) -> ProviderCerts:
    base.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    ca_key, ca = base / "ca.key", base / "ca.pem"
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-subj", "/CN=Provider CA")
    ext = base / "leaf.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    key, csr, cert = base / "good.key", base / "good.csr", base / "good.pem"
    openssl("req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "30", "-extfile", ext,
    )  # fmt: skip
    rkey, rcert = base / "rogue.key", base / "rogue.pem"
    openssl(
        "req", "-x509", *ec, "-keyout", rkey, "-out", rcert, "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1",
    )  # fmt: skip
    return ProviderCerts(ca, (cert, key), (rcert, rkey))


# ----- provider systems -------------------------------------------------------------------------
@dataclass
class HttpsProvider:
    """A provider system over HTTPS; records each request it receives and the client
    certificate (SHA-256) the caller presented, if any."""

    name: str
    context: ssl.SSLContext
    seen: list[str | None] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        self.seen.append(hashlib.sha256(der).hexdigest() if der else None)
        return web.json_response({"provider": self.name, "path": request.path})


class ProviderServers:
    """Real aiohttp HTTPS servers on 127.0.0.1 in one background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def start(self, provider: HttpsProvider) -> HttpsProvider:
        async def go() -> int:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", provider.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=provider.context)
            await site.start()
            self.runners.append(runner)
            server = site._server
            assert server is not None and server.sockets  # type: ignore[attr-defined]
            return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

        provider.port = asyncio.run_coroutine_threadsafe(go(), self.loop).result(15)
        return provider

    def close(self) -> None:
        async def stop() -> None:
            for runner in self.runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(client_ca))
    return ctx


# ----- the world --------------------------------------------------------------------------------
@dataclass
class World:
    fed: Federation
    base: Path
    certs: ProviderCerts
    providers: dict[str, HttpsProvider]
    is_certs: dict[str, tuple[Path, Path]]
    """Information systems' certificates and (encrypted) keys: portal, billing, stranger, ..."""

    @property
    def aizu(self) -> NodeHandle:
        return self.fed.nodes["aizu"]

    @property
    def taka(self) -> NodeHandle:
        return self.fed.nodes["takamatsu"]

    def curl(
        self, service: str, who: str | None = "portal", client: str = "portal"
    ) -> subprocess.CompletedProcess[str]:
        """The real curl to Takamatsu's HTTPS client interface, as information system ``who``."""
        args = [
            "curl", "-s", "-m", "30", "-D", "-", "--cacert", str(self.taka.dir / "console-tls.pem"),
            "-H", f"X-Road-Client: {self.taka.member}/{client}",
        ]  # fmt: skip
        if who is not None:
            cert, key = self.is_certs[who]
            args += ["--cert", str(cert), "--key", str(key), "--pass", PASSPHRASE.decode()]
        url = f"https://127.0.0.1:{self.taka.client_port}/r1/{self.aizu.member}/portal/{service}/x"
        return subprocess.run([*args, url], capture_output=True, text=True, timeout=60)


def answer(done: subprocess.CompletedProcess[str]) -> tuple[int, dict[str, str], str]:
    assert done.returncode == 0, (done.returncode, done.stderr)
    head, _, body = done.stdout.partition("\n\n")  # text mode: curl's CRLF read as LF
    lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _add_services(w: World) -> None:
    good, rogue = w.providers["good"].port, w.providers["rogue"].port
    mutual = w.providers["mutual"].port
    pin = colon_fingerprint(w.certs.good[0])
    for code, port, tls in (
        ("pinned", good, ["--tls-pin", pin]),
        ("byca", good, ["--tls-ca", str(w.certs.ca)]),
        ("wrongpin", rogue, ["--tls-pin", pin]),
        ("wrongca", rogue, ["--tls-ca", str(w.certs.ca)]),
        ("mutual", mutual, ["--tls-pin", pin, "--tls-client-cert"]),
        ("nocert", mutual, ["--tls-pin", pin]),
    ):
        url = f"https://127.0.0.1:{port}/api"
        w.aizu.cli("service", "add", "portal", code, "--type", "rest", "--url", url, *tls)
        w.aizu.cli("acl", "grant", f"portal/{code}", f"{w.taka.member}/portal")


def _client_interface_over_https(w: World) -> None:
    """Takamatsu's client interface: HTTPS, client certificates from the IS CA."""
    is_ca = make_ca(w.base, "IS CA")
    for name in ("portal", "billing", "unregistered"):
        issued = is_ca.issue("auth", f"CN={name} information system", name=f"is-{name}")
        w.is_certs[name] = (issued.cert_path, issued.key_path)
    stranger = make_ca(w.base, "Stranger CA").issue("auth", "CN=stranger", name="stranger")
    w.is_certs["stranger"] = (stranger.cert_path, stranger.key_path)
    (w.taka.dir / "is-ca.pem").write_bytes(is_ca.cert_path.read_bytes())
    w.taka.cli("admin", "tls-cert", "--host", "127.0.0.1")
    w.taka.set_config("client", "tls_cert", "console-tls.pem")
    w.taka.set_config("client", "tls_key", "console-tls.key")
    w.taka.set_config("client", "tls_client_ca", "is-ca.pem")
    w.taka.cli("client", "allow", "portal", "--cert", w.is_certs["portal"][0])
    w.taka.cli("client", "allow", "billing", "--cert", w.is_certs["billing"][0])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("edge-tls")
    certs = make_provider_certs(base / "provider")
    servers = ProviderServers()
    fed = Federation.create(base / "fed")
    try:
        for name, member, member_name in (
            ("aizu", "JP/GOV/072028", "Aizu-Wakamatsu City"),
            ("takamatsu", "JP/GOV/372013", "Takamatsu City"),
        ):
            subsystems = ("portal", "billing") if name == "takamatsu" else ("portal",)
            fed.add_node(name, member, member_name, subsystems=subsystems)
        fed.approve_all()
        fed.sync_all()
        aizu = fed.nodes["aizu"]
        # the internal TLS client certificate, made before the mutual provider trusts it
        aizu.cli(
            "service", "add", "portal", "probe", "--type", "rest", "--url",
            "https://127.0.0.1:9/", "--tls-ca", "system", "--tls-client-cert",
        )  # fmt: skip
        internal = aizu.dir / "certs" / "internal-tls.pem"
        good = server_context(*certs.good)
        providers = {
            "good": servers.start(HttpsProvider("good", good)),
            "rogue": servers.start(HttpsProvider("rogue", server_context(*certs.rogue))),
            "mutual": servers.start(
                HttpsProvider("mutual", server_context(*certs.good, client_ca=internal))
            ),
        }
        w = World(fed, base, certs, providers, {})
        _add_services(w)
        _client_interface_over_https(w)
        fed.start_node("aizu")
        fed.start_node("takamatsu")
        wait_until(lambda: answer(w.curl("pinned"))[0] == 200, 30, "a call through both nodes")
        yield w
    finally:
        fed.close()
        servers.close()


@pytest.fixture(autouse=True)
def _fresh_record(world: World) -> None:
    for provider in world.providers.values():
        provider.seen.clear()


# ----- towards provider systems -----------------------------------------------------------------
@pytest.mark.parametrize("service", ["pinned", "byca"])
def test_pinned_or_ca_trusted_provider_answers(world: World, service: str) -> None:
    done = world.curl(service)
    status, _, body = answer(done)
    assert status == 200 and body, done.stdout
    assert json.loads(body) == {"provider": "good", "path": "/api/x"}
    assert world.providers["good"].seen == [None]  # no client certificate was asked for


@pytest.mark.parametrize(
    ("service", "reason"),
    [
        ("wrongpin", "not the pinned"),
        ("wrongca", "TLS certificate is not trusted"),
    ],
)
def test_provider_with_the_wrong_certificate_gets_no_request(
    world: World, service: str, reason: str
) -> None:
    status, headers, body = answer(world.curl(service))
    code = "Server.ServerProxy.ServiceFailed.SslAuthenticationFailed"
    assert (status, headers.get("x-road-error")) == (500, code), body
    assert reason in json.loads(body)["message"] and "request not sent" in body
    assert world.providers["rogue"].seen == []  # the request never reached it
    wait_until(lambda: reason in world.fed.log("node-aizu"), 10, "the refusal in Aizu's log")


def test_wrong_pin_names_both_fingerprints(world: World) -> None:
    _, _, body = answer(world.curl("wrongpin"))
    message = json.loads(body)["message"]
    assert sha256_of(world.certs.rogue[0]) in message
    assert sha256_of(world.certs.good[0]) in message


def test_mutual_tls_presents_the_internal_client_certificate(world: World) -> None:
    status, _, body = answer(world.curl("mutual"))
    assert status == 200, body
    internal = sha256_of(world.aizu.dir / "certs" / "internal-tls.pem")
    assert world.providers["mutual"].seen == [internal]
    assert json.loads(world.aizu.cli("service", "tls", "portal/mutual", "--json").stdout) == {
        "service": f"{world.aizu.member}/portal/mutual",
        "url": f"https://127.0.0.1:{world.providers['mutual'].port}/api",
        "tls": f"pin {sha256_of(world.certs.good[0])} + client cert",
        "trust": "pin",
        "pin": sha256_of(world.certs.good[0]),
        "client_cert": True,
        "client_cert_file": str(world.aizu.dir / "certs" / "internal-tls.pem"),
        "client_cert_sha256": internal,
    }


def test_provider_requiring_a_client_certificate_refuses_a_node_without_one(
    world: World,
) -> None:
    status, headers, body = answer(world.curl("nocert"))
    assert status == 500, body
    assert headers.get("x-road-error", "").startswith("Server.ServerProxy.ServiceFailed"), body
    assert "secnode service tls" in json.loads(body)["message"]
    assert world.providers["mutual"].seen == []


def test_service_tls_changes_take_effect_without_a_restart(world: World) -> None:
    """Switch ``nocert`` to mutual TLS, then back; the node re-reads its services."""
    world.aizu.cli("service", "tls", "portal/nocert", "--tls-client-cert")
    try:
        wait_until(lambda: answer(world.curl("nocert"))[0] == 200, 30, "nocert with mutual TLS")
    finally:
        world.aizu.cli("service", "tls", "portal/nocert", "--no-tls-client-cert")
    wait_until(lambda: answer(world.curl("nocert"))[0] == 500, 30, "nocert without mutual TLS")


def test_service_tls_switches_between_system_ca_and_pin(world: World) -> None:
    """The system store does not know the provider's private CA; a CA file or a pin does."""
    url = f"https://127.0.0.1:{world.providers['good'].port}/api"
    aizu, pin = world.aizu, sha256_of(world.certs.good[0])
    aizu.cli("service", "add", "portal", "switch", "--type", "rest", "--url", url,
             "--tls-ca", "system")  # fmt: skip
    aizu.cli("acl", "grant", "portal/switch", f"{world.taka.member}/portal")
    code = "Server.ServerProxy.ServiceFailed.SslAuthenticationFailed"
    wait_until(
        lambda: answer(world.curl("switch"))[1].get("x-road-error") == code, 30, "system refuses"
    )
    assert world.providers["good"].seen == []
    aizu.cli("service", "tls", "portal/switch", "--tls-ca", world.certs.ca)
    wait_until(lambda: answer(world.curl("switch"))[0] == 200, 30, "the CA file trusted")
    aizu.cli("service", "tls", "portal/switch", "--tls-pin", pin)
    shown = aizu.cli("service", "tls", "portal/switch").stdout
    assert f"tls:                pin {pin}\n" in shown and "client_cert" not in shown
    assert answer(world.curl("switch"))[0] == 200


def test_service_list_shows_the_tls_mode(world: World) -> None:
    listed = world.aizu.cli("service", "list", "--json").json()
    rows = {r["id"].rsplit("/", 1)[1]: r for r in listed}
    pin = sha256_of(world.certs.good[0])
    assert rows["pinned"]["tls"] == f"pin {pin}"
    assert rows["byca"]["tls"] == "ca (1 cert)"
    assert rows["probe"]["tls"] == "system CA store + client cert"
    table = world.aizu.cli("service", "list").stdout
    assert "TLS" in table.splitlines()[0] and f"pin {pin}" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "an https:// service needs --tls-pin SHA256"),
        (["--tls-pin", "abc"], "64 hex digits"),
        (["--tls-pin", "a" * 64, "--tls-ca", "system"], "not both"),
        (["--tls-ca", "/nonexistent/ca.pem"], "cannot read it"),
    ],
)
def test_https_service_refused_without_a_usable_trust_choice(
    world: World, args: list[str], message: str
) -> None:
    url = "https://127.0.0.1:9/"
    done = world.aizu.cli(
        "service", "add", "portal", "refused", "--type", "rest", "--url", url, *args, check=False
    )
    assert done.exit_code != 0 and message in done.stderr, done.stderr
    ids = [r["id"] for r in world.aizu.cli("service", "list", "--json").json()]
    assert f"{world.aizu.member}/portal/refused" not in ids


def test_tls_options_refused_for_plain_http(world: World) -> None:
    done = world.aizu.cli(
        "service", "add", "portal", "plain", "--type", "rest", "--url", "http://127.0.0.1:9/",
        "--tls-ca", "system", check=False,
    )  # fmt: skip
    assert done.exit_code != 0 and "need an https:// URL" in done.stderr, done.stderr
    done = world.aizu.cli("service", "tls", "portal/pinned", "--plain", check=False)
    assert done.exit_code != 0 and "needs a TLS setting" in done.stderr, done.stderr


# ----- the client interface over HTTPS ----------------------------------------------------------
def test_registered_information_system_certificate_passes(world: World) -> None:
    status, _, body = answer(world.curl("pinned", who="portal"))
    assert status == 200 and json.loads(body)["provider"] == "good", body


@pytest.mark.parametrize(
    ("who", "client", "shown"),
    [
        ("unregistered", "portal", "TLS certificate"),
        (None, "portal", "no TLS client certificate"),
        ("billing", "portal", "TLS certificate"),  # registered, but for another subsystem
        ("portal", "billing", "TLS certificate"),
    ],
)
def test_other_callers_refused_with_the_x_road_error(
    world: World, who: str | None, client: str, shown: str
) -> None:
    status, headers, body = answer(world.curl("pinned", who=who, client=client))
    code = "Server.ClientProxy.SslAuthenticationFailed"
    assert (status, headers.get("x-road-error")) == (500, code), body
    message = json.loads(body)["message"]
    assert shown in message and f"may not act as {world.taka.member}/{client}" in message
    assert world.providers["good"].seen == []
    wait_until(
        lambda: message in world.fed.log("node-takamatsu"), 10, "the refusal in Takamatsu's log"
    )


def test_certificate_from_an_unknown_ca_fails_the_handshake(world: World) -> None:
    done = world.curl("pinned", who="stranger")
    # 35: handshake failed, 52: empty reply, 56: reset (TLS 1.3 refuses after the handshake)
    assert done.returncode in (35, 52, 56) and done.stdout == "", (done.returncode, done.stdout)
    assert world.providers["good"].seen == []


# ----- the migration ----------------------------------------------------------------------------
@pytest.mark.parametrize("down_to", ["0009_console", "0006_policy_flow_index"])
def test_upgrade_keeps_grants_and_states_the_system_store_for_old_https_rows(
    tmp_path: Path, down_to: str
) -> None:
    """0010 and 0007 down and up on SQLite, foreign keys on (as the node runs): no grant lost
    (a batch-mode column drop copies the table, and dropping the old one cascades to
    access_rights), and an https service stored before 0010 says how it was trusted
    then: the system store."""
    from alembic import command
    from sqlalchemy import text

    from secnode.store import db

    ca = make_ca(tmp_path, "Anchor CA")
    node = tmp_path / "node"
    invoke(
        "secnode", "init", node, "--member", "JP/GOV/072028", "--server-code", "ss1",
        "--central", "http://127.0.0.1:1", "--anchor", ca.cert_path,
    )  # fmt: skip
    for code in ("old", "plain"):
        invoke("secnode", "service", "add", "portal", code, "--type", "rest",
               "--url", "http://127.0.0.1:9/", "--dir", node)  # fmt: skip
        invoke("secnode", "acl", "grant", f"portal/{code}", "JP/GOV/372013/portal", "--dir", node)
    engine = db.make_engine(f"sqlite:///{node / 'secnode.db'}")
    try:
        with engine.begin() as conn:
            cfg = db._alembic_config(engine, db.NODE_SCHEMA)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, down_to)
            conn.execute(text("UPDATE services SET url = 'https://old.example' WHERE "
                              "service_code = 'old'"))  # fmt: skip
    finally:
        engine.dispose()
    invoke("secnode", "db", "upgrade", "--dir", node)
    rows = {r["id"].rsplit("/", 1)[1]: r for r in invoke(
        "secnode", "service", "list", "--json", "--dir", node).json()}  # fmt: skip
    assert (rows["old"]["tls"], rows["plain"]["tls"]) == ("system CA store", "-")
    assert rows["old"]["granted"] == rows["plain"]["granted"] == ["JP/GOV/372013/portal"]
