"""OCSP responder and client against live servers, judged by openssl and by our validator."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import stat
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs import keys
from certs.ca import CertificateAuthority
from certs.ocsp import (
    CertIdMismatchError,
    NonceMismatchError,
    OCSPError,
    OCSPResponder,
    OCSPResponseStatusError,
    OCSPSignatureError,
    Revocation,
    StaleResponseError,
    UnauthorisedResponderError,
    cert_id_hashes,
)
from certs.ocsp_client import build_request, fetch, fetch_sync, validate_response
from certs.ocsp_server import build_ocsp_app, decode_get_path, ensure_responder_cert
from tests.conftest import (
    PASSPHRASE,
    Issued,
    cli_env,
    free_port,
    make_ca,
    run_cli,
    wait_for_port,
)

if TYPE_CHECKING:  # imported at runtime, pytest would try to collect it as a test class
    from tests.conftest import TestCA

AUTH = "CN=ss{n}.aizu.example, O=Aizu-Wakamatsu City, C=JP"


class ThreadedServer:
    """An aiohttp app on its own loop in a daemon thread, so blocking tests can call it."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> tuple[web.AppRunner, int]:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return runner, int(runner.addresses[0][1])

        self.runner, self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.port}/ocsp"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class PKI:
    ours: TestCA
    other: TestCA
    url: str  # `certs ocsp serve` subprocess for `ours`
    other_url: str  # in-process responder for `other`
    counter: list[int]

    def issue(self, ca: TestCA | None = None) -> Issued:
        self.counter[0] += 1
        return (ca or self.ours).issue("auth", AUTH.format(n=self.counter[0]))

    @property
    def responder_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.ours.dir / "ocsp.pem").read_bytes())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PKI]:
    """One CA served by a real `certs ocsp serve` process, one embedded via build_ocsp_app."""
    base = tmp_path_factory.mktemp("ocsp")
    ours, other = make_ca(base, "Test CA"), make_ca(base, "Other CA")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "certs", "ocsp", "serve", str(ours.dir), "--port", str(port)],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    embedded: ThreadedServer | None = None
    try:
        wait_for_port(port, proc=proc)
        embedded = ThreadedServer(build_ocsp_app(other.dir, PASSPHRASE, validity=600))
        yield PKI(ours, other, f"http://127.0.0.1:{port}", embedded.url, [0])
    finally:
        if embedded is not None:
            embedded.stop()
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def openssl_ocsp(*args: str | Path) -> str:
    proc = subprocess.run(
        ["openssl", "ocsp", *map(str, args)], capture_output=True, text=True, timeout=30
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def live(pki: PKI, cert: Issued, nonce: bool = True) -> tuple[bytes, bytes | None]:
    der, sent = build_request(cert.cert, pki.ours.ca.cert, nonce=nonce)
    return fetch_sync(pki.url, der), sent


# ----- responder files and CLI ----------------------------------------------------------
def test_first_start_creates_encrypted_delegated_signer(test_ca: TestCA, spawn) -> None:
    port = free_port()
    proc = spawn("certs", "ocsp", "serve", str(test_ca.dir), "--port", str(port), port=port)
    leaf = test_ca.issue("sign", "serialNumber=JP/GOV/072028, O=Aizu-Wakamatsu City, C=JP")
    der, _ = build_request(leaf.cert, test_ca.ca.cert)
    status = validate_response(
        fetch_sync(f"http://127.0.0.1:{port}", der), leaf.cert, test_ca.ca.cert
    )
    assert status.status == "good"

    signer = x509.load_pem_x509_certificate((test_ca.dir / "ocsp.pem").read_bytes())
    signer.verify_directly_issued_by(test_ca.ca.cert)
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    signer.extensions.get_extension_for_class(x509.OCSPNoCheck)
    key_file = test_ca.dir / "ocsp.key"
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert test_ca.ca.status(signer.serial_number) is not None  # recorded in ca.db

    # A restart reuses the same signer instead of issuing a new one.
    again, _ = ensure_responder_cert(CertificateAuthority(test_ca.dir), PASSPHRASE)
    assert again.serial_number == signer.serial_number

    proc.terminate()
    log = proc.communicate(timeout=10)[0].decode()
    assert f"serial={leaf.cert.serial_number:X} status=good" in log
    assert PASSPHRASE.decode() not in log


def test_serve_refuses_wrong_passphrase(test_ca: TestCA, tmp_path: Path) -> None:
    wrong = tmp_path / "pass"
    wrong.write_text("not-the-passphrase\n")
    proc = run_cli(
        "certs",
        "ocsp",
        "serve",
        str(test_ca.dir),
        "--port",
        str(free_port()),
        "--passphrase-file",
        str(wrong),
        check=False,
        timeout=30,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot decrypt key"), proc.stderr
    assert not (test_ca.dir / "ocsp.pem").exists()


# ----- openssl interop -------------------------------------------------------------------
@pytest.mark.parametrize("digest", [[], ["-sha256"]], ids=["sha1-certid", "sha256-certid"])
def test_openssl_good_then_revoked_without_restart(pki: PKI, digest: list[str]) -> None:
    leaf = pki.issue()
    # openssl quirk: the CertID digest option must come before -cert.
    base = [
        *digest,
        "-issuer",
        pki.ours.cert_path,
        "-cert",
        leaf.cert_path,
        "-url",
        pki.url,
        "-CAfile",
        pki.ours.cert_path,
        "-resp_text",
    ]
    name = leaf.cert_path.name

    with_nonce = openssl_ocsp(*base)
    assert "Response verify OK" in with_nonce
    assert f"{name}: good" in with_nonce
    assert "OCSP Nonce" in with_nonce  # echoed; openssl would warn "no nonce in response"
    assert "WARNING" not in with_nonce and "Nonce Verify error" not in with_nonce
    hash_name = "sha256" if digest else "sha1"
    assert f"Hash Algorithm: {hash_name}" in with_nonce
    no_nonce = openssl_ocsp(*base, "-no_nonce")
    assert f"{name}: good" in no_nonce and "OCSP Nonce" not in no_nonce

    run_cli("certs", "revoke", str(pki.ours.dir), str(leaf.cert_path), "--reason", "keyCompromise")
    revoked = openssl_ocsp(*base)
    assert "Response verify OK" in revoked
    assert f"{name}: revoked" in revoked
    assert "Reason: keyCompromise" in revoked
    assert "Revocation Time:" in revoked


def test_openssl_unknown_for_certificate_of_another_ca(pki: PKI) -> None:
    foreign = pki.issue(pki.other)
    # openssl builds the CertID from -issuer, so it must be the other CA. Our responder
    # is not authorised for that issuer (RFC 6960 §4.2.2.2), so openssl only accepts the
    # signature when the responder certificate is trusted directly: -VAfile does that
    # (it implies -trust_other); without it openssl reports "root ca not trusted".
    out = openssl_ocsp(
        "-issuer",
        pki.other.cert_path,
        "-cert",
        foreign.cert_path,
        "-url",
        pki.url,
        "-CAfile",
        pki.ours.cert_path,
        "-VAfile",
        pki.ours.dir / "ocsp.pem",
    )
    assert "Response verify OK" in out
    assert f"{foreign.cert_path.name}: unknown" in out


@pytest.mark.parametrize("mismatch", ["name", "key"])
def test_unknown_when_issuer_hash_does_not_match_even_for_a_known_serial(
    pki: PKI, mismatch: str
) -> None:
    leaf = pki.issue()  # a serial that IS in our ca.db
    twin = make_ca(pki.ours.dir.parent / f"twin-{mismatch}", "Test CA")  # same name, other key
    name_hash, key_hash = cert_id_hashes(pki.ours.ca.cert, hashes.SHA1())
    if mismatch == "name":
        name_hash = cert_id_hashes(pki.other.ca.cert, hashes.SHA1())[0]
    else:
        key_hash = cert_id_hashes(twin.ca.cert, hashes.SHA1())[1]
    req = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(name_hash, key_hash, leaf.cert.serial_number, hashes.SHA1())
        .build()
    )
    resp = ocsp.load_der_ocsp_response(fetch_sync(pki.url, req.public_bytes(Encoding.DER)))
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    assert resp.serial_number == leaf.cert.serial_number


def test_get_request_made_by_openssl(pki: PKI, tmp_path: Path) -> None:
    leaf = pki.issue()
    req = tmp_path / "req.der"
    openssl_ocsp(
        "-issuer", pki.ours.cert_path, "-cert", leaf.cert_path, "-no_nonce", "-reqout", req
    )
    path = quote(base64.b64encode(req.read_bytes()).decode(), safe="")
    with urllib.request.urlopen(f"{pki.url}/some/prefix/{path}", timeout=10) as http:
        assert http.headers["Content-Type"] == "application/ocsp-response"
        (tmp_path / "resp.der").write_bytes(http.read())
    out = openssl_ocsp(
        "-respin",
        tmp_path / "resp.der",
        "-issuer",
        pki.ours.cert_path,
        "-cert",
        leaf.cert_path,
        "-CAfile",
        pki.ours.cert_path,
        "-no_nonce",
    )
    assert "Response verify OK" in out
    assert f"{leaf.cert_path.name}: good" in out


def test_get_with_unescaped_slashes_in_base64(pki: PKI) -> None:
    leaf = pki.issue()
    for _ in range(200):  # the nonce is random; find a request whose base64 has '/' and '+'
        der, sent = build_request(leaf.cert, pki.ours.ca.cert)
        text = base64.b64encode(der).decode()
        if "/" in text and "+" in text:
            break
    else:
        pytest.fail("no base64 request with '/' and '+' in 200 tries")
    assert decode_get_path(f"/ocsp/{text}") == der
    with urllib.request.urlopen(f"{pki.url}/ocsp/{text}", timeout=10) as http:
        body = http.read()
    assert validate_response(body, leaf.cert, pki.ours.ca.cert, nonce=sent).status == "good"


# ----- Python client against the live responder -----------------------------------------
def test_client_good_revoked_unknown(pki: PKI) -> None:
    leaf = pki.issue()
    der, sent = build_request(leaf.cert, pki.ours.ca.cert)
    good = validate_response(fetch_sync(pki.url, der), leaf.cert, pki.ours.ca.cert, nonce=sent)
    assert good.status == "good"
    assert good.revocation_time is None and good.revocation_reason is None
    assert good.next_update is not None
    assert good.next_update - good.this_update == dt.timedelta(seconds=3600)
    assert abs(dt.datetime.now(dt.UTC) - good.this_update) < dt.timedelta(minutes=1)

    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run_cli(
        "certs",
        "revoke",
        str(pki.ours.dir),
        f"{leaf.cert.serial_number:X}",
        "--reason",
        "cessationOfOperation",
    )
    der, sent = build_request(leaf.cert, pki.ours.ca.cert, algorithm=hashes.SHA1())
    raw = fetch_sync(pki.url, der, method="GET")
    revoked = validate_response(raw, leaf.cert, pki.ours.ca.cert, nonce=sent)
    assert revoked.status == "revoked"
    assert revoked.revocation_reason == "cessationOfOperation"
    assert revoked.revocation_time is not None
    assert before <= revoked.revocation_time <= dt.datetime.now(dt.UTC)
    assert revoked.raw == raw

    foreign = pki.issue(pki.other)
    der, sent = build_request(foreign.cert, pki.other.ca.cert)
    raw = fetch_sync(pki.url, der)
    with pytest.raises(UnauthorisedResponderError, match="issued by CN=Test CA, not by"):
        validate_response(raw, foreign.cert, pki.other.ca.cert, nonce=sent)
    # Locally configured trust in our responder (RFC 6960 §4.2.2.2 case 1) accepts it.
    unknown = validate_response(
        raw, foreign.cert, pki.other.ca.cert, nonce=sent, trusted_responders=[pki.responder_cert]
    )
    assert unknown.status == "unknown"


def test_async_fetch_with_session_against_embedded_app(pki: PKI) -> None:
    import aiohttp

    leaf = pki.issue(pki.other)

    async def run() -> bytes:
        der, _ = build_request(leaf.cert, pki.other.ca.cert, nonce=False)
        async with aiohttp.ClientSession() as session:
            return await fetch(pki.other_url, der, session=session)

    status = validate_response(asyncio.run(run()), leaf.cert, pki.other.ca.cert)
    assert status.status == "good"
    assert status.next_update == status.this_update + dt.timedelta(seconds=600)


# ----- client refusals -------------------------------------------------------------------
def test_rejects_response_from_another_cas_responder(pki: PKI) -> None:
    leaf = pki.issue()
    der, sent = build_request(leaf.cert, pki.ours.ca.cert)
    raw = fetch_sync(pki.other_url, der)  # the other CA's live responder answers (unknown)
    with pytest.raises(
        UnauthorisedResponderError,
        match=r"unauthorised responder CN=Other CA OCSP Responder .*issued by CN=Other CA",
    ):
        validate_response(raw, leaf.cert, pki.ours.ca.cert, nonce=sent)


def _sign_with(
    pki: PKI, signer_cert: x509.Certificate, signer_key: keys.PrivateKey, leaf: Issued
) -> bytes:
    """A response for ``leaf`` signed by an arbitrary key, with our real responder logic."""
    responder = OCSPResponder(
        pki.ours.ca.cert, signer_cert, signer_key, lambda serial: Revocation(None)
    )
    der, _ = build_request(leaf.cert, pki.ours.ca.cert, nonce=False)
    return responder.respond(der).der


def test_rejects_response_signed_by_another_ca(pki: PKI) -> None:
    leaf = pki.issue()
    other_key = keys.load_key(pki.other.dir / "ca.key", PASSPHRASE)
    raw = _sign_with(pki, pki.other.ca.cert, other_key, leaf)
    with pytest.raises(
        UnauthorisedResponderError,
        match=r"unauthorised responder CN=Other CA .*issued by CN=Other CA",
    ):
        validate_response(raw, leaf.cert, pki.ours.ca.cert)


def test_rejects_delegate_without_ocsp_signing_eku(pki: PKI) -> None:
    leaf, impostor = pki.issue(), pki.issue()  # same CA, but an auth certificate
    raw = _sign_with(pki, impostor.cert, impostor.key, leaf)
    with pytest.raises(UnauthorisedResponderError, match="lacks the OCSPSigning"):
        validate_response(raw, leaf.cert, pki.ours.ca.cert)


def test_accepts_response_signed_by_the_ca_itself(pki: PKI) -> None:
    leaf = pki.issue()
    ca_key = keys.load_key(pki.ours.dir / "ca.key", PASSPHRASE)
    raw = _sign_with(pki, pki.ours.ca.cert, ca_key, leaf)
    assert validate_response(raw, leaf.cert, pki.ours.ca.cert).status == "good"


def test_rejects_expired_delegate(pki: PKI) -> None:
    leaf = pki.issue()
    short = pki.ours.issue("ocsp", "CN=Short-lived OCSP", days=1)
    responder = OCSPResponder(
        pki.ours.ca.cert, short.cert, short.key, lambda serial: Revocation(None), validity=5 * 86400
    )
    der, _ = build_request(leaf.cert, pki.ours.ca.cert, nonce=False)
    raw = responder.respond(der).der
    assert validate_response(raw, leaf.cert, pki.ours.ca.cert).status == "good"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with pytest.raises(UnauthorisedResponderError, match=r"Short-lived OCSP.*is not valid at"):
        validate_response(raw, leaf.cert, pki.ours.ca.cert, now=later, max_age=None)


def test_rejects_tampered_response(pki: PKI) -> None:
    leaf = pki.issue()
    raw, sent = live(pki, leaf)
    resp = ocsp.load_der_ocsp_response(raw)
    serial = leaf.cert.serial_number.to_bytes(16, "big")
    tbs_at = raw.index(resp.tbs_response_bytes)
    at = raw.index(serial, tbs_at, tbs_at + len(resp.tbs_response_bytes)) + len(serial) - 1
    tampered = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]
    assert ocsp.load_der_ocsp_response(tampered).serial_number != leaf.cert.serial_number
    with pytest.raises(OCSPSignatureError, match="signature does not verify"):
        validate_response(tampered, leaf.cert, pki.ours.ca.cert, nonce=sent)


