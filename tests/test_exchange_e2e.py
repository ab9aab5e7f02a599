"""Message exchange through two real nodes: success paths and every refusal.

One federation per module (CA + OCSP, TSA, central, Aizu and Takamatsu nodes,
sample REST and SOAP services), built by the demo builder with the operator
commands. Refusals that a well-behaved node never produces (forged signatures,
tampered bodies, unregistered peers, stale OCSP) are sent straight to the
provider node's mutual-TLS port by a hand-built peer that holds real keys.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from certs import keys
from certs.ca import CertificateAuthority, cert_pem
from certs.ocsp import build_request
from certs.ocsp_server import load_responder
from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.message import MessageHeaders, request_digest
from secnode.core.msgsig import MessageSigner
from secnode.demo.calls import call_rest, call_soap, http, soap_request
from secnode.demo.federation import Federation, build_two_city_federation
from secnode.proxy import wire
from secnode.trust.tls import pinned_client_context
from tests.witness_support import witness_headers

DATA = Path(__file__).parent / "data" / "xroad"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = build_two_city_federation(tmp_path_factory.mktemp("fed"), say=lambda _m: None)
    try:
        yield federation
    finally:
        federation.stop()


def ids(fed: Federation) -> dict[str, object]:
    aizu, taka = fed.nodes["aizu"], fed.nodes["takamatsu"]
    return {
        "aizu": aizu,
        "taka": taka,
        "taka_portal": SubsystemId.parse(taka.client_id),
        "aizu_portal": SubsystemId.parse(aizu.client_id),
        "residents": ServiceId.parse(f"{aizu.member}/residents/residents"),
        "echo": ServiceId.parse(f"{aizu.member}/residents/echo"),
        "welfare": ServiceId.parse(f"{taka.member}/welfare/getResident"),
    }


# ----- success paths ------------------------------------------------------------------------
def test_rest_request_round_trip_with_xroad_headers(fed: Federation) -> None:
    i = ids(fed)
    message_id = str(uuid.uuid4())
    result = call_rest(
        i["taka"].client_url,
        i["taka_portal"],
        i["residents"],
        "/1001",
        extra={
            "X-Road-Id": message_id,
            "X-Road-UserId": "JP-clerk-7",
            "Accept": "application/json",
        },
    )
    assert result.status == 200, result.body
    assert json.loads(result.body)["name"] == "Aizu Taro"
    assert result.headers["X-Road-Id"] == message_id
    assert result.headers["X-Road-Client"] == str(i["taka_portal"])
    assert result.headers["X-Road-Service"] == str(i["residents"])
    assert len(result.headers["X-Road-Request-Hash"]) == 88  # base64 of SHA-512
    assert "X-Road-Error" not in result.headers


def test_rest_method_query_body_and_content_type_pass_through(fed: Federation) -> None:
    i = ids(fed)
    body = json.dumps({"query": "x" * 3000, "n": 1}).encode()
    result = call_rest(
        i["taka"].client_url,
        i["taka_portal"],
        i["echo"],
        "",
        "POST",
        body,
        {"Content-Type": "application/json"},
    )
    assert result.status == 200, result.body
    assert result.body == body
    assert result.headers["Content-Type"].startswith("application/json")


def test_soap_request_in_the_published_example_shape(fed: Federation) -> None:
    """X-Road's published getRandom request, re-addressed to our federation, goes through."""
    i = ids(fed)
    taka = i["taka"]
    taka_dir = taka.dir
    fed.run(
        "secnode",
        "service",
        "add",
        "welfare",
        "getRandom",
        "--version",
        "v1",
        "--type",
        "soap",
        "--url",
        f"http://127.0.0.1:{fed.ports['soap_service']}/soap",
        "--dir",
        taka_dir,
    )
    fed.run(
        "secnode", "acl", "grant", "welfare/getRandom/v1", str(i["aizu_portal"]), "--dir", taka_dir
    )
    fed.run(
        "secnode",
        "service",
        "classify",
        "welfare/getRandom/v1",
        "--non-personal",
        "--dir",
        taka_dir,
    )  # policy: unclassified services are refused
    template = (DATA / "getRandom-request.xml").read_text()
    for old, new in (
        ("EE", "JP"),
        ("MEMBER1", "072028"),
        ("SUBSYSTEM1", "portal"),
        ("MEMBER2", "372013"),
        ("SUBSYSTEM2", "welfare"),
    ):
        template = template.replace(f">{old}<", f">{new}<")
    assert "<xrd:userId>EE12345678901</xrd:userId>" in template  # the example's userId, as is
    sent: dict[str, str] = {}

    def call() -> object:  # a fresh message id per attempt: ids must not be reused
        sent["id"] = str(uuid.uuid4())
        sent["text"] = template.replace("4894e35d-bf0f-44a6-867a-8e51f1daa7e0", sent["id"])
        return http(
            "POST",
            i["aizu"].client_url + "/",
            sent["text"].encode(),
            {"Content-Type": "text/xml; charset=utf-8"},
        )

    result = _wait_for(call, lambda r: r.status == 200 and b"getRandomResponse" in r.body)
    message_id, text = sent["id"], sent["text"]
    body = result.body.decode()
    assert message_id in body and "<seed>42</seed>" in body, body
    assert "requestHash" in body
    expected = base64.b64encode(hashlib.sha512(text.encode()).digest()).decode()
    assert expected in body


