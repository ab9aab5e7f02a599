"""RFC 3161 TSA and client: live servers judged by openssl, rfc3161-client and our verifier."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
import rfc3161_client
from aiohttp import web
from asn1crypto import cms as asn1_cms
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs import keys
from certs.tsa import (
    DEFAULT_POLICY,
    MemorySerials,
    SerialStore,
    TimeStampAuthority,
    TSAConfig,
    TSAError,
    init_tsa,
)
from certs.tsa_client import fetch_token, request_token, request_token_sync
from certs.tsa_server import build_tsa_app
from certs.tsa_verify import (
    TSARejected,
    build_request,
    token_contents,
    token_from_response,
    verify_token,
)
from tests.conftest import PASSPHRASE, cli_env, free_port, make_ca, run_cli, wait_for_port

if TYPE_CHECKING:
    from tests.conftest import TestCA  # imported at runtime pytest would try to collect it

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not on PATH")

QUERY = "application/timestamp-query"
REPLY = "application/timestamp-reply"


@dataclass
class LiveTSA:
    ca: TestCA
    dir: Path
    url: str
    proc: subprocess.Popen[bytes]
    ca_cert: x509.Certificate
    tsa_cert: x509.Certificate


def _serve(tsa_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "certs", "tsa", "serve", str(tsa_dir), "--port", str(port)],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}/"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveTSA]:
    """One CA, a TSA made by ``certs tsa init`` and ``certs tsa serve`` on an ephemeral port."""
    base = tmp_path_factory.mktemp("tsa")
    ca = make_ca(base, "Aizu Test CA")
    tsa_dir = base / "tsa"
    run_cli("certs", "tsa", "init", str(tsa_dir), "--ca", str(ca.dir), "--name", "Aizu TSA")
    proc, url = _serve(tsa_dir)
    try:
        yield LiveTSA(
            ca,
            tsa_dir,
            url,
            proc,
            x509.load_pem_x509_certificate((ca.dir / "ca.pem").read_bytes()),
            x509.load_pem_x509_certificate((tsa_dir / "tsa.pem").read_bytes()),
        )
    finally:
        _stop(proc)


def post(url: str, body: bytes, content_type: str = QUERY) -> tuple[int, str, bytes]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get_content_type(), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:  # its response holds the connection
            return exc.code, exc.headers.get_content_type(), exc.read()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def stamp(live: LiveTSA, digest: bytes, **kwargs: object) -> tuple[bytes, int | None]:
    """POST a request made by our client; return (response DER, nonce)."""
    der, nonce = build_request(digest, **kwargs)  # type: ignore[arg-type]
    status, ctype, body = post(live.url, der)
    assert (status, ctype) == (200, REPLY)
    return body, nonce


# ----- certs tsa init ------------------------------------------------------------------
def test_init_makes_encrypted_key_profiled_cert_and_config(live: LiveTSA) -> None:
    key_file = live.dir / "tsa.key"
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    eku = live.tsa_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    live.tsa_cert.verify_directly_issued_by(live.ca_cert)
    assert (live.dir / "ca.pem").read_bytes() == (live.ca.dir / "ca.pem").read_bytes()
    assert TSAConfig.load(live.dir) == TSAConfig("Aizu TSA", DEFAULT_POLICY, 1)
    again = run_cli(
        "certs",
        "tsa",
        "init",
        str(live.dir),
        "--ca",
        str(live.ca.dir),
        "--name",
        "Other",
        check=False,
    )
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


def test_init_refuses_bad_policy_and_missing_passphrase(tmp_path: Path, test_ca: TestCA) -> None:
    bad = run_cli(
        "certs",
        "tsa",
        "init",
        str(tmp_path / "t"),
        "--ca",
        str(test_ca.dir),
        "--name",
        "T",
        "--policy",
        "not-an-oid",
        check=False,
    )
    assert bad.returncode == 1 and "not a dotted object identifier" in bad.stderr
    env = cli_env()
    del env["SECNODE_PASSPHRASE"]
    nopass = run_cli(
        "certs",
        "tsa",
        "init",
        str(tmp_path / "t"),
        "--ca",
        str(test_ca.dir),
        "--name",
        "T",
        check=False,
        env=env,
    )
    assert nopass.returncode == 1 and "no passphrase" in nopass.stderr
    assert not (tmp_path / "t" / "tsa.key").exists()


def test_from_dir_refuses_a_certificate_without_timestamping_eku(
    tmp_path: Path, test_ca: TestCA
) -> None:
    init_tsa(tmp_path / "t", test_ca.dir, "T", PASSPHRASE)
    auth = test_ca.issue("auth", "CN=not-a-tsa")
    shutil.copy(auth.cert_path, tmp_path / "t" / "tsa.pem")
    with pytest.raises(TSAError, match="does not belong to"):
        TimeStampAuthority.from_dir(tmp_path / "t", PASSPHRASE)
    shutil.copy(auth.key_path, tmp_path / "t" / "tsa.key")
    with pytest.raises(TSAError, match="lacks critical timeStamping EKU"):
        TimeStampAuthority.from_dir(tmp_path / "t", PASSPHRASE)


# ----- interop: openssl as the client --------------------------------------------------
@needs_openssl
@pytest.mark.parametrize(
    "query_args",
    [["-sha512", "-cert"], ["-sha256", "-cert"], ["-sha256", "-cert", "-no_nonce"], ["-sha384"]],
    ids=["sha512", "sha256", "sha256-no-nonce", "sha384-no-cert"],
)
def test_openssl_query_and_verify(live: LiveTSA, tmp_path: Path, query_args: list[str]) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(1000))
    tsq, tsr = tmp_path / "q.tsq", tmp_path / "r.tsr"
    subprocess.run(
        ["openssl", "ts", "-query", "-data", str(data), *query_args, "-out", str(tsq)],
        check=True,
        capture_output=True,
    )
    status, ctype, body = post(live.url, tsq.read_bytes())
    assert (status, ctype) == (200, REPLY)
    tsr.write_bytes(body)
    verify = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            str(tsr),
            "-queryfile",
            str(tsq),
            "-CAfile",
            str(live.dir / "ca.pem"),
            "-untrusted",
            str(live.dir / "tsa.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert "Verification: OK" in verify.stdout, verify.stderr
    # openssl must also catch a reply that does not belong to the data.
    other = tmp_path / "other.bin"
    other.write_bytes(b"something else")
    wrong = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            str(tsr),
            "-data",
            str(other),
            "-CAfile",
            str(live.dir / "ca.pem"),
            "-untrusted",
            str(live.dir / "tsa.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert "Verification: FAILED" in wrong.stdout
    text = subprocess.run(
        ["openssl", "ts", "-reply", "-in", str(tsr), "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"Policy OID: {DEFAULT_POLICY}" in text
    assert ("Nonce: unspecified" in text) == ("-no_nonce" in query_args)
    cert_included = "-cert" in query_args
    signed = asn1_tsp.TimeStampResp.load(body)["time_stamp_token"]["content"]
    assert bool(signed["certificates"].native) == cert_included


# ----- interop: openssl as the TSA, our client verifies --------------------------------
@needs_openssl
@pytest.mark.parametrize("ess_alg", ["sha256", "sha1"], ids=["ess-v2", "ess-v1"])
def test_client_verifies_token_made_by_openssl(live: LiveTSA, tmp_path: Path, ess_alg: str) -> None:
    # openssl cannot read our encrypted key without a prompt, so for this test
    # only a plaintext copy goes to a private temp file.
    key = keys.load_key(live.dir / "tsa.key", PASSPHRASE)
    plain = tmp_path / "openssl-only.key"
    fd = os.open(plain, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    (tmp_path / "serial").write_text("29\n")  # the last serial used; openssl adds one
    cfg = tmp_path / "tsa.cnf"
    cfg.write_text(f"""
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
serial = {tmp_path / "serial"}
crypto_device = builtin
signer_cert = {live.dir / "tsa.pem"}
signer_key = {plain}
signer_digest = sha256
default_policy = 1.3.6.1.4.1.32473.1.2
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:500
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = {ess_alg}
""")
    data = os.urandom(64)
    (tmp_path / "data").write_bytes(data)
    tsq, tsr = tmp_path / "q.tsq", tmp_path / "r.tsr"
    subprocess.run(
        [
            "openssl",
            "ts",
            "-query",
            "-data",
            str(tmp_path / "data"),
            "-sha384",
            "-cert",
            "-out",
            str(tsq),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["openssl", "ts", "-reply", "-config", str(cfg), "-queryfile", str(tsq), "-out", str(tsr)],
        check=True,
        capture_output=True,
    )
    nonce = asn1_tsp.TimeStampReq.load(tsq.read_bytes())["nonce"].native
    digest = hashlib.sha384(data).digest()
    info = verify_token(tsr.read_bytes(), digest, "sha384", [live.ca_cert], nonce=nonce)
    assert info.serial == 0x2A
    assert info.policy == "1.3.6.1.4.1.32473.1.2"
    assert info.accuracy is not None and info.accuracy.total_seconds() == 1.5
    assert info.tsa_cert == live.tsa_cert
    with pytest.raises(TSAError, match="imprint does not match"):
        verify_token(tsr.read_bytes(), hashlib.sha384(b"x").digest(), "sha384", [live.ca_cert])


# ----- our client against our server ---------------------------------------------------
def test_client_gets_and_verifies_a_token(live: LiveTSA) -> None:
    digest = sha256(b"message log batch root")
    token, info = asyncio.run(fetch_token(live.url, digest, "sha256", [live.ca_cert]))
    assert info.digest == digest and info.hash_name == "sha256"
    assert info.policy == DEFAULT_POLICY
    assert info.tsa_cert == live.tsa_cert and info.chain[-1] == live.ca_cert
    assert info.accuracy is not None and info.accuracy.total_seconds() == 1
    assert info.nonce is not None
    # The bare token (what the message log stores) verifies on its own and reads back.
    again = verify_token(token, digest, "sha256", [live.ca_cert], nonce=info.nonce)
    assert again == info
    assert token_contents(token).serial == info.serial
    # An approved TSA certificate pinned directly (X-Road style) is trusted too.
    assert verify_token(token, digest, "sha256", [live.tsa_cert]).chain == (live.tsa_cert,)


def test_sync_client_and_sha512(live: LiveTSA) -> None:
    digest = hashlib.sha512(b"x").digest()
    der, nonce = build_request(digest, "sha512")
    info = verify_token(
        request_token_sync(live.url, der), digest, "sha512", [live.ca_cert], nonce=nonce
    )
    assert info.hash_name == "sha512" and info.nonce == nonce


def test_third_party_verifier_accepts_our_token(live: LiveTSA) -> None:
    """rfc3161-client (OpenSSL-backed PKCS#7 checks) is an independent judge."""
    digest = sha256(b"cross-check")
    body, nonce = stamp(live, digest)
    response = rfc3161_client.decode_timestamp_response(body)
    assert nonce is not None
    verifier = (
        rfc3161_client.VerifierBuilder().add_root_certificate(live.ca_cert).nonce(nonce).build()
    )
    assert verifier.verify(response, digest)


def test_wrong_imprint_is_refused(live: LiveTSA) -> None:
    body, _ = stamp(live, sha256(b"a"))
    with pytest.raises(TSAError, match="imprint does not match: token stamps"):
        verify_token(body, sha256(b"b"), "sha256", [live.ca_cert])
    with pytest.raises(TSAError, match="imprint does not match: token uses sha256, expected"):
        verify_token(body, hashlib.sha512(b"a").digest(), "sha512", [live.ca_cert])


def test_wrong_nonce_is_refused(live: LiveTSA) -> None:
    body, nonce = stamp(live, sha256(b"a"))
    assert nonce is not None
    with pytest.raises(TSAError, match="nonce mismatch"):
        verify_token(body, sha256(b"a"), "sha256", [live.ca_cert], nonce=nonce + 1)
    no_nonce, none = stamp(live, sha256(b"a"), nonce=False)
    assert none is None
    with pytest.raises(TSAError, match="nonce mismatch: sent 5, token has None"):
        verify_token(no_nonce, sha256(b"a"), "sha256", [live.ca_cert], nonce=5)


def test_policy_requirement(live: LiveTSA) -> None:
    body, _ = stamp(live, sha256(b"a"))
    assert verify_token(body, sha256(b"a"), "sha256", [live.ca_cert], policy=DEFAULT_POLICY)
    with pytest.raises(TSAError, match="policy mismatch"):
        verify_token(body, sha256(b"a"), "sha256", [live.ca_cert], policy="1.2.3.4")


def test_tampered_token_is_refused(live: LiveTSA) -> None:
    digest = sha256(b"tamper me")
    token = token_from_response(stamp(live, digest)[0])
    # A byte of the imprint inside the signed TSTInfo: parses fine, digest no longer matches.
    at = token.index(digest)
    altered = token[:at] + bytes([token[at] ^ 0x01]) + token[at + 1 :]
    with pytest.raises(TSAError, match="token signature does not verify: message digest"):
        verify_token(altered, token_contents(altered).digest, "sha256", [live.ca_cert])
    # The last byte belongs to the signature value itself.
    forged = token[:-1] + bytes([token[-1] ^ 0x01])
    with pytest.raises(TSAError, match="token signature does not verify with CN=Aizu TSA"):
        verify_token(forged, digest, "sha256", [live.ca_cert])
    with pytest.raises(TSAError, match="malformed time-stamp token"):
        verify_token(token[:-40], digest, "sha256", [live.ca_cert])


def test_token_from_untrusted_tsa_is_refused(live: LiveTSA, tmp_path: Path) -> None:
    other_ca = make_ca(tmp_path, "Other City CA")
    init_tsa(tmp_path / "other-tsa", other_ca.dir, "Other TSA", PASSPHRASE)
    other = TimeStampAuthority.from_dir(tmp_path / "other-tsa", PASSPHRASE)
    digest = sha256(b"a")
    body = other.respond(build_request(digest)[0])
    with pytest.raises(TSAError, match="TSA certificate does not chain to a trusted CA"):
        verify_token(body, digest, "sha256", [live.ca_cert])
    assert verify_token(body, digest, "sha256", [other_ca.ca.cert]).tsa_cert == other.cert


def test_tsa_certificate_without_timestamping_eku_is_refused(live: LiveTSA) -> None:
    auth = live.ca.issue("auth", "CN=ss1.aizu.example, O=Aizu-Wakamatsu City, C=JP")
    rogue = TimeStampAuthority(auth.cert, keys.SoftwareSigner(auth.key))
    digest = sha256(b"a")
    body = rogue.respond(build_request(digest)[0])
    assert token_contents(body).digest == digest  # a well-formed, correctly signed token
    with pytest.raises(TSAError, match="TSA certificate lacks critical timeStamping EKU"):
        verify_token(body, digest, "sha256", [live.ca_cert])


def test_signing_certificate_attribute_must_name_the_signer(live: LiveTSA) -> None:
    """Swap in a second valid TSA certificate for the same key: only the ESS binding notices."""
    key = keys.load_key(live.dir / "tsa.key", PASSPHRASE)
    twin = live.ca.ca.issue(
        keys.build_csr(key, keys.parse_subject("CN=Aizu TSA twin")), "tsa", PASSPHRASE
    )
    digest = sha256(b"a")
    token = asn1_cms.ContentInfo.load(token_from_response(stamp(live, digest)[0]))
    signed = token["content"]
    signed["signer_infos"][0]["sid"] = asn1_cms.SignerIdentifier(
        {
            "issuer_and_serial_number": {
                "issuer": asn1_x509.Name.load(twin.issuer.public_bytes()),
                "serial_number": twin.serial_number,
            }
        }
    )
    signed["certificates"] = [asn1_x509.Certificate.load(twin.public_bytes(Encoding.DER))]
    swapped = token.dump(force=True)
    with pytest.raises(TSAError, match="signing-certificate attribute names another certificate"):
        verify_token(swapped, digest, "sha256", [live.ca_cert])


def test_token_without_certificate_needs_the_tsa_certificate(live: LiveTSA) -> None:
    digest = sha256(b"a")
    body, _ = stamp(live, digest, cert_req=False)
    with pytest.raises(TSAError, match="neither in the token nor given"):
        verify_token(body, digest, "sha256", [live.ca_cert])
    info = verify_token(body, digest, "sha256", [live.ca_cert], tsa_certs=[live.tsa_cert])
    assert info.tsa_cert == live.tsa_cert


def test_client_errors_are_tsa_errors(live: LiveTSA) -> None:
    with pytest.raises(TSAError, match="a sha256 digest is 32 bytes, not 20"):
        build_request(b"\0" * 20, "sha256")
    with pytest.raises(TSAError, match="hash 'sha1' not supported"):
        build_request(b"\0" * 20, "sha1")
    dead = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(TSAError, match="cannot reach TSA"):
        asyncio.run(request_token(dead, build_request(sha256(b"a"))[0], timeout=2))
    with pytest.raises(TSAError, match="cannot reach TSA"):
        request_token_sync(dead, build_request(sha256(b"a"))[0], timeout=2)


# ----- bad requests: rejections, never a crash ------------------------------------------
def _req(**fields: object) -> bytes:
    base: dict[str, object] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"},
            "hashed_message": sha256(b"a"),
        },
    }
    base.update(fields)
    return bytes(asn1_tsp.TimeStampReq(base).dump())


