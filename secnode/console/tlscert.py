"""A self-signed HTTPS certificate for the console and the disclosure page.

For a demo or a node whose operators pin the certificate; a production node should
use one from the city's web PKI instead (set ``tls_cert``/``tls_key`` to those files).
Built with cryptography's X.509 builder; the key is written under the node passphrase
like the node's other keys.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs import keys
from certs.selfsigned import self_signed

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
    key, cert = self_signed(
        hosts[0], days, ExtendedKeyUsageOID.SERVER_AUTH, [_san(h) for h in hosts]
    )
    cert_path, key_path = node_dir / CERT_FILE, node_dir / KEY_FILE
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keys.write_key(key_path, key, passphrase)
    return cert_path, key_path