def test_soap_sample_service(fed: Federation) -> None:
    i = ids(fed)
    result = call_soap(
        i["aizu"].client_url, i["aizu_portal"], i["welfare"], "<ns1:id>2002</ns1:id>"
    )
    assert result.status == 200 and b"Sanuki Hanako" in result.body
    assert b"Fault" not in result.body


def test_metaservices(fed: Federation) -> None:
    i = ids(fed)
    clients = json.loads(
        http(
            "GET", i["aizu"].client_url + "/listClients", None, {"Accept": "application/json"}
        ).body
    )
    codes = {m["id"]["member_code"] for m in clients["member"]}
    assert codes == {"072028", "372013"}
    listing = call_rest(
        i["taka"].client_url,
        i["taka_portal"],
        ServiceId.parse(f"{i['aizu'].member}/residents/allowedMethods"),
    )
    assert listing.status == 200
    names = {s["service_code"] for s in json.loads(listing.body)["service"]}
    assert {"residents", "echo"} <= names


# ----- refusals through the client interface ------------------------------------------------
def error_of(result: object) -> str:
    return result.headers.get("X-Road-Error", "")  # type: ignore[attr-defined]


def test_no_access_right(fed: Federation) -> None:
    i = ids(fed)
    result = call_rest(i["aizu"].client_url, i["aizu_portal"], i["residents"], "/1001")
    assert result.status == 500 and error_of(result) == "Server.ServerProxy.AccessDenied"
    assert b"has no access right" in result.body


def test_unknown_service(fed: Federation) -> None:
    i = ids(fed)
    svc = ServiceId.parse(f"{i['aizu'].member}/residents/noSuchService")
    result = call_rest(i["taka"].client_url, i["taka_portal"], svc)
    assert error_of(result) == "Server.ServerProxy.UnknownService"


def test_replayed_message_id(fed: Federation) -> None:
    i = ids(fed)
    headers = {"X-Road-Id": "replay-" + uuid.uuid4().hex}
    first = call_rest(
        i["taka"].client_url, i["taka_portal"], i["residents"], "/1001", extra=headers
    )
    second = call_rest(
        i["taka"].client_url, i["taka_portal"], i["residents"], "/1001", extra=headers
    )
    assert first.status == 200
    assert error_of(second) == "Client.DuplicateMessageId", (second.status, second.body)


def test_body_over_the_limit(fed: Federation) -> None:
    i = ids(fed)
    big = b"x" * (10 * 1024 * 1024 + 1)
    result = call_rest(
        i["taka"].client_url,
        i["taka_portal"],
        i["echo"],
        "",
        "POST",
        big,
        {"Content-Type": "application/octet-stream"},
    )
    assert result.status == 400 and error_of(result) == "Client.MessageTooLarge"  # X-Road: 400
    ok = call_rest(i["taka"].client_url, i["taka_portal"], i["residents"], "/1001")
    assert ok.status == 200  # other requests are unaffected


