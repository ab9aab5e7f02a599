"""Issue 4 failure tests: refused imports, revocation and central outages seen in /health.

Everything runs against real servers (``certs ocsp serve``, ``central serve``,
``secnode serve``) built by :mod:`tests.support.federation`; nothing of ours is mocked.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, text

from secnode.app import jobs
from secnode.config import NodeConfig
from secnode.core import health
from secnode.trust import ocsp_staples
from tests.conftest import PASSPHRASE
from tests.support.cli import in_process, invoke
from tests.support.common import http_json, wait_until
from tests.support.federation import CITIES, Federation, NodeHandle, create

Factory = Callable[..., Federation]

pytestmark = pytest.mark.slow
AIZU = CITIES[0]


# ----- certificate import refusals ----------------------------------------------------------
@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """CA + OCSP + central; node 'aizu' initialised and synced, with keys but no certificates."""
    fed = create(tmp_path_factory.mktemp("imports"))
    try:
        node = fed.add_node(AIZU[0], AIZU[1], AIZU[2], register=False)
        for usage in ("auth", "sign"):
            node.cli("keys", "new", "--usage", usage)
        yield fed
    finally:
        fed.close()


def refused(node: NodeHandle, cert: Path) -> str:
    result = node.cli("certs", "import", cert, check=False)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def imported(node: NodeHandle) -> list[dict[str, object]]:
    return list(json.loads(node.cli("certs", "list", "--json").stdout))


def test_certificate_for_another_key_is_refused(bare: Federation) -> None:
    node = bare.nodes["aizu"]
    key, csr = bare.base / "stranger.key", bare.base / "stranger.csr"
    invoke("certs", "key", "new", "--out", key)
    invoke("certs", "csr", "--key", key, "--subject", f"CN={node.node_id}", "--out", csr)
    cert = bare.issue(csr, "auth", bare.base / "stranger.pem")
    message = refused(node, cert)
    assert "is not for a key of this node" in message
    assert "neither the auth nor the sign key" in message
    assert imported(node) == []


def test_certificate_of_the_wrong_profile_is_refused(bare: Federation) -> None:
    node = bare.nodes["aizu"]
    cert = bare.issue(node.dir / "keys" / "sign.csr", "auth", bare.base / "sign-as-auth.pem")
    message = refused(node, cert)
    assert "wrong profile for the node's sign key" in message
    assert "has profile auth, not sign" in message
    assert imported(node) == []
    assert not (node.dir / "certs" / "sign.pem").exists()


def test_certificate_from_an_unapproved_ca_is_refused(bare: Federation) -> None:
    node = bare.nodes["aizu"]
    other = bare.base / "other-ca"
    invoke("certs", "ca", "init", other, "--name", "Unapproved CA", "--ocsp-url", bare.ocsp_url)
    cert = bare.issue(node.dir / "keys" / "auth.csr", "auth", bare.base / "other.pem", ca_dir=other)
    message = refused(node, cert)
    assert "does not chain to an approved CA" in message
    assert "approves Test Municipal CA" in message


def test_revoked_certificate_is_refused(bare: Federation) -> None:
    node = bare.nodes["aizu"]
    cert = bare.issue(node.dir / "keys" / "auth.csr", "auth", bare.base / "revoked.pem")
    invoke("certs", "revoke", bare.ca_dir, cert, "--reason", "keyCompromise")
    message = refused(node, cert)
    assert "is revoked (keyCompromise)" in message and "according to OCSP" in message
    assert imported(node) == []


def test_unreachable_responder_refuses_rather_than_guessing(bare: Federation) -> None:
    node = bare.nodes["aizu"]
    cert = bare.issue(node.dir / "keys" / "auth.csr", "auth", bare.base / "unchecked.pem")
    bare.stop("ocsp")
    try:
        message = refused(node, cert)
    finally:
        bare.start_ocsp()
    assert "cannot confirm that" in message and "is not revoked" in message
    assert f"cannot reach OCSP responder {bare.ocsp_url}" in message


def test_import_before_any_global_configuration_is_refused(
    bare: Federation, tmp_path: Path
) -> None:
    d = tmp_path / "fresh"
    invoke(
        "secnode",
        "init",
        d,
        "--member",
        AIZU[1],
        "--server-code",
        "ss9",
        "--central",
        "http://127.0.0.1:9",
        "--anchor",
        bare.anchor,
    )
    node = NodeHandle("fresh", AIZU[1], AIZU[2], "ss9", d, 0, 0, 0, run=in_process)
    node.cli("keys", "new", "--usage", "auth")
    cert = bare.issue(d / "keys" / "auth.csr", "auth", d / "auth.pem")
    message = refused(node, cert)
    assert "no global configuration yet" in message and "secnode sync" in message


def test_sign_certificate_naming_another_member_is_refused(
    bare: Federation, tmp_path: Path
) -> None:
    other_member = CITIES[1][1]
    node = bare.add_node(
        "impostor", AIZU[1], server_code="ss2", subsystems=(), add_member=False, register=False
    )
    node.cli(
        "keys",
        "new",
        "--usage",
        "sign",
        "--subject",
        f"serialNumber={other_member}, CN={other_member}, C=JP",
    )
    cert = bare.issue(node.dir / "keys" / "sign.csr", "sign", tmp_path / "sign.pem")
    message = refused(node, cert)
    assert f"names member {other_member}" in message and f"belongs to {AIZU[1]}" in message


def test_good_certificates_import_and_replace(bare: Federation) -> None:
    """After all the refusals the node still takes valid certificates (and a renewal)."""
    node = bare.nodes["aizu"]
    for usage in ("auth", "sign"):
        out = node.cli(
            "certs",
            "import",
            bare.issue(node.dir / "keys" / f"{usage}.csr", usage, node.cert_path(usage)),
            "--json",
        ).json()
        assert out["usage"] == usage and out["ocsp_status"] == "good"
    renewal = bare.issue(node.dir / "keys" / "auth.csr", "auth", bare.base / "renewal.pem")
    assert node.cli("certs", "import", renewal, "--json").json()["replaced"] == 1
    rows = imported(node)
    assert sorted((r["usage"], r["active"]) for r in rows) == [
        ("auth", False),
        ("auth", True),
        ("sign", True),
    ]
    assert (node.dir / "certs" / "auth.pem").read_bytes() == renewal.read_bytes()


# ----- OCSP job in secnode serve ------------------------------------------------------------
def test_responder_down_is_reported_then_revocation_makes_node_unhealthy(
    federation_factory: Factory,
) -> None:
    fed = federation_factory(
        members=1, node_config={"ocsp": {"fetch_interval": 1, "retry_min": 1, "retry_max": 2}}
    )
    node = fed.nodes["aizu"]
    fed.start_node("aizu")
    assert 'secnode_ocsp_good{usage="sign"} 1.0' in node.metrics()

    fed.stop("ocsp")  # a responder that is down: still healthy on the fresh staple, but said
    # Both certificates' refreshes fail in turn; wait until the sign one has (order varies).
    body = wait_until(
        lambda: (
            (b := node.health()[1])["warnings"]
            and b["certificates"]["sign"]["ocsp"]["failures"] >= 1
            and b
        ),
        8,
        "a warning about the OCSP responder for the sign certificate",
    )
    assert node.health()[0] == 200
    assert any(
        "OCSP refresh for the" in w
        and "cannot reach OCSP responder" in w
        and "next attempt in" in w
        for w in body["warnings"]
    ), body
    assert body["certificates"]["sign"]["ocsp"]["failures"] >= 1
    fed.start_ocsp()

    fed.certs("revoke", fed.ca_dir, node.cert_path("sign"), "--reason", "keyCompromise")
    # One refresh interval (1 s) plus the back-off still pending (at most retry_max, 2 s).
    _, body = wait_until(
        lambda: (r := node.health())[0] == 503 and r,
        6,
        "/health to turn unhealthy after revocation",
    )
    assert body["status"] == "unhealthy"
    assert body["reasons"] == ["sign certificate is revoked according to OCSP"]
    assert body["certificates"]["sign"]["ocsp"]["status"] == "revoked"
    assert body["certificates"]["auth"]["ocsp"]["status"] == "good"
    metrics = node.metrics()
    assert 'secnode_ocsp_good{usage="sign"} 0.0' in metrics
    assert "secnode_healthy 0.0" in metrics
    assert "revoked" in fed.log("node-aizu")  # logged, not only shown
    status = node.status()  # the CLI sees what the server stored
    assert status["certificates"]["sign"]["ocsp"]["status"] == "revoked"
    assert status["health"]["status"] == "unhealthy"


# ----- changes picked up while serving -------------------------------------------------------
def presented_cert(node: NodeHandle) -> bytes:
    """The certificate the node-to-node port presents (we log in with the node's own key)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(
        node.dir / "certs" / "auth.pem", node.dir / "keys" / "auth.key", password=PASSPHRASE
    )
    with (
        socket.create_connection(("127.0.0.1", node.server_port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_running_node_follows_new_cas_and_a_renewed_auth_certificate(
    federation_factory: Factory,
) -> None:
    fed = federation_factory(
        members=1,
        node_config={"central": {"refresh_interval": 1}, "ocsp": {"fetch_interval": 1}},
        settings={"conf_refresh_interval": 1, "conf_validity_seconds": 6},
    )
    node = fed.nodes["aizu"]
    fed.start_node("aizu")
    before = presented_cert(node)
    assert before == x509.load_pem_x509_certificate(
        node.cert_path("auth").read_bytes()
    ).public_bytes(serialization.Encoding.DER)

    other = fed.base / "second-ca"
    fed.certs("ca", "init", other, "--name", "Second CA", "--ocsp-url", fed.ocsp_url)
    fed.central("ca", "add", other / "ca.pem", "--ocsp-url", fed.ocsp_url)
    version = fed.publish()
    wait_until(
        lambda: "approved CAs changed (1 added, 0 removed)" in fed.log("node-aizu"),
        5,
        "the node to take up the new CA",
    )
    assert f"-> {version}" in fed.log("node-aizu")  # the version change is logged

    # A renewal (same key here) waits: the registered certificate stays in use meanwhile.
    renewal = fed.issue(node.dir / "keys" / "auth.csr", "auth", fed.base / "auth-renewal.pem")
    assert node.cli("certs", "import", renewal, "--json").json()["pending"] is True
    assert node.status()["registration"]["state"] == (
        "registered (new auth certificate imported: run 'secnode register')"
    )
    node.cli("register")
    assert node.status()["registration"]["state"] == (
        "registered (new auth certificate pending approval)"
    )
    assert presented_cert(node) == before
    fed.approve_all()
    wait_until(
        lambda: "now presenting auth certificate" in fed.log("node-aizu"),
        20,
        "the node to put the renewed auth certificate in use",
    )
    renewed = x509.load_pem_x509_certificate(renewal.read_bytes())
    assert presented_cert(node) == renewed.public_bytes(serialization.Encoding.DER)
    assert node.status()["registration"]["state"] == "registered"


# ----- central registry unreachable ---------------------------------------------------------
def list_clients(node: NodeHandle) -> tuple[int, dict[str, Any]]:
    """The client interface's listClients metaservice (answered from the global conf)."""
    return http_json(f"{node.client_url}/listClients")


def test_central_down_keeps_last_good_conf_until_it_expires(federation_factory: Factory) -> None:
    fed = federation_factory(members=1)
    fed.central("settings", "set", "conf_refresh_interval", "1")
    fed.central("settings", "set", "conf_validity_seconds", "6")
    fed.publish()
    fed.restart_central()
    node = fed.nodes["aizu"]
    fed.start_node("aizu")
    wait_until(
        lambda: node.health()[1]["conf"]["seconds_to_expiry"] <= 6,
        5,
        "the node to hold a short-lived version",
    )

    assert list_clients(node)[0] == 200
    fed.stop("central")
    held = node.health()[1]["conf"]["version"]

    def conf_warnings(body: dict[str, Any]) -> list[str]:
        return [w for w in body["warnings"] if "global configuration" in w]

    body = wait_until(
        lambda: conf_warnings(b := node.health()[1]) and b,
        4,
        "a warning that central cannot be reached",
    )
    assert body["status"] == "ok" and body["conf"]["version"] == held
    assert "global configuration refresh failing since" in conf_warnings(body)[0]
    sync = node.cli("sync", check=False)
    assert sync.exit_code == 1 and f"keeping version {held}" in sync.stdout

    _, body = wait_until(
        lambda: (r := node.health())[0] == 503 and r,
        10,
        "/health to report the expired configuration",
    )
    assert body["conf"]["version"] == held and body["conf"]["expired"] is True
    [reason] = body["reasons"]
    assert f"global configuration version {held} expired at" in reason
    assert "message exchange stopped" in reason
    assert "central registry cannot be reached since" in reason
    assert "secnode_conf_expires_in_seconds -" in node.metrics()
    code, answer = list_clients(node)  # the message path itself refuses now
    assert code >= 400 and "OutdatedGlobalConf" in answer["type"] + answer.get("code", ""), answer
    wait_until(lambda: "message exchange stopped" in fed.log("node-aizu"), 3, "the log line")

    fed.start_central()  # the registry comes back: a new version, healthy again
    body = wait_until(lambda: (r := node.health())[0] == 200 and r[1], 8, "recovery")
    assert body["conf"]["version"] > held and conf_warnings(body) == []


# ----- PostgreSQL node database -------------------------------------------------------------
@pytest.fixture
def pg_node_db(pg_url: str) -> Iterator[str]:
    """A schema of its own in the test database, dropped afterwards."""
    schema = f"node_{secrets.token_hex(4)}"
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}options=" + urllib.parse.quote(f"-csearch_path={schema}")
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.mark.postgres
def test_node_on_postgresql_registers_and_serves(
    federation_factory: Factory, pg_node_db: str
) -> None:
    fed = federation_factory(members=1, db_urls={"aizu": pg_node_db})
    node = fed.nodes["aizu"]
    assert "postgresql" in (node.dir / "secnode.toml").read_text()
    assert not (node.dir / "secnode.db").exists()
    status = node.status()
    assert status["registration"]["state"] == "registered"
    assert status["certificates"]["sign"]["ocsp"]["status"] == "good"
    fed.start_node("aizu")
    code, body = node.health()
    assert code == 200 and body["registered"] is True


# ----- pure parts: back-off, scheduling, the health judgement -------------------------------
def test_backoff_doubles_from_retry_min_to_retry_max() -> None:
    config = NodeConfig()
    config.ocsp.retry_min, config.ocsp.retry_max = 5, 60
    assert [ocsp_staples.backoff(config, n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_ocsp_interval_prefers_node_setting_but_stays_below_freshness() -> None:
    config = NodeConfig()
    assert jobs.ocsp_interval(config, None) == 1200
    config.ocsp.fetch_interval = 10_000
    assert jobs.ocsp_interval(config, None) == 1800  # half of the 3600 s freshness


NOW = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)


def cert(
    usage: str, status: str | None = "good", age: float = 10, error: str | None = None
) -> health.CertView:
    return health.CertView(
        usage,
        f"CN={usage}",
        "ab" * 32,
        NOW - dt.timedelta(days=1),
        NOW + dt.timedelta(days=365),
        status,
        NOW - dt.timedelta(seconds=age) if status else None,
        None,
        NOW,
        error,
        1 if error else 0,
    )


def conf(expires_in: float = 300) -> health.ConfView:
    return health.ConfView(
        7,
        NOW - dt.timedelta(seconds=10),
        NOW + dt.timedelta(seconds=expires_in),
        {"ocsp_freshness_seconds": 600},
    )


def test_health_ok_and_each_reason() -> None:
    good: dict[str, health.CertView | None] = {"auth": cert("auth"), "sign": cert("sign")}
    assert health.assess("n", conf(), good, NOW).healthy
    cases: dict[str, tuple[health.ConfView | None, dict[str, health.CertView | None]]] = {
        "no global configuration yet": (None, good),
        "expired at": (conf(-1), good),
        "no sign certificate imported": (conf(), {"auth": cert("auth"), "sign": None}),
        "auth certificate is revoked": (conf(), {**good, "auth": cert("auth", "revoked")}),
        "is stale": (conf(), {**good, "sign": cert("sign", age=601)}),
        "no OCSP response for the auth": (conf(), {**good, "auth": cert("auth", None)}),
        "status of the sign certificate is unknown": (
            conf(),
            {**good, "sign": cert("sign", "unknown")},
        ),
    }
    for expected, (c, certs) in cases.items():
        result = health.assess("n", c, certs, NOW)
        assert not result.healthy and result.http_status == 503
        assert len(result.reasons) == 1 and expected in result.reasons[0], (expected, result)


def test_health_warns_while_held_copies_still_work() -> None:
    job = health.ConfJob(ok_at=None, error="cannot fetch", failing_since="2026-04-01T08:59:00Z")
    certs = {"auth": cert("auth", error="responder down"), "sign": cert("sign")}
    result = health.assess("n", conf(), certs, NOW, conf_job=job, registered=False)
    assert result.healthy and result.reasons == []
    assert len(result.warnings) == 3


def test_registration_state_moves_from_pending_to_registered(bare: Federation) -> None:
    node = bare.nodes["aizu"]
    if not imported(node):  # when run alone
        test_good_certificates_import_and_replace(bare)
    assert node.status()["registration"]["state"] == "not registered"
    node.cli("subsystem", "add", "residents")
    dup = node.cli("subsystem", "add", "residents", check=False)
    assert dup.exit_code == 1 and "already exists" in dup.stderr
    sent = node.cli("register", "--json").json()
    assert sent["state"] == "pending" and sent["subsystems"] == [f"{AIZU[1]}/residents"]
    status = node.status()
    assert status["registration"]["state"] == "pending approval"
    assert status["subsystems"][0]["registered"] is False
    version = bare.approve_all()
    node.cli("sync")
    status = node.status()
    assert status["registration"]["state"] == "registered"
    assert status["subsystems"][0]["registered"] is True
    assert status["conf"]["version"] >= (version or 0)
