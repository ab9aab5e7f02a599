"""CA and profiles, checked with openssl (a tool nobody here wrote)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from certs import keys
from certs.ca import CAError, CertificateAuthority
from certs.profiles import detect_profile, ocsp_urls
from secnode.core.cert_member import member_id_of
from tests.conftest import PASSPHRASE, run_cli

SUBJECTS = {
    "sign": "/serialNumber=JP\\/GOV\\/072028/O=Aizu-Wakamatsu City/C=JP",
    "auth": "/CN=ss1.aizu.example/O=Aizu-Wakamatsu City/C=JP",
    "ocsp": "/CN=Test OCSP",
    "tsa": "/CN=Test TSA",
}


def openssl_csr(tmp_path: Path, name: str, subject: str) -> Path:
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(tmp_path / f"{name}.key"),
            "-subj",
            subject,
            "-out",
            str(tmp_path / f"{name}.csr"),
        ],
        check=True,
        capture_output=True,
    )
    return tmp_path / f"{name}.csr"


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    run_cli(
        "certs",
        "ca",
        "init",
        str(tmp_path / "ca"),
        "--name",
        "Test CA",
        "--ocsp-url",
        "http://127.0.0.1:9999/ocsp",
    )
    return tmp_path / "ca"


@pytest.mark.parametrize("profile", ["sign", "auth", "ocsp", "tsa"])
def test_openssl_verify_accepts_every_profile(tmp_path: Path, ca_dir: Path, profile: str) -> None:
    csr = openssl_csr(tmp_path, profile, SUBJECTS[profile])
    out = tmp_path / f"{profile}.pem"
    run_cli(
        "certs", "issue", str(ca_dir), "--csr", str(csr), "--profile", profile, "--out", str(out)
    )
    purpose = {
        "sign": [],
        "auth": ["-purpose", "sslclient"],
        "ocsp": [],
        "tsa": ["-purpose", "timestampsign"],
    }[profile]
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_dir / "ca.pem"), *purpose, str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert detect_profile(cert) == profile
    exts = {e.oid for e in cert.extensions}
    assert ExtensionOID.AUTHORITY_KEY_IDENTIFIER in exts
    assert ExtensionOID.SUBJECT_KEY_IDENTIFIER in exts
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    if profile == "sign":
        assert ku.digital_signature and ku.content_commitment
        assert str(member_id_of(cert.subject)) == "JP/GOV/072028"
    if profile == "auth":
        assert ku.digital_signature and ku.key_encipherment
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    if profile == "ocsp":
        assert ExtensionOID.OCSP_NO_CHECK in exts
    if profile == "tsa":
        assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).critical
    expected_aia = ["http://127.0.0.1:9999/ocsp"] if profile in ("sign", "auth") else []
    assert ocsp_urls(cert) == expected_aia


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("/O=Aizu-Wakamatsu City/C=JP", "no serialNumber attribute"),
        ("/serialNumber=JP\\/GOV/O=Aizu", "not a member identifier"),
        ("/serialNumber=JP\\/GOV\\/07 2028/O=Aizu", "not allowed"),
    ],
)
def test_sign_profile_refuses_bad_member_id(
    tmp_path: Path, ca_dir: Path, subject: str, message: str
) -> None:
    csr = openssl_csr(tmp_path, "bad", subject)
    result = run_cli(
        "certs",
        "issue",
        str(ca_dir),
        "--csr",
        str(csr),
        "--profile",
        "sign",
        "--out",
        str(tmp_path / "bad.pem"),
        check=False,
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "bad.pem").exists()
    assert CertificateAuthority(ca_dir).list_issued() == []


def test_keys_are_encrypted_and_need_a_passphrase(tmp_path: Path) -> None:
    env_without = {k: v for k, v in __import__("os").environ.items() if k != "SECNODE_PASSPHRASE"}
    env_without["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    refused = run_cli(
        "certs", "key", "new", "--out", str(tmp_path / "k.pem"), check=False, env=env_without
    )
    assert refused.returncode == 1 and "no passphrase" in refused.stderr
    assert not (tmp_path / "k.pem").exists()
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    run_cli(
        "certs",
        "key",
        "new",
        "--out",
        str(tmp_path / "k.pem"),
        "--type",
        "rsa",
        "--passphrase-file",
        str(pw),
        env=env_without,
    )
    data = (tmp_path / "k.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in data
    key = keys.load_key(tmp_path / "k.pem", b"secret")
    assert key.key_size == 3072
    with pytest.raises(keys.KeyFileError, match="wrong passphrase"):
        keys.load_key(tmp_path / "k.pem", b"other")
    run_cli(
        "certs",
        "csr",
        "--key",
        str(tmp_path / "k.pem"),
        "--passphrase-file",
        str(pw),
        "--subject",
        "serialNumber=JP/GOV/072028, O=Aizu-Wakamatsu City, C=JP",
        "--out",
        str(tmp_path / "r.csr"),
        env=env_without,
    )
    out = subprocess.run(
        ["openssl", "req", "-in", str(tmp_path / "r.csr"), "-noout", "-verify", "-subject"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "serialNumber = JP/GOV/072028" in out.stdout


def test_revoke_by_serial_and_file(tmp_path: Path, ca_dir: Path) -> None:
    ca = CertificateAuthority(ca_dir)
    key = keys.generate_key()
    cert = ca.issue(keys.build_csr(key, keys.parse_subject("CN=x")), "auth", PASSPHRASE)
    serial = format(cert.serial_number, "X")
    run_cli("certs", "revoke", str(ca_dir), serial, "--reason", "keyCompromise")
    status = ca.status(cert.serial_number)
    assert status is not None and status.reason == "keyCompromise" and status.revoked_at
    again = run_cli("certs", "revoke", str(ca_dir), serial, check=False)
    assert again.returncode == 1 and "already revoked" in again.stderr
    unknown = run_cli("certs", "revoke", str(ca_dir), "ABCDEF", check=False)
    assert unknown.returncode == 1 and "not issued by this CA" in unknown.stderr
    with pytest.raises(CAError, match="already holds a CA"):
        CertificateAuthority.init(ca_dir, "again", PASSPHRASE)