def test_malformed_xml_and_entity_expansion_refused(fed: Federation, tmp_path: Path) -> None:
    i = ids(fed)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    url = i["aizu"].client_url + "/"
    ctype = {"Content-Type": "text/xml; charset=utf-8"}
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b'<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
        b"<SOAP-ENV:Body>&lol3;</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    xxe = soap_request(i["aizu_portal"], i["welfare"], "<ns1:id>&xxe;</ns1:id>").replace(
        b'<?xml version="1.0" encoding="UTF-8"?>',
        f'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE e [<!ENTITY xxe SYSTEM '
        f'"file://{secret}">]>'.encode(),
    )
    for payload in (laughs, xxe, b"<SOAP-ENV:Envelope><unclosed>", b"not xml at all"):
        result = http("POST", url, payload, ctype)
        assert result.status == 200 and b"Fault" in result.body  # SOAP faults use HTTP 200
        assert error_of(result).startswith("Client.")
        assert b"TOP-SECRET" not in result.body and b"lollollol" not in result.body
    mtom = http("POST", url, b"--b\r\n", {"Content-Type": "multipart/related; boundary=b"})
    assert error_of(mtom) == "Client.InvalidSoap", mtom.body  # a truncated multipart
    assert b"no closing delimiter" in mtom.body
    assert (
        call_soap(url[:-1], i["aizu_portal"], i["welfare"], "<ns1:id>2002</ns1:id>").status == 200
    )


def test_client_must_be_allowed_and_ours(fed: Federation) -> None:
    i = ids(fed)
    foreign = call_rest(i["aizu"].client_url, i["taka_portal"], i["welfare"])
    assert (
        foreign.status == 400 and b"not a member or subsystem served by this node" in foreign.body
    )


# ----- refusals at the provider node, from a hand-built peer --------------------------------
@dataclass
class Peer:
    """Speaks the node-to-node protocol directly, with whatever keys a test gives it."""

    fed: Federation
    auth_cert: Path
    auth_key: Path

    def send(
        self,
        headers: MessageHeaders,
        body: bytes,
        signature: bytes,
        ocsp_der: bytes,
        peer: str = "aizu",
        witness: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        node = self.fed.nodes[peer]
        target = x509.load_pem_x509_certificate((node.dir / "certs" / "auth.pem").read_bytes())
        ctx = pinned_client_context(
            self.auth_cert, self.auth_key, self.fed.passphrase.encode(), target
        )

        async def go() -> tuple[int, dict[str, str], bytes]:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"https://127.0.0.1:{node.server_port}{wire.EXCHANGE_PATH}",
                    data=body,
                    ssl=ctx,
                    headers={
                        wire.H_MESSAGE: wire.encode_headers(headers),
                        wire.H_SIGNATURE: wire.b64(signature),
                        wire.H_OCSP: wire.b64(ocsp_der),
                        "Content-Type": headers.content_type or "application/json",
                        **(witness or {}),
                    },
                ) as resp,
            ):
                return resp.status, dict(resp.headers), await resp.read()

        return asyncio.run(go())


def taka_peer(fed: Federation) -> Peer:
    d = fed.nodes["takamatsu"].dir
    return Peer(fed, d / "certs" / "auth.pem", d / "keys" / "auth.key")


def rest_headers(fed: Federation) -> MessageHeaders:
    i = ids(fed)
    return MessageHeaders(
        protocol="rest",
        client=i["taka_portal"],
        service=i["residents"],
        message_id=str(uuid.uuid4()),
        rest_method="GET",
        rest_path="/1001",
        content_type=None,
    )


def sign_as(fed: Federation, city: str) -> tuple[MessageSigner, bytes]:
    """The city's real sign key, certificate and current OCSP staple (fetched now)."""
    d = fed.nodes[city].dir
    cert = x509.load_pem_x509_certificate((d / "certs" / "sign.pem").read_bytes())
    key = keys.SoftwareSigner.from_file(d / "keys" / "sign.key", fed.passphrase.encode())
    return MessageSigner(cert, key), ocsp_for(fed, cert)


