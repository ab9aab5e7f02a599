"""Issue 12 item 7: one error boundary per surface, on real node processes.

A federation with a message log (tests.support.logfed: CA + OCSP, TSA,
central, Aizu providing ``residents/echo`` to Takamatsu's portal). Hostile
node-to-node requests come from a hand-built peer holding Takamatsu's real auth
and sign keys, so they pass every check up to the one under test; garbage HTTP
comes from raw sockets (inside TLS for the node-to-node port).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

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
from tests.support.federation import NodeHandle
from tests.support.logfed import LogFederation, build_log_federation, sqlite_db
from tests.support.witness import witness_headers

pytestmark = pytest.mark.slow

ECHO_BODY = b'{"hello":"aizu"}'


@pytest.fixture(scope="module")
def lf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogFederation]:
    fed = build_log_federation(
        tmp_path_factory.mktemp("boundary"), node_config={"messagelog": {"archive_interval": 0}}
    )
    try:
        fed.start_nodes()
        yield fed
    finally:
        fed.close()


# ----- a peer speaking the node-to-node protocol as Takamatsu ---------------------------------
def echo_headers(lf: LogFederation) -> MessageHeaders:
    return MessageHeaders(
        protocol="rest",
        client=SubsystemId.parse(f"{lf.takamatsu.member}/portal"),
        service=ServiceId.parse(f"{lf.aizu.member}/residents/echo"),
        message_id=str(uuid.uuid4()),
        rest_method="POST",
        rest_path="",
        content_type="application/json",
    )


def takamatsu_signer(lf: LogFederation) -> tuple[MessageSigner, bytes]:
    """Takamatsu's sign key and certificate, with a fresh staple from the CA's responder."""
    d = lf.takamatsu.dir
    cert = x509.load_pem_x509_certificate(lf.takamatsu.cert_path("sign").read_bytes())
    signer = MessageSigner(cert, keys.SoftwareSigner.from_file(d / "keys" / "sign.key", PASSPHRASE))
    responder = load_responder(lf.fed.ca_dir, PASSPHRASE)
    der, _ = build_request(cert, responder.issuer, nonce=False)
    return signer, responder.respond(der).der


def peer_ssl(lf: LogFederation) -> ssl.SSLContext:
    """Mutual TLS as Takamatsu's registered auth certificate, pinned to Aizu's."""
    target = x509.load_pem_x509_certificate(lf.aizu.cert_path("auth").read_bytes())
    return pinned_client_context(
        lf.takamatsu.cert_path("auth"), lf.takamatsu.dir / "keys" / "auth.key", PASSPHRASE, target
    )


def send_signed(
    lf: LogFederation, extra_headers: dict[str, str], headers: MessageHeaders | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A correctly signed echo request to Aizu's node-to-node port, plus ``extra_headers``."""
    headers = headers or echo_headers(lf)
    signer, staple = takamatsu_signer(lf)
    digest = request_digest(headers, hashlib.sha256(ECHO_BODY).digest())
    signature = signer.sign(digest)
    out = {
        **witness_headers(signer, digest),
        wire.H_VERSION: wire.WIRE_VERSION,
        wire.H_MESSAGE: wire.encode_headers(headers),
        wire.H_SIGNATURE: wire.b64(signature),
        wire.H_OCSP: wire.b64(staple),
        "Content-Type": "application/json",
        **extra_headers,
    }

    async def go() -> tuple[int, dict[str, str], bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://127.0.0.1:{lf.aizu.server_port}{wire.EXCHANGE_PATH}",
                data=ECHO_BODY,
                headers=out,
                ssl=peer_ssl(lf),
                skip_auto_headers=("Content-Type",),
            ) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.read()

    return asyncio.run(go())


def extra_b64(data: object) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def log_of(lf: LogFederation, name: str) -> str:
    return lf.fed.log(f"node-{name}")


def records(node: NodeHandle, message_id: str) -> list[tuple[str, str | None]]:
    """(direction, reason) of the node's message-log records for ``message_id``."""
    with sqlite_db(node.dir) as conn:
        return list(
            conn.execute(
                "SELECT direction, reason FROM mlog_records WHERE message_id = ?", (message_id,)
            )
        )


