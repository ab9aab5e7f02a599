"""Private keys at rest, passphrases, CSRs and the one signer interface.

Keys are only ever written as encrypted PKCS#8. Every use of a private key goes
through :class:`Signer`, so a PKCS#11/HSM implementation can replace
:class:`SoftwareSigner` later without touching callers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from certs.errors import SecnodeError

PASSPHRASE_ENV = "SECNODE_PASSPHRASE"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class KeyFileError(SecnodeError):
    """A key could not be created, read or used; the message says why."""


class PassphraseMissing(KeyFileError):
    pass


def resolve_passphrase(passphrase_file: str | os.PathLike[str] | None) -> bytes:
    """Return the passphrase from ``--passphrase-file`` or ``$SECNODE_PASSPHRASE``.

    Refuses when neither is given: a private key is never written or read
    without one, so no plaintext key lands on disk by accident.
    """
    if passphrase_file is not None:
        try:
            data = Path(passphrase_file).read_bytes()
        except OSError as exc:
            raise PassphraseMissing(
                f"cannot read passphrase file {passphrase_file}: {exc}"
            ) from exc
        value = data.rstrip(b"\r\n")
    else:
        env = os.environ.get(PASSPHRASE_ENV)
        if env is None:
            raise PassphraseMissing(
                f"no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV} "
                "(private keys are never stored unencrypted)"
            )
        value = env.encode()
    if not value:
        raise PassphraseMissing("the passphrase is empty")
    return value


def generate_key(key_type: str = "ec") -> PrivateKey:
    """EC P-256 by default (cheapest sign+verify pair); RSA 3072 where a CA requires RSA."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise KeyFileError(f"unknown key type {key_type!r}; use 'ec' or 'rsa'")


def encrypt_key(key: PrivateKey, passphrase: bytes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def write_key(path: str | os.PathLike[str], key: PrivateKey, passphrase: bytes) -> None:
    """Write ``key`` as encrypted PKCS#8, readable only by the owner."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = encrypt_key(key, passphrase)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_key(path: str | os.PathLike[str], passphrase: bytes) -> PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        raise KeyFileError(f"key {path} is not encrypted; refusing a plaintext key") from exc
    except ValueError as exc:
        raise KeyFileError(f"cannot decrypt key {path}: wrong passphrase or not a key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyFileError(f"key {path} is of an unsupported type")
    return key


def parse_subject(text: str) -> x509.Name:
    """Parse ``serialNumber=JP/GOV/072028, O=Aizu-Wakamatsu City, C=JP`` (RFC 4514 order).

    Commas separate attributes; a comma inside a value is written ``\\,``.
    """
    names = {
        "CN": NameOID.COMMON_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "C": NameOID.COUNTRY_NAME,
        "L": NameOID.LOCALITY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    }
    attrs: list[x509.NameAttribute[str]] = []
    for raw in _split_unescaped(text.strip().lstrip("/"), ","):
        if not raw.strip():
            continue
        key, sep, value = raw.partition("=")
        if not sep:
            raise KeyFileError(f"subject part {raw.strip()!r} is not KEY=VALUE")
        oid = names.get(key.strip().upper())
        if oid is None:
            raise KeyFileError(f"unknown subject attribute {key.strip()!r}; use {', '.join(names)}")
        attrs.append(x509.NameAttribute(oid, value.strip().replace("\\,", ",")))
    if not attrs:
        raise KeyFileError("the subject is empty")
    return x509.Name(attrs)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def build_csr(key: PrivateKey, subject: x509.Name) -> x509.CertificateSigningRequest:
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


class Signer(Protocol):
    """Anything that signs with a private key it may never reveal (software key, HSM)."""

    def public_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey: ...

    def sign(self, data: bytes) -> bytes: ...

    def issuer_key(self) -> CertificateIssuerPrivateKeyTypes:
        """The key object `cryptography` builders need (software tokens only)."""
        ...


@dataclass
class SoftwareSigner:
    """Signer backed by a private key loaded from an encrypted PKCS#8 file."""

    key: PrivateKey

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], passphrase: bytes) -> SoftwareSigner:
        return cls(load_key(path, passphrase))

    def public_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def issuer_key(self) -> CertificateIssuerPrivateKeyTypes:
        return self.key