def ocsp_for(fed: Federation, cert: x509.Certificate, now: dt.datetime | None = None) -> bytes:
    """An OCSP response from the federation CA's own responder (optionally back-dated)."""
    responder = load_responder(fed.base / "ca", fed.passphrase.encode())
    der, _ = build_request(cert, responder.issuer, nonce=False)
    return responder.respond(der, now=now).der


def test_well_formed_direct_request_is_accepted(fed: Federation) -> None:
    """The control for the refusals below: the same construction, unmodified, succeeds."""
    headers = rest_headers(fed)
    signer, staple = sign_as(fed, "takamatsu")
    digest = request_digest(headers, hashlib.sha256(b"").digest())
    status, resp_headers, body = taka_peer(fed).send(
        headers, b"", signer.sign(digest), staple, witness=witness_headers(signer, digest)
    )
    assert status == 200, body
    assert b"Aizu Taro" in body and wire.H_SIGNATURE in resp_headers


def test_request_without_a_log_witness_is_refused(fed: Federation) -> None:
    """Deny by default: a provider node that logs requires the client's signed position."""
    headers = rest_headers(fed)
    signer, staple = sign_as(fed, "takamatsu")
    digest = request_digest(headers, hashlib.sha256(b"").digest())
    status, resp_headers, body = taka_peer(fed).send(headers, b"", signer.sign(digest), staple)
    assert status == 400 and resp_headers.get("X-Road-Error") == "Client.InvalidSignature"
    assert b"no signed log position (Secnode-Witness)" in body


def test_log_witness_must_be_signed_by_the_request_signer(fed: Federation) -> None:
    """A position signed by another member's key, or for another request, does not verify."""
    signer, staple = sign_as(fed, "takamatsu")
    other, _ = sign_as(fed, "aizu")
    for witness_signer, for_another_request in ((other, False), (signer, True)):
        headers = rest_headers(fed)  # a fresh message id each time
        digest = request_digest(headers, hashlib.sha256(b"").digest())
        witness = witness_headers(witness_signer, bytes(32) if for_another_request else digest)
        _, resp_headers, body = taka_peer(fed).send(
            headers, b"", signer.sign(digest), staple, witness=witness
        )
        assert resp_headers.get("X-Road-Error") == "Client.InvalidSignature", body
        assert b"Secnode-Witness" in body and b"does not verify" in body


def test_tampered_body_in_transit(fed: Federation) -> None:
    headers = rest_headers(fed)
    signer, staple = sign_as(fed, "takamatsu")
    digest = request_digest(headers, hashlib.sha256(b"original").digest())
    _, resp_headers, body = taka_peer(fed).send(headers, b"tampered", signer.sign(digest), staple)
    assert resp_headers.get("X-Road-Error") == "Client.InvalidSignature", body
    assert b"does not verify" in body


def test_signature_by_another_members_key(fed: Federation) -> None:
    headers = rest_headers(fed)
    signer, staple = sign_as(fed, "aizu")  # Aizu's sign key, but the client claims Takamatsu
    digest = request_digest(headers, hashlib.sha256(b"").digest())
    _, resp_headers, body = taka_peer(fed).send(headers, b"", signer.sign(digest), staple)
    assert resp_headers.get("X-Road-Error") == "Client.InvalidSignature"
    assert b"names member JP/GOV/072028" in body


def test_peer_with_unregistered_auth_certificate(fed: Federation, tmp_path: Path) -> None:
    """A certificate from the approved CA, but not registered for any node of the client."""
    ca = CertificateAuthority(fed.base / "ca")
    key = keys.generate_key()
    cert = ca.issue(
        keys.build_csr(key, keys.parse_subject("CN=rogue")), "auth", fed.passphrase.encode()
    )
    (tmp_path / "rogue.pem").write_bytes(cert_pem(cert))
    keys.write_key(tmp_path / "rogue.key", key, fed.passphrase.encode())
    rogue = Peer(fed, tmp_path / "rogue.pem", tmp_path / "rogue.key")
    headers = rest_headers(fed)
    signer, staple = sign_as(fed, "takamatsu")
    digest = request_digest(headers, hashlib.sha256(b"").digest())
    _, resp_headers, body = rogue.send(headers, b"", signer.sign(digest), staple)
    assert resp_headers.get("X-Road-Error") == "Server.ServerProxy.SslAuthenticationFailed"
    assert b"not registered" in body


