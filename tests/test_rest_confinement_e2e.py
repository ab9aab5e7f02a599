"""A REST call stays inside the service it was granted, end to end.

Two real nodes (Aizu provides ``portal/files`` at ``http://127.0.0.1:PORT/base``,
Takamatsu's portal calls it) and a real provider HTTP server that records the exact
request line and headers it receives. Hostile paths are sent with ``curl
--path-as-is`` (Python clients may normalise them first) and straight to the provider
node's node-to-node port, properly signed with Takamatsu's real keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import socketserver
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from cryptography import x509

from certs import keys
from certs.ocsp import build_request
from certs.ocsp_server import load_responder
from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.message import MessageHeaders, request_digest
from secnode.core.msgsig import MessageSigner
from secnode.proxy import wire
from secnode.trust.tls import pinned_client_context
from tests.conftest import PASSPHRASE
from tests.support.common import wait_until
from tests.support.federation import Federation, NodeHandle, build_federation
from tests.support.witness import witness_headers

pytestmark = pytest.mark.slow

BASE = "/base"


@dataclass
class Seen:
    request_line: str
    headers: list[tuple[str, str]]


@dataclass
class RecordingService:
    """A provider system that keeps every request line and header exactly as received."""

    seen: list[Seen] = field(default_factory=list)
    server: socketserver.ThreadingTCPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def start(self) -> None:
        recorder = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode("latin-1").rstrip("\r\n")
                headers: list[tuple[str, str]] = []
                while (raw := self.rfile.readline().decode("latin-1").rstrip("\r\n")) != "":
                    name, _, value = raw.partition(":")
                    headers.append((name, value.strip()))
                length = int(dict((n.lower(), v) for n, v in headers).get("content-length", 0))
                self.rfile.read(length)
                recorder.seen.append(Seen(line, headers))
                body = json.dumps({"line": line}).encode()
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class World:
    fed: Federation
    service: RecordingService

    @property
    def aizu(self) -> NodeHandle:
        return self.fed.nodes["aizu"]

    @property
    def taka(self) -> NodeHandle:
        return self.fed.nodes["takamatsu"]

    @property
    def service_id(self) -> str:
        return f"{self.aizu.member}/portal/files"

    @property
    def client_id(self) -> str:
        return f"{self.taka.member}/portal"

    def curl(self, target: str, *headers: str) -> tuple[int, dict[str, str], bytes]:
        """``curl --path-as-is`` to Takamatsu's client interface: the target sent unchanged."""
        args = ["curl", "-s", "--path-as-is", "-D", "-", "-H", f"X-Road-Client: {self.client_id}"]
        for header in headers:
            args += ["-H", header]
        done = subprocess.run(
            [*args, f"{self.taka.client_url}{target}"], capture_output=True, timeout=30, check=True
        )
        head, _, body = done.stdout.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        return (
            status,
            {k.strip(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])},
            body,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One federation for the module; each test starts with an empty record of requests."""
    service = RecordingService()
    service.start()
    fed = build_federation(tmp_path_factory.mktemp("confinement"))
    w = World(fed, service)
    try:
        w.aizu.cli(
            "service",
            "add",
            "portal",
            "files",
            "--type",
            "rest",
            "--url",
            f"http://127.0.0.1:{service.port}{BASE}",
        )
        w.aizu.cli("acl", "grant", "portal/files", w.client_id)
        w.taka.cli("client", "allow", "portal", "--address", "127.0.0.1")
        fed.start_node("aizu")
        fed.start_node("takamatsu")
        wait_until(
            lambda: w.curl(f"/r1/{w.service_id}/ready")[0] == 200,
            20,
            "the control call through both nodes",
        )
        yield w
    finally:
        fed.close()
        service.stop()


@pytest.fixture(autouse=True)
def _fresh_record(world: World) -> None:
    world.service.seen.clear()


HOSTILE = [
    "/../outside",
    "/%2e%2e/outside",
    "/%2E%2E/outside",
    "/.%2e/outside",
    "/./../../outside",
    "/x/..%2f..%2foutside",
    "/..%5coutside",
    "/%252e%252e/outside",
    "/..;/outside",
]


def test_hostile_paths_refused_before_the_provider(world: World) -> None:
    for tail in HOSTILE:
        status, headers, body = world.curl(f"/r1/{world.service_id}{tail}")
        assert (status, headers.get("X-Road-Error")) == (400, "Client.BadRequest"), (tail, body)
        assert b"'.' or '..' segment" in body, body
    assert world.service.seen == []  # the provider system saw none of them
    wait_until(
        lambda: world.fed.log("node-takamatsu").count("segment (in some encoding)") >= len(HOSTILE),
        10,
        "one refusal log line per hostile path",
    )


def test_path_and_query_arrive_byte_for_byte(world: World) -> None:
    status, _, body = world.curl(f"/r1/{world.service_id}/a%2Fb%3Ac%7Ed%3Be?q=%2F%3A&r=%7E")
    assert status == 200, body
    assert [s.request_line for s in world.service.seen] == [
        f"GET {BASE}/a%2Fb%3Ac%7Ed%3Be?q=%2F%3A&r=%7E HTTP/1.1"
    ]


def test_underscore_headers_do_not_reach_the_provider(world: World) -> None:
    status, _, body = world.curl(
        f"/r1/{world.service_id}/x",
        "X_Road_Client: JP/GOV/9/forged",
        "X_Road_Id: forged",
        "My-Header: kept",
    )
    assert status == 200, body
    (seen,) = world.service.seen
    names = [n for n, _ in seen.headers]
    assert not [n for n in names if "_" in n], seen.headers
    assert ("X-Road-Client", world.client_id) in seen.headers
    assert ("My-Header", "kept") in seen.headers


# ----- a peer node's signed path -------------------------------------------------------------
def signed_send(w: World, rest_path: str) -> tuple[int, dict[str, str], bytes]:
    """What a (rogue or buggy) Takamatsu node could send: a properly signed request whose
    signed path leaves the service, sent with Takamatsu's real auth and sign keys."""
    taka_dir, aizu_dir = w.taka.dir, w.aizu.dir
    sign_cert = x509.load_pem_x509_certificate((taka_dir / "certs" / "sign.pem").read_bytes())
    signer = MessageSigner(
        sign_cert, keys.SoftwareSigner.from_file(taka_dir / "keys" / "sign.key", PASSPHRASE)
    )
    responder = load_responder(w.fed.ca_dir, PASSPHRASE)
    staple = responder.respond(build_request(sign_cert, responder.issuer, nonce=False)[0]).der
    headers = MessageHeaders(
        protocol="rest",
        client=SubsystemId.parse(w.client_id),
        service=ServiceId.parse(w.service_id),
        message_id=str(uuid.uuid4()),
        rest_method="GET",
        rest_path=rest_path,
        content_type=None,
    )
    digest = request_digest(headers, hashlib.sha256(b"").digest())
    signature = signer.sign(digest)
    witness = witness_headers(signer, digest)
    target = x509.load_pem_x509_certificate((aizu_dir / "certs" / "auth.pem").read_bytes())
    ctx = pinned_client_context(
        taka_dir / "certs" / "auth.pem", taka_dir / "keys" / "auth.key", PASSPHRASE, target
    )

    async def go() -> tuple[int, dict[str, str], bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://127.0.0.1:{w.aizu.server_port}{wire.EXCHANGE_PATH}",
                data=b"",
                ssl=ctx,
                headers={
                    wire.H_VERSION: wire.WIRE_VERSION,
                    wire.H_MESSAGE: wire.encode_headers(headers),
                    wire.H_SIGNATURE: wire.b64(signature),
                    wire.H_OCSP: wire.b64(staple),
                    **witness,
                },
            ) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.read()

    return asyncio.run(go())


