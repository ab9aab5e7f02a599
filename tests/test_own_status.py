"""Issue 12 item 2: a node never signs, logs or calls a service under its own bad status.

Real processes throughout: CA + OCSP responder, TSA, central registry, the Aizu
and Takamatsu nodes, and a provider system (a recording HTTP server in this
process) so a test can count whether the service was called at all. The OCSP
responder is stopped and started, ``certs revoke`` revokes a node's sign
certificate while the nodes run, and a new sign certificate is imported into a
running node; each time exchange must stop or resume without a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from certs import keys
from certs.ocsp import build_request
from certs.ocsp_server import load_responder
from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.message import MessageHeaders, request_digest
from secnode.core.msgsig import MessageSigner
from secnode.demo.ports import free_port
from secnode.proxy import wire
from secnode.trust.tls import pinned_client_context
from tests.conftest import PASSPHRASE
from tests.support.common import wait_until
from tests.support.federation import NodeHandle
from tests.support.logfed import LogFederation, Reply, build_log_federation
from tests.support.witness import witness_headers

pytestmark = pytest.mark.slow

#: OCSP fetched every second, failures retried every second.
FAST_OCSP = {"ocsp": {"fetch_interval": 1, "retry_min": 1, "retry_max": 1}}
OWN_STATE = "this node cannot sign"


# ----- a provider system that counts its calls ----------------------------------------------
class Recorder:
    """A real HTTP provider system; ``calls`` lists the X-Road-Id of every request it got."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.calls.append(self.headers.get("X-Road-Id", ""))
                body = b'{"recorded":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class World:
    lf: LogFederation
    recorder: Recorder

    def call(self, client: NodeHandle, provider: NodeHandle) -> Reply:
        """``client``'s portal calls ``provider``'s residents/record through both nodes."""
        mid = str(uuid.uuid4())
        req = urllib.request.Request(
            f"{client.client_url}/r1/{provider.member}/residents/record",
            data=b'{"n":1}',
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Road-Client": f"{client.member}/portal",
                "X-Road-Id": mid,
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                return Reply(resp.status, mid, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            with exc:  # its response holds the connection
                return Reply(exc.code, mid, exc.read(), dict(exc.headers))

    def reached_service(self, reply: Reply) -> bool:
        return reply.message_id in self.recorder.calls


def build_world(base: Path, settings: dict[str, int] | None = None) -> World:
    """Both cities serve residents/record (the recorder) to each other's portal; running."""
    lf = build_log_federation(base, settings=settings, node_config=FAST_OCSP)
    recorder = Recorder()
    try:
        for provider, client in ((lf.aizu, lf.takamatsu), (lf.takamatsu, lf.aizu)):
            provider.cli(
                "service",
                "add",
                "residents",
                "record",
                "--url",
                f"http://127.0.0.1:{recorder.port}/record",
                "--type",
                "rest",
            )
            provider.cli("acl", "grant", "residents/record", f"{client.member}/portal")
        lf.aizu.cli("client", "allow", "portal", "--address", "127.0.0.1")
        lf.start_nodes()
    except BaseException:
        recorder.close()
        lf.close()
        raise
    return World(lf, recorder)


@pytest.fixture
def world_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[World] = []

    def make(**kwargs: Any) -> World:
        made.append(build_world(tmp_path / f"w{len(made)}", **kwargs))
        return made[-1]

    yield make
    for w in made:
        w.recorder.close()
        w.lf.close()


def unhealthy_with(node: NodeHandle, words: str) -> Any:
    code, body = node.health()
    return code == 503 and any(words in r for r in body["reasons"]) and body


def healthy(node: NodeHandle) -> bool:
    return node.health()[0] == 200


def assert_ok(world: World, client: NodeHandle, provider: NodeHandle) -> None:
    reply = world.call(client, provider)
    assert reply.status == 200 and world.reached_service(reply), (reply.status, reply.body)


def refused(world: World, client: NodeHandle, provider: NodeHandle, code: str) -> Reply:
    """Poll until the exchange is refused with ``code`` (the node reloads just after the
    database row that ``/health`` reads is written)."""

    def attempt() -> Reply | None:
        reply = world.call(client, provider)
        return reply if reply.error == code else None

    wait_until(attempt, 10, f"{client.name} -> {provider.name} refused: {code}")
    # The first refusal may be of a call whose pre-service check passed just before the node
    # learned the state (then the check before signing refused it): the next call is judged.
    reply = world.call(client, provider)
    assert reply.error == code, (reply.status, reply.body)
    return reply


def resumed(world: World, client: NodeHandle, provider: NodeHandle) -> None:
    wait_until(
        lambda: (r := world.call(client, provider)).status == 200 and world.reached_service(r),
        10,
        f"{client.name} -> {provider.name} resumed",
    )


# ----- a peer speaking node-to-node directly (for a fresh client against a stale provider) ----
def signed_direct_request(
    world: World, client: NodeHandle, provider: NodeHandle, body: bytes = b'{"n":2}'
) -> tuple[str, dict[str, str], bytes]:
    """``client``'s real keys and a fresh staple made by the CA's responder key in-process."""
    d = client.dir
    sign_cert = x509.load_pem_x509_certificate((d / "certs" / "sign.pem").read_bytes())
    signer = MessageSigner(
        sign_cert, keys.SoftwareSigner.from_file(d / "keys" / "sign.key", PASSPHRASE)
    )
    responder = load_responder(world.lf.fed.ca_dir, PASSPHRASE)
    ocsp_req, _ = build_request(sign_cert, responder.issuer, nonce=False)
    staple = responder.respond(ocsp_req).der
    headers = MessageHeaders(
        protocol="rest",
        client=SubsystemId.parse(f"{client.member}/portal"),
        service=ServiceId.parse(f"{provider.member}/residents/record"),
        message_id=str(uuid.uuid4()),
        rest_method="POST",
        rest_path="",
        content_type="application/json",
    )
    digest = request_digest(headers, hashlib.sha256(body).digest())
    signature = signer.sign(digest)
    witness = witness_headers(signer, digest)
    target = x509.load_pem_x509_certificate((provider.dir / "certs" / "auth.pem").read_bytes())
    ctx = pinned_client_context(
        d / "certs" / "auth.pem", d / "keys" / "auth.key", PASSPHRASE, target
    )

    async def go() -> tuple[dict[str, str], bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://{provider.address}{wire.EXCHANGE_PATH}",
                data=body,
                ssl=ctx,
                headers={
                    wire.H_MESSAGE: wire.encode_headers(headers),
                    wire.H_SIGNATURE: wire.b64(signature),
                    wire.H_OCSP: wire.b64(staple),
                    "Content-Type": "application/json",
                    **witness,
                },
            ) as resp,
        ):
            return dict(resp.headers), await resp.read()

    resp_headers, out = asyncio.run(go())
    return headers.message_id, resp_headers, out


# ----- the tests ------------------------------------------------------------------------------
def test_stale_own_status_refuses_before_signing_and_before_service(world_factory: Any) -> None:
    """OCSP responder down past the freshness: both nodes refuse on their own side; the
    provider system is never called; the responder back -> exchange resumes, no restart."""
    w = world_factory(
        settings={"timestamping_interval": 1, "ocsp_fetch_interval": 2, "ocsp_freshness_seconds": 6}
    )
    aizu, taka = w.lf.aizu, w.lf.takamatsu
    assert_ok(w, taka, aizu)
    w.lf.fed.stop("ocsp")
    for node in (aizu, taka):
        body = wait_until(
            partial(unhealthy_with, node, "OCSP response for the sign certificate is stale"),
            30,
            f"{node.name} /health 503 with a stale sign OCSP response",
        )
        assert any("OCSP responder" in r for r in body["reasons"]), body["reasons"]

    # Client side: Takamatsu refuses before it signs and sends (not the peer's InvalidSignature).
    reply = w.call(taka, aizu)
    assert reply.error == "Server.ClientProxy.InternalError", (reply.status, reply.body)
    assert OWN_STATE.encode() in reply.body and b"is stale" in reply.body, reply.body
    assert not w.reached_service(reply)

    # Provider side: a client with a fresh staple; Aizu refuses before calling its service.
    mid, headers, out = signed_direct_request(w, taka, aizu)
    assert headers.get("X-Road-Error") == "Server.ServerProxy.InternalError", out
    assert OWN_STATE.encode() in out and b"is stale" in out, out
    assert wire.H_SIGNATURE not in headers
    assert mid not in w.recorder.calls, "the provider system was called under a stale status"

    w.lf.fed.start_ocsp()
    for node in (aizu, taka):
        wait_until(partial(healthy, node), 30, f"{node.name} /health ok again")
    resumed(w, taka, aizu)
    resumed(w, aizu, taka)


def test_revoked_sign_certificate_stops_a_running_node_both_ways(world_factory: Any) -> None:
    """``certs revoke`` of Aizu's sign certificate while it runs: within the (1 s) fetch
    interval Aizu refuses to send and to serve; a new sign certificate resumes it."""
    w = world_factory()
    aizu, taka = w.lf.aizu, w.lf.takamatsu
    assert_ok(w, taka, aizu)
    assert_ok(w, aizu, taka)
    sign_cert = x509.load_pem_x509_certificate((aizu.dir / "certs" / "sign.pem").read_bytes())
    w.lf.fed.certs(
        "revoke", w.lf.fed.ca_dir, format(sign_cert.serial_number, "X"), "--reason", "keyCompromise"
    )
    wait_until(
        lambda: unhealthy_with(aizu, "sign certificate is revoked"),
        20,
        "aizu /health 503: sign certificate revoked",
    )

    outgoing = refused(w, aizu, taka, "Server.ClientProxy.InternalError")
    assert OWN_STATE.encode() in outgoing.body and b"revoked" in outgoing.body
    assert not w.reached_service(outgoing)

    incoming = refused(w, taka, aizu, "Server.ServerProxy.InternalError")
    assert OWN_STATE.encode() in incoming.body and b"revoked" in incoming.body
    assert not w.reached_service(incoming), "Aizu called its service with a revoked status"

    # Renewal as documented, into the running node: new key, certificate, import.
    shutil.move(aizu.dir / "keys" / "sign.key", aizu.dir / "keys" / "sign.key.revoked")
    aizu.cli("keys", "new", "--usage", "sign", "--org", aizu.member_name)
    w.lf.fed.issue(aizu.dir / "keys" / "sign.csr", "sign", aizu.cert_path("sign"))
    aizu.cli("certs", "import", aizu.cert_path("sign"))
    wait_until(partial(healthy, aizu), 20, "aizu /health ok with the new certificate")
    resumed(w, taka, aizu)
    resumed(w, aizu, taka)


def test_a_revocation_fetched_by_another_process_applies_at_once(world_factory: Any) -> None:
    """``secnode sync`` (another process on the node's database) records the revocation;
    the running node, whose own next fetch is 10 minutes away, stops within seconds."""
    w = world_factory()
    aizu, taka = w.lf.aizu, w.lf.takamatsu
    aizu.set_config("ocsp", "fetch_interval", 600)
    w.lf.fed.stop_node("aizu")
    w.lf.fed.start_node("aizu")
    assert_ok(w, taka, aizu)
    sign_cert = x509.load_pem_x509_certificate((aizu.dir / "certs" / "sign.pem").read_bytes())
    w.lf.fed.certs("revoke", w.lf.fed.ca_dir, format(sign_cert.serial_number, "X"))
    aizu.cli("sync", check=False)  # exits 1: a certificate is not good
    incoming = refused(w, taka, aizu, "Server.ServerProxy.InternalError")
    assert b"revoked" in incoming.body and not w.reached_service(incoming)
    outgoing = w.call(aizu, taka)
    assert outgoing.error == "Server.ClientProxy.InternalError" and b"revoked" in outgoing.body