def _openssl_sha1_query(tmp_path: Path) -> bytes:
    (tmp_path / "d").write_bytes(b"data")
    out = tmp_path / "sha1.tsq"
    subprocess.run(
        ["openssl", "ts", "-query", "-data", str(tmp_path / "d"), "-sha1", "-out", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


@needs_openssl
def test_bad_requests_get_rejections_with_fail_info(live: LiveTSA, tmp_path: Path) -> None:
    cases = {
        "garbage": (b"this is not DER", "badDataFormat"),
        "empty": (b"", "badDataFormat"),
        "truncated": (build_request(sha256(b"a"))[0][:-3], "badDataFormat"),
        "sha1 imprint": (_openssl_sha1_query(tmp_path), "badAlg"),
        "md5 imprint": (
            _req(
                message_imprint={
                    "hash_algorithm": {"algorithm": "md5"},
                    "hashed_message": b"\0" * 16,
                }
            ),
            "badAlg",
        ),
        "wrong-length imprint": (
            _req(
                message_imprint={
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": b"\0" * 20,
                }
            ),
            "badDataFormat",
        ),
        "unknown policy": (build_request(sha256(b"a"), policy="1.2.3.4")[0], "unacceptedPolicy"),
        "version 2": (_req(version=2), "badRequest"),
        "extensions": (
            _req(extensions=[{"extn_id": "1.2.3.4", "extn_value": b"x"}]),
            "unacceptedExtension",
        ),
    }
    for name, (body, fail) in cases.items():
        status, ctype, reply = post(live.url, body)
        assert (status, ctype) == (200, REPLY), name
        with pytest.raises(TSARejected, match="status rejection") as exc:
            token_from_response(reply)
        assert exc.value.fail_info == {fail}, name
    assert live.proc.poll() is None
    # openssl reads our rejection the same way.
    reply_file = tmp_path / "rej.tsr"
    reply_file.write_bytes(post(live.url, _openssl_sha1_query(tmp_path))[2])
    text = subprocess.run(
        ["openssl", "ts", "-reply", "-in", str(reply_file), "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Status: Rejected." in text and "unrecognized or unsupported algorithm" in text
    # ...and the server still grants afterwards.
    body, nonce = stamp(live, sha256(b"after"))
    verify_token(body, sha256(b"after"), "sha256", [live.ca_cert], nonce=nonce)


def test_http_level_refusals(live: LiveTSA) -> None:
    der = build_request(sha256(b"a"))[0]
    assert post(live.url, der, "application/octet-stream")[0] == 415
    assert post(live.url, b"\0" * 100_000)[0] == 413
    with urllib.request.urlopen(live.url + "health", timeout=5) as resp:
        assert b'"status": "ok"' in resp.read()
    assert post(live.url + "any/path", der)[1] == REPLY
    assert live.proc.poll() is None


def test_respond_never_raises_on_hostile_input(live: LiveTSA) -> None:
    """Every prefix and every single-byte corruption of a valid request gets a reply."""
    tsa = TimeStampAuthority(
        live.tsa_cert, keys.SoftwareSigner(keys.load_key(live.dir / "tsa.key", PASSPHRASE))
    )
    good = build_request(sha256(b"a"))[0]
    inputs = [good[:n] for n in range(len(good))]
    inputs += [good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1 :] for i in range(len(good))]
    for body in inputs:
        reply = tsa.respond(body)
        try:
            token_from_response(reply)
        except TSARejected as exc:
            assert exc.fail_info and "systemFailure" not in exc.fail_info, body.hex()


# ----- serial numbers ------------------------------------------------------------------
def test_serials_unique_across_processes_and_restart(tmp_path: Path, test_ca: TestCA) -> None:
    tsa_dir = tmp_path / "tsa"
    init_tsa(tsa_dir, test_ca.dir, "Serial TSA", PASSPHRASE)

    async def burst(urls: list[str], n: int) -> list[int]:
        async with aiohttp.ClientSession() as session:
            replies = await asyncio.gather(
                *(
                    request_token(
                        urls[i % len(urls)], build_request(sha256(b"%d" % i))[0], session=session
                    )
                    for i in range(n)
                )
            )
        return [token_contents(r).serial for r in replies]

    # Two servers sharing one directory (as two node hosts might share a TSA volume).
    first, url1 = _serve(tsa_dir)
    second, url2 = _serve(tsa_dir)
    try:
        before = asyncio.run(burst([url1, url2], 60))
    finally:
        _stop(first)
        _stop(second)
    restarted, url3 = _serve(tsa_dir)
    try:
        after = asyncio.run(burst([url3], 20))
    finally:
        _stop(restarted)
    assert len(set(before)) == 60 and len(set(after)) == 20
    assert min(after) > max(before)
    assert SerialStore(tsa_dir / "tsa.db").count() == 80


def test_memory_serials_and_clock_are_injectable(live: LiveTSA) -> None:
    import datetime as dt

    fixed = dt.datetime(2030, 4, 1, 9, 0, 0, 123456, tzinfo=dt.UTC)
    tsa = TimeStampAuthority(
        live.tsa_cert,
        keys.SoftwareSigner(keys.load_key(live.dir / "tsa.key", PASSPHRASE)),
        serials=MemorySerials(start=1000),
        clock=lambda: fixed,
        accuracy_seconds=0,
    )
    body = tsa.respond(build_request(sha256(b"a"))[0])
    info = verify_token(body, sha256(b"a"), "sha256", [live.ca_cert])
    assert (info.serial, info.gen_time, info.accuracy) == (
        1000,
        fixed.replace(microsecond=123000),
        None,
    )


# ----- in-process factory and CLI client commands --------------------------------------
def test_build_tsa_app_in_process(live: LiveTSA) -> None:
    async def scenario() -> int:
        runner = web.AppRunner(build_tsa_app(live.dir, PASSPHRASE), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            _token, info = await fetch_token(
                f"http://127.0.0.1:{port}/tsa", sha256(b"a"), "sha256", [live.ca_cert]
            )
            return info.serial
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) > 0


def test_cli_stamp_and_verify(live: LiveTSA, tmp_path: Path) -> None:
    data, token = tmp_path / "evidence.txt", tmp_path / "evidence.tst"
    data.write_bytes(b"provision record 2024-04-01")
    run_cli(
        "certs",
        "tsa",
        "stamp",
        str(data),
        "--url",
        live.url,
        "--ca",
        str(live.ca.cert_path),
        "--hash",
        "sha384",
        "--out",
        str(token),
    )
    ok = run_cli(
        "certs", "tsa", "verify", str(token), "--data", str(data), "--ca", str(live.ca.cert_path)
    )
    assert "Verification: OK" in ok.stdout
    data.write_bytes(b"provision record 2024-04-02")
    bad = run_cli(
        "certs",
        "tsa",
        "verify",
        str(token),
        "--data",
        str(data),
        "--ca",
        str(live.ca.cert_path),
        check=False,
    )
    assert bad.returncode == 1 and "imprint does not match" in bad.stderr
    shown = run_cli("certs", "tsa", "show", str(live.dir), "--json")
    assert '"tokens_issued"' in shown.stdout


@needs_openssl
def test_rsa_tsa_token_verifies_with_openssl_and_client(live: LiveTSA, tmp_path: Path) -> None:
    init_tsa(tmp_path / "rsa-tsa", live.ca.dir, "RSA TSA", PASSPHRASE, key_type="rsa")
    tsa = TimeStampAuthority.from_dir(tmp_path / "rsa-tsa", PASSPHRASE)
    data = tmp_path / "data"
    data.write_bytes(b"rsa please")
    tsq, tsr = tmp_path / "q.tsq", tmp_path / "r.tsr"
    subprocess.run(
        ["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(tsq)],
        check=True,
        capture_output=True,
    )
    tsr.write_bytes(tsa.respond(tsq.read_bytes()))
    verify = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            str(tsr),
            "-queryfile",
            str(tsq),
            "-CAfile",
            str(live.ca.cert_path),
        ],
        capture_output=True,
        text=True,
    )
    assert "Verification: OK" in verify.stdout, verify.stderr
    info = verify_token(tsr.read_bytes(), sha256(b"rsa please"), "sha256", [live.ca_cert])
    assert info.tsa_cert == tsa.cert