def test_provider_node_refuses_a_signed_path_that_leaves_the_service(world: World) -> None:
    status, _, body = signed_send(world, "/inside")  # the control: same construction
    assert status == 200 and world.service.seen[-1].request_line.startswith(
        f"GET {BASE}/inside "
    ), body
    world.service.seen.clear()
    for rest_path in (
        "/../outside",
        "/%2e%2e/outside",
        "/a/%2E%2E/%2e%2e/outside",
        "/x\\..\\..\\outside",
        "/..;/outside",
    ):
        status, headers, body = signed_send(world, rest_path)
        assert (status, headers.get("X-Road-Error")) == (400, "Client.BadRequest"), body
    assert world.service.seen == []
    wait_until(
        lambda: "segment (in some encoding)" in world.fed.log("node-aizu"),
        10,
        "the provider node's refusal in its log",
    )


def test_curl_is_not_normalising() -> None:
    """Guard for the tests above: curl --path-as-is really sends '..' (seen at a raw socket)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            ["curl", "-s", "-m", "5", "--path-as-is", f"http://127.0.0.1:{port}/a/../b"]
        )
        conn, _ = listener.accept()
        with conn:
            assert conn.recv(100).startswith(b"GET /a/../b HTTP/1.1")
        proc.kill()
        proc.wait()
