"""TLS contexts for node-to-node mutual TLS on the auth keys.

Trust in a peer is decided at two levels: the TLS layer requires a certificate
chaining to an approved CA (so strangers cannot even complete a handshake), and
the application layer pins the exact auth certificate registered centrally for
the member in question (its SHA-256), which the TLS layer cannot know.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _pem_bundle(certs: Iterable[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _base_context(
    purpose: ssl.Purpose,
    cert_file: Path,
    key_file: Path,
    passphrase: bytes,
    cas: list[x509.Certificate],
) -> ssl.SSLContext:
    # A bare context: ``create_default_context`` would also load the system's public CAs
    # (~140 here) as trust anchors, so with hostname checks off, *any* publicly issued
    # certificate would have passed the handshake of a context meant to trust only the
    # approved CAs or the pinned certificates (and loading them cost ~20 ms per context).
    protocol = (
        ssl.PROTOCOL_TLS_CLIENT if purpose == ssl.Purpose.SERVER_AUTH else ssl.PROTOCOL_TLS_SERVER
    )
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS_CIPHERS)
    ctx.check_hostname = False  # peers are identified by registered certificate hash
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(cert_file), str(key_file), password=passphrase)
    if cas:
        ctx.load_verify_locations(cadata=_pem_bundle(cas))
    return ctx


def server_context(
    cert_file: Path, key_file: Path, passphrase: bytes, approved_cas: list[x509.Certificate]
) -> ssl.SSLContext:
    """Serve node-to-node HTTPS, requiring a client certificate from an approved CA."""
    return _base_context(ssl.Purpose.CLIENT_AUTH, cert_file, key_file, passphrase, approved_cas)


def client_context(
    cert_file: Path, key_file: Path, passphrase: bytes, approved_cas: list[x509.Certificate]
) -> ssl.SSLContext:
    """Call other nodes, presenting our auth certificate and checking theirs chains."""
    return _base_context(ssl.Purpose.SERVER_AUTH, cert_file, key_file, passphrase, approved_cas)


def pinned_client_context(
    cert_file: Path,
    key_file: Path,
    passphrase: bytes,
    peer_certs: x509.Certificate | Iterable[x509.Certificate],
) -> ssl.SSLContext:
    """Call one specific node: the only trust anchors are its registered auth certificates.

    With partial-chain verification OpenSSL accepts the handshake only if the
    peer presents exactly one of these certificates (and proves its key), so a
    request is never sent to a server that is not the registered node. A node
    has two registered while an auth certificate renewal switches over.
    """
    pins = [peer_certs] if isinstance(peer_certs, x509.Certificate) else list(peer_certs)
    ctx = _base_context(ssl.Purpose.SERVER_AUTH, cert_file, key_file, passphrase, pins)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def add_cas(ctx: ssl.SSLContext, cas: list[x509.Certificate]) -> None:
    """Trust newly approved CAs without a restart (removal is enforced at application level)."""
    if cas:
        ctx.load_verify_locations(cadata=_pem_bundle(cas))


def peer_cert_sha256(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """Hex SHA-256 of the peer's DER certificate on an established TLS connection."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest() if der else None
