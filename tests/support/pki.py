"""Certificates made in-process with the PKI library (no CLI): a CA that issues on demand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from certs import keys
from certs.ca import CertificateAuthority, cert_pem
from tests.support.common import PASSPHRASE


@dataclass
class Issued:
    key_path: Path
    cert_path: Path
    cert: x509.Certificate
    key: keys.PrivateKey


@dataclass
class TestCA:
    __test__ = False  # a fixture helper, not a test class

    ca: CertificateAuthority
    dir: Path

    @property
    def cert_path(self) -> Path:
        return self.dir / "ca.pem"

    def issue(
        self,
        profile: str,
        subject: str,
        name: str | None = None,
        days: int = 365,
        key_type: str = "ec",
    ) -> Issued:
        key = keys.generate_key(key_type)
        csr = keys.build_csr(key, keys.parse_subject(subject))
        cert = self.ca.issue(csr, profile, PASSPHRASE, days=days)
        stem = name or f"{profile}-{cert.serial_number:x}"
        out = self.dir.parent / "issued-by-test"
        out.mkdir(exist_ok=True)
        key_path, cert_path = out / f"{stem}.key", out / f"{stem}.pem"
        keys.write_key(key_path, key, PASSPHRASE)
        cert_path.write_bytes(cert_pem(cert))
        return Issued(key_path, cert_path, cert, key)


def make_ca(base: Path, name: str = "Test CA", ocsp_url: str | None = None) -> TestCA:
    directory = base / name.lower().replace(" ", "-")
    ca = CertificateAuthority.init(directory, name, PASSPHRASE, ocsp_url=ocsp_url)
    return TestCA(ca, directory)
