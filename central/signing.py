"""Configuration signing keys: creation, the active signer, and two-step rotation.

A key is ``announced`` (its certificate travels in ``next_anchors`` of every
configuration signed by the ``active`` key), then ``active`` (signs), then
``retired``. Nodes follow because they accept a signer their held configuration
announced (see :mod:`secnode.globalconf`), so no node needs a new anchor by hand
unless it was offline for the whole announcement period.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.config import CentralConfig
from central.errors import Conflict, NotFound, RegistryError
from central.models import SigningKey
from certs import keys
from secnode.core.globalconf import cert_to_pem
from secnode.core.jsonfmt import cert_sha256_hex

DEFAULT_DAYS = 3650


def build_anchor_cert(
    key: keys.PrivateKey, instance: str, serial_label: int, days: int = DEFAULT_DAYS
) -> x509.Certificate:
    """Self-signed certificate of a signing key: the anchor nodes get out of band."""
    name = x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"{instance} global configuration signing key {serial_label}"
            ),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{instance} central registry"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )


def create_key(
    session: Session,
    config: CentralConfig,
    passphrase: bytes,
    state: str,
    key_type: str = "ec",
    days: int = DEFAULT_DAYS,
) -> SigningKey:
    """Record a new key in ``state`` (active or announced) and write its encrypted file.

    The file is written after the row is flushed; if the transaction then fails the
    caller must delete ``config.key_path(row.key_file)`` (see :mod:`central.instance`).
    """
    count = len(session.scalars(select(SigningKey.id)).all())
    label = count + 1
    filename = "conf-signing.key" if label == 1 else f"conf-signing-{label}.key"
    path = config.key_path(filename)
    if path.exists():
        raise Conflict(f"{path} exists; refusing to overwrite a signing key")
    key = keys.generate_key(key_type)
    cert = build_anchor_cert(key, config.instance, label, days)
    row = SigningKey(
        state=state,
        key_file=filename,
        cert_pem=cert_to_pem(cert),
        cert_sha256=cert_sha256_hex(cert),
        created_at=dt.datetime.now(dt.UTC),
        activated_at=dt.datetime.now(dt.UTC) if state == "active" else None,
    )
    session.add(row)
    session.flush()
    keys.write_key(path, key, passphrase)  # last: the caller removes it if the commit fails
    return row


def cert_of(row: SigningKey) -> x509.Certificate:
    return x509.load_pem_x509_certificate(row.cert_pem.encode("ascii"))


def active_key(session: Session) -> SigningKey:
    row = session.scalars(select(SigningKey).where(SigningKey.state == "active")).first()
    if row is None:
        raise NotFound("no active configuration signing key; was 'central init' completed?")
    return row


def announced_keys(session: Session) -> list[SigningKey]:
    return list(
        session.scalars(
            select(SigningKey).where(SigningKey.state == "announced").order_by(SigningKey.id)
        )
    )


def load_signer(
    config: CentralConfig, row: SigningKey, passphrase: bytes
) -> tuple[x509.Certificate, keys.SoftwareSigner]:
    """The certificate and signer of ``row``; refuses a key file that does not match."""
    signer = keys.SoftwareSigner.from_file(config.key_path(row.key_file), passphrase)
    cert = cert_of(row)
    mine = signer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if mine != theirs:
        raise RegistryError(f"{row.key_file} does not hold the key of its recorded certificate")
    return cert, signer


def write_anchor(path: Path, cert: x509.Certificate) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(cert_to_pem(cert))
    tmp.replace(path)
