"""Message signatures: canonical CMS fast path, full-parse fallback, openssl interop."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from certs import keys
from secnode.core.msgsig import MessageSigner, SignatureError, SignatureVerifier, parse_signature
from tests.conftest import TestCA

SUBJECT = "serialNumber=JP/GOV/072028, CN=Aizu"


def test_signature_verifies_with_openssl(tmp_path: Path, test_ca: TestCA) -> None:
    issued = test_ca.issue("sign", SUBJECT)
    signer = MessageSigner(issued.cert, keys.SoftwareSigner(issued.key))
    content = hashlib.sha256(b"request").digest()
    sig = signer.sign(content)
    (tmp_path / "d.bin").write_bytes(content)
    (tmp_path / "d.sig").write_bytes(sig)
    result = subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-content",
            str(tmp_path / "d.bin"),
            "-in",
            str(tmp_path / "d.sig"),
            "-inform",
            "DER",
            "-CAfile",
            str(test_ca.cert_path),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    (tmp_path / "d.bin").write_bytes(hashlib.sha256(b"other").digest())
    tampered = subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-content",
            str(tmp_path / "d.bin"),
            "-in",
            str(tmp_path / "d.sig"),
            "-inform",
            "DER",
            "-CAfile",
            str(test_ca.cert_path),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
    )
    assert tampered.returncode != 0


def test_verifier_fast_path_and_failures(test_ca: TestCA) -> None:
    alice = test_ca.issue("sign", SUBJECT)
    mallory = test_ca.issue("sign", "serialNumber=JP/GOV/372013, CN=Takamatsu")
    signer = MessageSigner(alice.cert, keys.SoftwareSigner(alice.key))
    verifier = SignatureVerifier()
    content = hashlib.sha256(b"m1").digest()
    for _ in range(3):  # first call parses fully, later ones use the template
        assert verifier.verify(signer.sign(content), content) == alice.cert
    with pytest.raises(SignatureError, match="does not verify"):
        verifier.verify(signer.sign(content), hashlib.sha256(b"m2").digest())
    # a signature value made by another key, wrapped with alice's certificate
    forged = signer.codec.encode(keys.SoftwareSigner(mallory.key).sign(content))
    with pytest.raises(SignatureError, match="does not verify"):
        verifier.verify(forged, content)
    with pytest.raises(SignatureError, match="malformed"):
        verifier.verify(b"\x30\x03\x02\x01\x01", content)
    sig = bytearray(signer.sign(content))
    sig[-3] ^= 0xFF
    with pytest.raises(SignatureError, match=r"does not verify with the signer's certificate"):
        verifier.verify(bytes(sig), content)


def test_non_canonical_cms_goes_through_full_parse(test_ca: TestCA) -> None:
    """A CMS with signed attributes (openssl's default form) is refused with a clear reason."""
    alice = test_ca.issue("sign", SUBJECT)
    content = hashlib.sha256(b"m").digest()
    other = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(alice.cert, alice.key, hashes.SHA256())
        .sign(Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )
    with pytest.raises(SignatureError, match="signed attributes"):
        SignatureVerifier().verify(other, content)
    cert, raw = parse_signature(
        MessageSigner(alice.cert, keys.SoftwareSigner(alice.key)).sign(content)
    )
    assert cert == alice.cert and len(raw) >= 64