def test_rejects_stale_and_future_responses(pki: PKI) -> None:
    leaf = pki.issue()
    raw, sent = live(pki, leaf)
    this_update = ocsp.load_der_ocsp_response(raw).this_update_utc
    ca = pki.ours.ca.cert
    with pytest.raises(StaleResponseError, match=r"stale: thisUpdate .* older than 3600 s"):
        validate_response(
            raw, leaf.cert, ca, nonce=sent, now=this_update + dt.timedelta(hours=2), max_age=3600
        )
    # Young enough for max_age, but the responder's nextUpdate (1 h) has passed.
    with pytest.raises(StaleResponseError, match=r"stale: nextUpdate .* has passed"):
        validate_response(
            raw,
            leaf.cert,
            ca,
            nonce=sent,
            now=this_update + dt.timedelta(seconds=3601),
            max_age=7200,
        )
    with pytest.raises(StaleResponseError, match="is in the future"):
        validate_response(
            raw, leaf.cert, ca, nonce=sent, now=this_update - dt.timedelta(minutes=10)
        )
    # Within the allowed clock skew and max_age it is accepted.
    ok = validate_response(
        raw, leaf.cert, ca, nonce=sent, now=this_update - dt.timedelta(minutes=4)
    )
    assert ok.status == "good"