def client_call(lf: LogFederation, client: str) -> tuple[int, dict[str, str], bytes]:
    """A REST call to Aizu's echo through Takamatsu's client interface as ``client``."""
    req = urllib.request.Request(
        f"{lf.takamatsu.client_url}/r1/{lf.aizu.member}/residents/echo",
        data=ECHO_BODY,
        method="POST",
        headers={"Content-Type": "application/json", "X-Road-Client": client},
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:  # its response holds the connection
            return exc.code, dict(exc.headers), exc.read()


# ----- malformed Secnode-Extra from a registered peer ------------------------------------------
MALFORMED_EXTRA = {
    "bad base64": "!!not base64!!",
    "not JSON": base64.b64encode(b"\xff\xfe").decode(),
    "pair of one": extra_b64({"request_id": None, "headers": [[1]]}),
    "not a list": extra_b64({"request_id": None, "headers": "Accept"}),
    "top-level list": extra_b64([["Accept", "x"]]),
    "CR LF in a value": extra_b64({"headers": [["X-Note", "a\r\nX-Injected: 1"]]}),
    "NUL in a name": extra_b64({"headers": [["X-No\x00te", "a"]]}),
    "LF in request id": extra_b64({"request_id": "id\nX-Injected: 1", "headers": []}),
}


@pytest.mark.parametrize("case", list(MALFORMED_EXTRA))
def test_malformed_extra_is_an_xroad_error_with_a_refusal_record(
    lf: LogFederation, case: str
) -> None:
    before = len(log_of(lf, "aizu"))
    headers = echo_headers(lf)
    status, resp_headers, body = send_signed(lf, {wire.H_EXTRA: MALFORMED_EXTRA[case]}, headers)
    assert status == 400, body
    assert resp_headers.get("X-Road-Error") == "Client.BadRequest", body
    error = json.loads(body)
    assert error["type"] == "Client.BadRequest" and "Secnode-Extra" in error["message"]
    detail = error["detail"]
    found = wait_until(lambda: records(lf.aizu, headers.message_id), 10, "the refusal record")
    # refused before anything was logged as received or the service was called
    assert [d for d, _ in found] == ["refusal"], found
    assert detail in (found[0][1] or ""), found
    added = log_of(lf, "aizu")[before:]
    assert "Traceback" not in added and detail in added, added


def test_unknown_wire_version_is_refused(lf: LogFederation) -> None:
    status, resp_headers, body = send_signed(lf, {wire.H_VERSION: "99"})
    assert status == 400, body
    assert resp_headers.get("X-Road-Error") == "Client.InvalidProtocolVersion", body
    assert "99" in json.loads(body)["message"]
    ok_status, _, ok_body = send_signed(lf, {})  # the same request in version 1 is answered
    assert ok_status == 200, ok_body


# ----- the prefix is the catching side's --------------------------------------------------------
def test_access_denied_carries_the_prefix_of_the_side_that_refused(lf: LogFederation) -> None:
    taka = lf.takamatsu
    residents = f"{taka.member}/residents"
    status, resp_headers, body = client_call(lf, residents)  # no 'client allow' for residents
    assert status == 500 and b"may not act as" in body  # X-Road's REST errors: 400 or 500
    assert resp_headers.get("X-Road-Error") == "Server.ClientProxy.AccessDenied", body
    assert json.loads(body)["type"] == "Server.ClientProxy.AccessDenied"
    taka.cli("client", "allow", "residents", "--address", "127.0.0.1")
    try:  # now Takamatsu lets it through, and Aizu refuses: residents has no access right
        status, resp_headers, body = wait_until(
            lambda: (
                (r := client_call(lf, residents))[1].get("X-Road-Error")
                != "Server.ClientProxy.AccessDenied"
                and r
            ),
            15,
            "Takamatsu to reload its client whitelist",
        )
        assert resp_headers.get("X-Road-Error") == "Server.ServerProxy.AccessDenied", body
        assert b"has no access right" in body
    finally:
        taka.cli("client", "remove", "residents", "--address", "127.0.0.1")


# ----- malformed HTTP: one warning line, no traceback -----------------------------------------
GARBAGE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \x00\r\n\r\n",
    b"GET / HTTP/7.3\r\nHost: x\r\n\r\n",
    b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
)


def raw_exchange(port: int, data: bytes, tls: ssl.SSLContext | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        sock = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        with sock:  # the TLS wrapper owns the descriptor now
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)


def test_malformed_http_is_one_warning_line_per_request(lf: LogFederation) -> None:
    aizu = lf.aizu
    listeners = {
        "client": (aizu.client_port, None),
        "admin": (aizu.admin_port, None),
        "node-to-node": (aizu.server_port, peer_ssl(lf)),
    }
    before = len(log_of(lf, "aizu"))
    for name, (port, tls) in listeners.items():
        for data in GARBAGE:
            answer = raw_exchange(port, data, tls)
            assert re.match(rb"HTTP/1\.[01] 400 ", answer), (name, data, answer[:200])
    sent = len(listeners) * len(GARBAGE)
    added = wait_until(
        lambda: (
            (text := log_of(lf, "aizu")[before:]).count("malformed HTTP request") >= sent and text
        ),
        10,
        "a log line per malformed request",
    )
    assert added.count("malformed HTTP request") == sent, added
    assert "Traceback" not in added and "ERROR" not in added, added
    assert len(added.strip().splitlines()) == sent, added
