"""Node-to-node TLS contexts trust only what they are given (issue 14 found the gap).

``ssl.create_default_context`` loads the system's public CAs as trust anchors; with
hostname checks off (peers are identified by registered certificate), a context built
on it would complete a handshake with *any* server holding a publicly issued certificate.
Here the "system store" is a fixture CA named by ``SSL_CERT_FILE`` (which OpenSSL's
default paths honour), and a real TLS server on 127.0.0.1 presents its certificate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from secnode.trust.tls import client_context, pinned_client_context

PASS = b"fixture-passphrase"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    is_ca = issuer[0] == cn
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(issuer[1], hashes.SHA256())
    )


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASS),
        )
    )


def _handshake(server_dir: Path, name: str, client: ssl.SSLContext) -> None:
    """A real TLS server presenting ``name``'s certificate; raises if ``client`` refuses it."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(server_dir / f"{name}.pem", server_dir / f"{name}.key", PASS)

    async def go() -> None:
        srv = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=server)
        port = srv.sockets[0].getsockname()[1]
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            writer.close()
        finally:
            srv.close()
            await srv.wait_closed()

    asyncio.run(go())


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    public_key = ec.generate_private_key(ec.SECP256R1())
    public = ("Public Web CA", public_key)
    public_ca = _cert(public[0], public_key, public)
    (tmp_path / "system-ca.pem").write_bytes(public_ca.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system-ca.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    for name, issuer in (("stranger", public), ("ours", None), ("provider", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(tmp_path / name, _cert(name, key, issuer or (name, key)), key)
    return tmp_path


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pinned_context_refuses_a_publicly_issued_certificate(world: Path) -> None:
    pinned = _load(world / "provider.pem")
    ctx = pinned_client_context(world / "ours.pem", world / "ours.key", PASS, pinned)
    assert ctx.cert_store_stats()["x509"] == 1  # the pin, nothing from the system store
    _handshake(world, "provider", ctx)  # the registered node: accepted
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(world, "stranger", ctx)  # issued by the "system" CA: refused


def test_approved_ca_context_holds_only_the_approved_cas(world: Path) -> None:
    approved = _load(world / "provider.pem")  # self-signed: stands in for an approved CA
    ctx = client_context(world / "ours.pem", world / "ours.key", PASS, [approved])
    assert ctx.cert_store_stats()["x509_ca"] == 1
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(world, "stranger", ctx)