def test_rejects_wrong_or_missing_nonce(pki: PKI) -> None:
    leaf = pki.issue()
    raw, sent = live(pki, leaf)
    assert sent is not None
    with pytest.raises(NonceMismatchError, match="nonce mismatch: sent"):
        validate_response(raw, leaf.cert, pki.ours.ca.cert, nonce=os.urandom(32))
    raw, _ = live(pki, leaf, nonce=False)
    with pytest.raises(NonceMismatchError, match="carries no nonce"):
        validate_response(raw, leaf.cert, pki.ours.ca.cert, nonce=sent)


def test_rejects_response_for_another_certificate(pki: PKI) -> None:
    asked, other = pki.issue(), pki.issue()
    raw, sent = live(pki, asked)
    expected = f"for another certificate .*not for serial {other.cert.serial_number:X}"
    with pytest.raises(CertIdMismatchError, match=expected):
        validate_response(raw, other.cert, pki.ours.ca.cert, nonce=sent)


def test_build_request_refuses_wrong_issuer(pki: PKI) -> None:
    leaf = pki.issue()
    with pytest.raises(OCSPError, match="was issued by CN=Test CA, not by CN=Other CA"):
        build_request(leaf.cert, pki.other.ca.cert)


# ----- malformed requests ----------------------------------------------------------------
@pytest.mark.parametrize(
    "body", [b"garbage", b"", b"\x30\x03\x02\x01\x01"], ids=["garbage", "empty", "not-ocsp-der"]
)
def test_malformed_post_gets_malformed_request_and_server_stays_up(pki: PKI, body: bytes) -> None:
    http = urllib.request.Request(
        pki.url, data=body, method="POST", headers={"Content-Type": "application/ocsp-request"}
    )
    with urllib.request.urlopen(http, timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "application/ocsp-response"
        resp = ocsp.load_der_ocsp_response(reply.read())
    assert resp.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    with pytest.raises(OCSPResponseStatusError, match="MALFORMED_REQUEST"):
        validate_response(resp.public_bytes(Encoding.DER), pki.issue().cert, pki.ours.ca.cert)
    leaf = pki.issue()
    raw, sent = live(pki, leaf)
    assert validate_response(raw, leaf.cert, pki.ours.ca.cert, nonce=sent).status == "good"


def test_request_for_several_certificates_is_refused_not_crashed(pki: PKI, tmp_path: Path) -> None:
    first, second = pki.issue(), pki.issue()
    args = [
        "-issuer",
        pki.ours.cert_path,
        "-cert",
        first.cert_path,
        "-cert",
        second.cert_path,
        "-CAfile",
        pki.ours.cert_path,
        "-no_nonce",
    ]
    post = subprocess.run(
        ["openssl", "ocsp", *map(str, args), "-url", pki.url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "Responder Error: malformedrequest" in post.stdout + post.stderr
    openssl_ocsp(*args, "-reqout", tmp_path / "req.der")
    path = quote(base64.b64encode((tmp_path / "req.der").read_bytes()).decode(), safe="")
    with urllib.request.urlopen(f"{pki.url}/{path}", timeout=10) as reply:
        resp = ocsp.load_der_ocsp_response(reply.read())
    assert resp.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_malformed_get_and_oversized_nonce(pki: PKI) -> None:
    with urllib.request.urlopen(f"{pki.url}/ocsp/bm90LW9jc3A=", timeout=10) as reply:
        resp = ocsp.load_der_ocsp_response(reply.read())
    assert resp.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    leaf = pki.issue()
    req = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf.cert, pki.ours.ca.cert, hashes.SHA256())
        .add_extension(x509.OCSPNonce(os.urandom(64)), critical=False)  # RFC 8954: max 32
        .build()
    )
    resp = ocsp.load_der_ocsp_response(fetch_sync(pki.url, req.public_bytes(Encoding.DER)))
    assert resp.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
