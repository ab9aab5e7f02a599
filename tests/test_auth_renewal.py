"""Issue 12 item 4: certificate renewal without an outage (real processes, real TLS).

Two registered nodes serve and call each other continuously while Aizu renews its sign
and auth certificates the documented way (new key + CSR, the CA issues, import, register);
the registry approves a few seconds later, the configuration propagates and Aizu
switches. Not one call may fail, Aizu must present the new certificate afterwards, and its
``/health`` must never leave ``ok`` (the pending renewal is a warning).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import PASSPHRASE, free_port
from tests.support.cli import StepFailed
from tests.support.common import wait_until
from tests.support.federation import Federation, NodeHandle

pytestmark = pytest.mark.slow

SETTINGS = {"conf_refresh_interval": 1, "conf_validity_seconds": 6}
NODE_CONFIG = {"central": {"refresh_interval": 1}, "ocsp": {"fetch_interval": 2}}


@dataclass
class Traffic:
    """Calls in both directions, one after another per direction, until stopped."""

    fed: Federation
    stop: threading.Event = field(default_factory=threading.Event)
    ok: dict[str, int] = field(default_factory=lambda: {"a->b": 0, "b->a": 0})
    failures: list[str] = field(default_factory=list)
    health: list[tuple[int, str, list[str]]] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def call(self, client: NodeHandle, provider: NodeHandle) -> tuple[int, str]:
        url = f"{client.client_url}/r1/{provider.member}/portal/echo"
        req = urllib.request.Request(
            url,
            data=b'{"renewal":true}',
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Road-Client": f"{client.member}/portal",
                "X-Road-Id": str(uuid.uuid4()),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                return resp.status, ""
        except urllib.error.HTTPError as exc:
            with exc:  # its response holds the connection
                return exc.code, f"{exc.headers.get('X-Road-Error')}: {exc.read()[:300]!r}"
        except OSError as exc:
            return 0, repr(exc)

    def loop(self, name: str, client: NodeHandle, provider: NodeHandle) -> None:
        while not self.stop.is_set():
            status, error = self.call(client, provider)
            if status == 200:
                self.ok[name] += 1
            else:
                self.failures.append(f"{name} at {time.strftime('%X')}: {status} {error}")
            time.sleep(0.05)

    def watch_health(self, node: NodeHandle) -> None:
        while not self.stop.is_set():
            code, body = node.health()
            self.health.append((code, body.get("status", ""), body.get("warnings", [])))
            time.sleep(0.25)

    def start(self) -> None:
        a, b = self.fed.nodes["aizu"], self.fed.nodes["takamatsu"]
        self.threads = [
            threading.Thread(target=self.loop, args=("a->b", a, b)),
            threading.Thread(target=self.loop, args=("b->a", b, a)),
            threading.Thread(target=self.watch_health, args=(a,)),
        ]
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def more_calls(self, count: int, timeout: float, what: str) -> None:
        """Wait until both directions made ``count`` more successful calls."""
        start = dict(self.ok)
        wait_until(
            lambda: all(self.ok[k] - start[k] >= count for k in start) or self.failures,
            timeout,
            what,
        )


def serve_each_other(fed: Federation) -> None:
    """An echo service on each node's portal subsystem, granted to the other's portal."""
    port = free_port()
    fed.start("service", "secnode.demo.services", "--port", str(port), port=port)
    a, b = fed.nodes["aizu"], fed.nodes["takamatsu"]
    for node, other in ((a, b), (b, a)):
        node.cli(
            "service",
            "add",
            "portal",
            "echo",
            "--url",
            f"http://127.0.0.1:{port}/echo",
            "--type",
            "rest",
        )
        node.cli("acl", "grant", "portal/echo", f"{other.member}/portal")
        node.cli("client", "allow", "portal", "--address", "127.0.0.1")


def presented_sha256(node: NodeHandle, as_node: NodeHandle) -> str:
    """SHA-256 of the certificate ``node``'s node-to-node port presents in a TLS handshake
    (we log in as ``as_node``, whose auth certificate the server accepts)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(
        as_node.dir / "certs" / "auth.pem", as_node.dir / "keys" / "auth.key", password=PASSPHRASE
    )
    with (
        socket.create_connection(("127.0.0.1", node.server_port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def sha256_of(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def publish(fed: Federation) -> None:
    """``central conf publish``, retried when it collides with the registry's own re-signing
    (every 2 s with these settings; both allocate the next version: a known central race)."""
    for attempt in range(5):
        try:
            fed.publish()
            return
        except StepFailed as exc:
            if "UNIQUE constraint failed" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.3)


def renew(fed: Federation, node: NodeHandle, usage: str, new_key: bool) -> Path:
    """The documented renewal: (new key + CSR), the CA issues, import. Returns the cert."""
    csr = node.dir / "keys" / f"{usage}.csr"
    if new_key:
        out = node.cli("keys", "new", "--usage", usage, "--renew", "--org", node.member_name)
        csr = Path(out.stdout.split(" and CSR ")[1].strip())
    cert = fed.issue(csr, usage, fed.base / f"{node.name}-{usage}-renewed.pem")
    node.cli("certs", "import", cert)
    return cert


@pytest.mark.parametrize("new_key", [True, False], ids=["new-key", "same-key"])
def test_renewal_keeps_exchange_working_both_ways(federation_factory: Any, new_key: bool) -> None:
    fed: Federation = federation_factory(settings=SETTINGS, node_config=NODE_CONFIG)
    a, b = fed.nodes["aizu"], fed.nodes["takamatsu"]
    serve_each_other(fed)
    fed.start_node("aizu")
    fed.start_node("takamatsu")
    old_auth = presented_sha256(a, b)
    traffic = Traffic(fed)
    traffic.start()
    step_error: Exception | None = None
    try:
        traffic.more_calls(5, 20, "exchange in both directions before the renewal")

        # Sign certificate: in use at import (import requires OCSP good and an approved CA).
        renew(fed, a, "sign", new_key)
        traffic.more_calls(5, 20, "exchange after the sign certificate renewal")

        new_auth = sha256_of(renew(fed, a, "auth", new_key))
        a.cli("register")
        # The registry operator approves some seconds later (longer than a running node
        # takes to notice an import: before the fix the new certificate went live here).
        time.sleep(6)
        traffic.more_calls(5, 20, "exchange while the request waits for approval")
        assert a.status()["registration"]["state"] == (
            "registered (new auth certificate pending approval)"
        )
        assert presented_sha256(a, b) == old_auth  # the new certificate is not live yet
        fed.approve_all(publish=False)
        publish(fed)
        wait_until(
            lambda: "now presenting auth certificate" in fed.log("node-aizu") or traffic.failures,
            40,
            "Aizu to put the renewed auth certificate in use",
        )
        traffic.more_calls(10, 20, "exchange after the switch")
        assert presented_sha256(a, b) == new_auth

        # The registry operator stops publishing the old certificate: nothing changes.
        fed.central("node", "drop-previous-auth-cert", a.node_id)
        publish(fed)
        time.sleep(3)  # > conf_refresh_interval: both nodes hold the new version
        traffic.more_calls(5, 20, "exchange after the old certificate is dropped")
    except Exception as exc:  # report failed calls first: they are the point of the test
        step_error = exc
    finally:
        traffic.finish()
    assert traffic.failures == [], (len(traffic.failures), traffic.failures[:3])
    if step_error is not None:
        raise step_error
    assert min(traffic.ok.values()) >= 30, traffic.ok
    assert a.status()["registration"]["state"] == "registered"
    statuses = {(code, status) for code, status, _ in traffic.health}
    assert statuses == {(200, "ok")}, statuses  # never degraded: the cert in use is registered
    warned = [w for _, _, ws in traffic.health for w in ws if "auth certificate renewal" in w]
    assert any("awaits registration" in w for w in warned), warned[:3]
    assert any("is registered; it is put in use at" in w for w in warned), warned[:3]
