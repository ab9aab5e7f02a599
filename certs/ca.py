"""A small certificate authority kept in one directory.

Files in ``DIR``: ``ca.pem`` (the CA certificate), ``ca.key`` (encrypted
PKCS#8), ``ca.json`` (name, OCSP URL), ``ca.db`` (SQLite: every issued
certificate with its serial, profile and revocation state), ``issued/`` (a
PEM copy of each issued certificate, named by serial) and, once the OCSP
responder has started, ``ocsp.pem`` / ``ocsp.key`` (its delegated signer).

The database is the single source of revocation state: the OCSP responder reads
it on every request, so ``certs revoke`` takes effect immediately.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from certs import keys, profiles
from certs.errors import SecnodeError
from certs.names import display_name

REVOCATION_REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,          -- upper-case hex, as `openssl x509 -serial` prints it
    subject TEXT NOT NULL,
    profile TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    pem TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    revoked_at TEXT,
    revocation_reason TEXT
);
"""


class CAError(SecnodeError):
    """A CA operation was refused; the message says why."""


@dataclass(frozen=True)
class CertStatus:
    serial: int
    revoked_at: dt.datetime | None
    reason: str | None


def serial_hex(serial: int) -> str:
    text = format(serial, "X")
    return text if len(text) % 2 == 0 else "0" + text