def test_revoked_sign_certificate(fed: Federation) -> None:
    """A second sign certificate of Takamatsu, revoked at the CA: its staple says revoked."""
    ca = CertificateAuthority(fed.base / "ca")
    key = keys.generate_key()
    cert = ca.issue(
        keys.build_csr(key, keys.parse_subject("serialNumber=JP/GOV/372013, CN=Takamatsu spare")),
        "sign",
        fed.passphrase.encode(),
    )
    ca.revoke(cert.serial_number, "keyCompromise")
    signer = MessageSigner(cert, keys.SoftwareSigner(key))
    headers = rest_headers(fed)
    digest = request_digest(headers, hashlib.sha256(b"").digest())
    _, resp_headers, body = taka_peer(fed).send(
        headers, b"", signer.sign(digest), ocsp_for(fed, cert)
    )
    assert resp_headers.get("X-Road-Error") == "Client.InvalidSignature"
    assert b"status is revoked" in body and b"keyCompromise" in body


def test_stale_ocsp_response(fed: Federation) -> None:
    signer, _ = sign_as(fed, "takamatsu")
    stale = ocsp_for(fed, signer.codec.cert, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    headers = rest_headers(fed)
    digest = request_digest(headers, hashlib.sha256(b"").digest())
    _, resp_headers, body = taka_peer(fed).send(headers, b"", signer.sign(digest), stale)
    assert resp_headers.get("X-Road-Error") == "Client.InvalidSignature"
    assert b"stale OCSP response" in body


def test_malformed_node_to_node_metadata(fed: Federation) -> None:
    headers = rest_headers(fed)
    signer, staple = sign_as(fed, "takamatsu")
    digest = request_digest(headers, hashlib.sha256(b"").digest())
    _, resp_headers, body = taka_peer(fed).send(headers, b"", b"\x00garbage", staple)
    assert resp_headers.get("X-Road-Error") == "Client.InvalidSignature"
    assert b"malformed" in body
    del digest, signer


def _wait_for(call: object, ok: object, attempts: int = 20) -> object:
    """Services and rights added by CLI are picked up by the running node within seconds."""
    import time

    result = None
    for _ in range(attempts):
        result = call()  # type: ignore[operator]
        if ok(result):  # type: ignore[operator]
            return result
        time.sleep(0.5)
    return result


def test_demo_sample_calls_fail_when_a_call_fails(fed: Federation) -> None:
    """What makes ``secnode demo --once`` exit non-zero: any failing sample call."""
    from secnode.demo.cli import sample_calls

    aizu = fed.nodes["aizu"]
    taka = fed.nodes["takamatsu"]
    assert sample_calls(fed)
    fed.run("secnode", "acl", "revoke", "residents/residents", taka.client_id, "--dir", aizu.dir)
    try:
        assert _wait_for(lambda: sample_calls(fed), lambda ok: not ok) is False
    finally:
        fed.run("secnode", "acl", "grant", "residents/residents", taka.client_id, "--dir", aizu.dir)
    assert _wait_for(lambda: sample_calls(fed), lambda ok: ok) is True


def test_client_interface_over_tls_with_client_certificates(
    fed: Federation, tmp_path: Path
) -> None:
    """curl with a client certificate: only a whitelisted internal system may use the subsystem.

    Runs last in this module: it restarts the Takamatsu node with HTTPS on its
    client interface and puts the plain-HTTP configuration back afterwards.
    """
    import shutil
    import subprocess

    taka = fed.nodes["takamatsu"]
    is_ca = CertificateAuthority.init(
        tmp_path / "is-ca", "Takamatsu internal CA", fed.passphrase.encode()
    )
    made: dict[str, Path] = {}
    for name, profile in (("server", "auth"), ("portal", "auth"), ("other", "auth")):
        key = keys.generate_key()
        cert = is_ca.issue(
            keys.build_csr(key, keys.parse_subject(f"CN={name}")), profile, fed.passphrase.encode()
        )
        (tmp_path / f"{name}.pem").write_bytes(cert_pem(cert))
        keys.write_key(tmp_path / f"{name}.key", key, fed.passphrase.encode())
        made[name] = tmp_path / f"{name}.pem"
    for name in ("portal", "other"):  # curl needs a key it can read without a prompt
        subprocess.run(
            [
                "openssl",
                "pkey",
                "-in",
                str(tmp_path / f"{name}.key"),
                "-passin",
                f"pass:{fed.passphrase}",
                "-out",
                str(tmp_path / f"{name}.plain.key"),
            ],
            check=True,
            capture_output=True,
        )
    shutil.copy(made["server"], taka.dir / "client-tls.pem")
    shutil.copy(tmp_path / "server.key", taka.dir / "client-tls.key")
    shutil.copy(is_ca.dir / "ca.pem", taka.dir / "client-ca.pem")
    config = taka.dir / "secnode.toml"
    original = config.read_text()
    config.write_text(
        original.replace('tls_cert = ""', 'tls_cert = "client-tls.pem"')
        .replace('tls_key = ""', 'tls_key = "client-tls.key"')
        .replace('tls_client_ca = ""', 'tls_client_ca = "client-ca.pem"')
    )
    fed.run("secnode", "client", "allow", "portal", "--cert", made["portal"], "--dir", taka.dir)
    fed.run("secnode", "client", "remove", "portal", "--address", "127.0.0.1", "--dir", taka.dir)
    proc = fed.processes.pop(f"node-{taka.name}")
    proc.terminate()
    proc.wait(timeout=10)
    url = (
        f"https://127.0.0.1:{taka.client_port}/r1/{fed.nodes['aizu'].member}"
        "/residents/residents/1001"
    )

    def curl(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "curl",
                "-sk",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-H",
                f"X-Road-Client: {taka.client_id}",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    try:
        fed.start_node(taka)
        allowed = curl("--cert", str(made["portal"]), "--key", str(tmp_path / "portal.plain.key"))
        assert allowed.stdout.endswith("\n200"), allowed.stdout + allowed.stderr
        assert "Aizu Taro" in allowed.stdout
        other = curl("--cert", str(made["other"]), "--key", str(tmp_path / "other.plain.key"))
        assert other.stdout.endswith("\n500") and "may not act as" in other.stdout
        anonymous = curl()
        assert anonymous.returncode != 0 or not anonymous.stdout.endswith("\n200")
    finally:
        config.write_text(original)
        fed.run("secnode", "client", "allow", "portal", "--address", "127.0.0.1", "--dir", taka.dir)
        proc = fed.processes.pop(f"node-{taka.name}", None)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        fed.start_node(taka)


def test_soap_header_must_match_the_signed_metadata(fed: Federation) -> None:
    """A client node may not sign one client identity and show the provider system another."""
    i = ids(fed)
    d = fed.nodes["aizu"].dir
    aizu_peer = Peer(fed, d / "certs" / "auth.pem", d / "keys" / "auth.key")
    signer, staple = sign_as(fed, "aizu")
    for forged in (True, False):
        message_id = str(uuid.uuid4())  # ids are single-use, even for refused messages
        shown = SubsystemId.parse(f"{i['aizu'].member}/residents") if forged else i["aizu_portal"]
        body = soap_request(shown, i["welfare"], "<ns1:id>2002</ns1:id>", message_id)
        headers = MessageHeaders(
            protocol="soap",
            client=i["aizu_portal"],
            service=i["welfare"],
            message_id=message_id,
            user_id="JP-demo-operator",
            issue=f"demo-{message_id[:8]}",
            content_type="text/xml; charset=utf-8",
        )
        digest = request_digest(headers, hashlib.sha256(body).digest())
        _, resp_headers, out = aizu_peer.send(
            headers,
            body,
            signer.sign(digest),
            staple,
            peer="takamatsu",
            witness=witness_headers(signer, digest),
        )
        if not forged:
            assert b"Sanuki Hanako" in out, out
        else:
            assert resp_headers.get("X-Road-Error") == "Client.InconsistentHeaders", out
            assert b"does not match the signed message metadata" in out


def test_get_openapi_and_get_wsdl(fed: Federation, tmp_path: Path) -> None:
    i = ids(fed)
    aizu = i["aizu"]
    spec = tmp_path / "openapi.json"
    spec.write_text(
        json.dumps(
            {"openapi": "3.0.3", "info": {"title": "residents lookup", "version": "1"}, "paths": {}}
        )
    )
    fed.run(
        "secnode",
        "service",
        "add",
        "residents",
        "lookup",
        "--type",
        "rest",
        "--url",
        f"http://127.0.0.1:{fed.ports['rest_service']}/residents",
        "--openapi",
        spec,
        "--dir",
        aizu.dir,
    )
    fed.run("secnode", "acl", "grant", "residents/lookup", str(i["taka_portal"]), "--dir", aizu.dir)
    get_openapi = ServiceId.parse(f"{aizu.member}/residents/getOpenAPI")
    result = _wait_for(
        lambda: call_rest(
            i["taka"].client_url, i["taka_portal"], get_openapi, "?serviceCode=lookup"
        ),
        lambda r: r.status == 200,
    )
    assert json.loads(result.body)["info"]["title"] == "residents lookup"
    missing = call_rest(
        i["taka"].client_url, i["taka_portal"], get_openapi, "?serviceCode=residents"
    )
    assert error_of(missing) == "Server.ServerProxy.UnknownService"
    assert b"no OpenAPI description" in missing.body
    wsdl = call_soap(
        i["aizu"].client_url,
        i["aizu_portal"],
        ServiceId.parse(f"{i['taka'].member}/welfare/getWsdl"),
        "",
    )
    assert b"getWsdl needs xrd:serviceCode" in wsdl.body  # WSDLs: tests/test_xroad_compat.py


def test_provider_errors_and_timeouts_come_back_as_errors(fed: Federation) -> None:
    import time

    i = ids(fed)
    aizu = i["aizu"]
    closed = __import__("socket").socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    fed.run(
        "secnode",
        "service",
        "add",
        "residents",
        "slow",
        "--type",
        "rest",
        "--url",
        f"http://127.0.0.1:{fed.ports['rest_service']}/slow",
        "--timeout",
        "1",
        "--dir",
        aizu.dir,
    )
    fed.run(
        "secnode",
        "service",
        "add",
        "residents",
        "down",
        "--type",
        "rest",
        "--url",
        f"http://127.0.0.1:{dead_port}/",
        "--dir",
        aizu.dir,
    )
    for code in ("slow", "down"):
        fed.run(
            "secnode", "acl", "grant", f"residents/{code}", str(i["taka_portal"]), "--dir", aizu.dir
        )
        fed.run(
            "secnode",
            "service",
            "classify",
            f"residents/{code}",
            "--non-personal",
            "--dir",
            aizu.dir,
        )
    slow = ServiceId.parse(f"{aizu.member}/residents/slow")
    ready = ("Server.ServerProxy.UnknownService", "Server.ServerProxy.AccessDenied")
    _wait_for(
        lambda: call_rest(i["taka"].client_url, i["taka_portal"], slow, "?seconds=0"),
        lambda r: error_of(r) not in ready,
    )  # the node has picked up service and right
    started = time.monotonic()
    result = call_rest(i["taka"].client_url, i["taka_portal"], slow, "?seconds=10")
    assert time.monotonic() - started < 5  # answered by the timeout, not by the service
    assert error_of(result) == "Server.ServerProxy.ServiceFailed"
    assert b"did not answer within 1 s" in result.body
    down = call_rest(
        i["taka"].client_url, i["taka_portal"], ServiceId.parse(f"{aizu.member}/residents/down")
    )
    assert error_of(down) == "Server.ServerProxy.ServiceFailed"
    assert b"service call failed" in down.body
