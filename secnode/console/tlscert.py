"""A self-signed HTTPS certificate for the console and the disclosure page.

For a demo or a node whose operators pin the certificate; a production node should
use one from the city's web PKI instead (set ``tls_cert``/``tls_key`` to those files).
Built with cryptography's X.509 builder; the key is written under the node passphrase
like the node's other keys.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import keys

CERT_FILE, KEY_FILE = "console-tls.pem", "console-tls.key"


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_self_signed(
    node_dir: Path, passphrase: bytes, hosts: tuple[str, ...], days: int = 365
) -> tuple[Path, Path]:
    """Write ``console-tls.pem`` and ``console-tls.key`` in ``node_dir``; returns both paths."""
    key = keys.generate_key("ec")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = node_dir / CERT_FILE, node_dir / KEY_FILE
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keys.write_key(key_path, key, passphrase)
    return cert_path, key_path