def parse_serial(text: str) -> int:
    """Parse a serial in hex (``openssl x509 -serial`` form, ``serial=`` and ``0x`` allowed)."""
    cleaned = text.strip().removeprefix("serial=").removeprefix("0x").replace(":", "")
    try:
        return int(cleaned, 16)
    except ValueError as exc:
        raise CAError(f"{text!r} is not a hexadecimal serial number") from exc


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CertificateAuthority:
    """The CA in ``directory``; signing needs the passphrase, status queries do not."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        if not (self.dir / "ca.pem").exists():
            raise CAError(f"{self.dir} is not a CA directory (no ca.pem); run 'certs ca init'")
        self.cert = x509.load_pem_x509_certificate((self.dir / "ca.pem").read_bytes())
        self.config = json.loads((self.dir / "ca.json").read_text())

    # ----- creation -------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        directory: str | Path,
        name: str,
        passphrase: bytes,
        ocsp_url: str | None = None,
        key_type: str = "ec",
        days: int = 3650,
    ) -> CertificateAuthority:
        target = Path(directory)
        if (target / "ca.pem").exists() or (target / "ca.key").exists():
            raise CAError(f"{target} already holds a CA; refusing to overwrite it")
        target.mkdir(parents=True, exist_ok=True)
        key = keys.generate_key(key_type)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        keys.write_key(target / "ca.key", key, passphrase)
        (target / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (target / "ca.json").write_text(
            json.dumps({"name": name, "ocsp_url": ocsp_url}, indent=2) + "\n"
        )
        (target / "issued").mkdir(exist_ok=True)
        ca = cls(target)
        with ca._db() as db:
            db.executescript(_SCHEMA)
        return ca

    # ----- database -------------------------------------------------------------------
    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.dir / "ca.db", timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            with conn:
                yield conn
        finally:
            conn.close()

    @property
    def ocsp_url(self) -> str | None:
        value = self.config.get("ocsp_url")
        return value if isinstance(value, str) and value else None

    @property
    def name(self) -> str:
        return str(self.config.get("name", ""))

    def signer(self, passphrase: bytes) -> keys.SoftwareSigner:
        return keys.SoftwareSigner.from_file(self.dir / "ca.key", passphrase)

    # ----- issuing --------------------------------------------------------------------
    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        profile: str,
        passphrase: bytes,
        days: int = 730,
    ) -> x509.Certificate:
        """Issue a certificate of ``profile`` for ``csr`` and record it."""
        try:
            profiles.check_csr(csr, profile)
        except profiles.ProfileError as exc:
            raise CAError(f"CSR refused: {exc}") from exc
        if days <= 0:
            raise CAError("--days must be positive")
        signer = self.signer(passphrase)
        now = _now()
        not_after = min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc)
        with self._db() as db:
            serial = self._new_serial(db)
            builder = (
                x509.CertificateBuilder()
                .subject_name(csr.subject)
                .issuer_name(self.cert.subject)
                .public_key(csr.public_key())
                .serial_number(serial)
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(not_after)
            )
            for ext, critical in profiles.build_extensions(
                profile, csr.public_key(), self.cert, self.ocsp_url
            ):
                builder = builder.add_extension(ext, critical=critical)
            cert = builder.sign(signer.issuer_key(), hashes.SHA256())
            pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            db.execute(
                "INSERT INTO certificates (serial, subject, profile, not_before, not_after, pem,"
                " issued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    serial_hex(serial),
                    display_name(cert.subject),
                    profile,
                    cert.not_valid_before_utc.isoformat(),
                    cert.not_valid_after_utc.isoformat(),
                    pem,
                    now.isoformat(),
                ),
            )
        issued = self.dir / "issued"
        issued.mkdir(exist_ok=True)
        (issued / f"{serial_hex(serial)}.pem").write_text(pem)
        return cert

    @staticmethod
    def _new_serial(db: sqlite3.Connection) -> int:
        while True:
            serial = secrets.randbits(127) | (1 << 126)  # positive, fixed length, unguessable
            row = db.execute(
                "SELECT 1 FROM certificates WHERE serial = ?", (serial_hex(serial),)
            ).fetchone()
            if row is None:
                return serial

    # ----- revocation and status --------------------------------------------------------
    def revoke(self, serial: int, reason: str = "unspecified") -> dt.datetime:
        if reason not in REVOCATION_REASONS:
            raise CAError(
                f"unknown revocation reason {reason!r}; use one of {', '.join(REVOCATION_REASONS)}"
            )
        when = _now().replace(microsecond=0)
        with self._db() as db:
            row = db.execute(
                "SELECT revoked_at FROM certificates WHERE serial = ?", (serial_hex(serial),)
            ).fetchone()
            if row is None:
                raise CAError(f"serial {serial_hex(serial)} was not issued by this CA")
            if row[0] is not None:
                raise CAError(f"serial {serial_hex(serial)} is already revoked (at {row[0]})")
            db.execute(
                "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?",
                (when.isoformat(), reason, serial_hex(serial)),
            )
        return when

    def status(self, serial: int) -> CertStatus | None:
        """None when this CA never issued ``serial`` (OCSP 'unknown')."""
        with self._db() as db:
            row = db.execute(
                "SELECT revoked_at, revocation_reason FROM certificates WHERE serial = ?",
                (serial_hex(serial),),
            ).fetchone()
        if row is None:
            return None
        revoked_at = dt.datetime.fromisoformat(row[0]) if row[0] else None
        return CertStatus(serial, revoked_at, row[1])

    def list_issued(self) -> list[dict[str, str | None]]:
        with self._db() as db:
            rows = db.execute(
                "SELECT serial, pem, profile, not_before, not_after, revoked_at,"
                " revocation_reason FROM certificates ORDER BY issued_at"
            ).fetchall()
        cols = ("serial", "subject", "profile", "not_before", "not_after", "revoked_at", "reason")
        # The subject from the certificate itself: rows stored before names were readable
        # say 2.5.4.5= where this says serialNumber=.
        out = []
        for serial, pem, *rest in rows:
            subject = display_name(x509.load_pem_x509_certificate(pem.encode()).subject)
            out.append(dict(zip(cols, (serial, subject, *rest), strict=True)))
        return out


def load_certificate(path: str | Path) -> x509.Certificate:
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CAError(f"{path} is not an X.509 certificate: {exc}") from exc


def load_csr(path: str | Path) -> x509.CertificateSigningRequest:
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise CAError(f"{path} is not a PKCS#10 certificate request: {exc}") from exc


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
