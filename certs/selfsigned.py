"""Self-signed leaf certificates for TLS at a node's own edges (no CA involved).

The web console's HTTPS certificate and the node's internal TLS client certificate
towards provider systems are trusted by their file or hash, not by a chain; both are
made here so they carry the same profile (EC key, SHA-256, not a CA, one usage).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from certs import keys


def self_signed(
    common_name: str,
    days: int,
    usage: x509.ObjectIdentifier,
    sans: Sequence[x509.GeneralName] = (),
) -> tuple[keys.PrivateKey, x509.Certificate]:
    """A new EC key and a certificate for it, valid from five minutes ago for ``days``."""
    key = keys.generate_key("ec")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    cert = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert
